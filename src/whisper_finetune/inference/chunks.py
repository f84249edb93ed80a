"""Long audio as VAD chunks decoded in batches, and Whisper's checks on a window.

faster-whisper's ``BatchedInferencePipeline`` decodes each 30 s window once, at the first
temperature, and applies none of Whisper's thresholds; its sequential decoder applies
them. :func:`window_verdict` says what Whisper would do with a window decoded once;
:func:`transcribe_chunked` cuts one long audio at its pauses (Silero VAD, as the pipeline
does), decodes the chunks in batches, decodes again what an early end left of a chunk,
and maps the times back to the audio's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.inference.base import CHUNK_SECONDS, clamp_segments, progress_bar
from whisper_finetune.inference.transcript import DecodeOptions, Segment, Transcript

# a VAD chunk whose text ends more than TAIL_SECONDS before the chunk does is decoded
# again from there, up to TAIL_PASSES times (see decode_chunks)
TAIL_SECONDS = 3.0
TAIL_PASSES = 3

# speech regions are joined into chunks of at most this many seconds
CHUNK_MAX_SECONDS = float(CHUNK_SECONDS)

# audio of at least two VAD_PART_SECONDS runs Silero in parts side by side, each part
# ending at the quietest QUIET_SECONDS within SEARCH_SECONDS of its even share
VAD_PART_SECONDS = 60.0
QUIET_SECONDS = 0.5
SEARCH_SECONDS = 10.0
VAD_WINDOW = 512  # Silero's window in samples: parts start on its grid

# clips (each at most 30 s), options, batch size -> one transcript per clip
BatchDecoder = Callable[[list[np.ndarray], DecodeOptions, int], list[Transcript]]


def transcribe_chunked(
    samples: np.ndarray,
    options: DecodeOptions,
    decode: BatchDecoder,
    batch_size: int,
    progress: bool = True,
    vad_threads: int = 1,
) -> Transcript:
    """One audio as VAD chunks of at most 30 s of speech, decoded in batches.

    The chunks are those of faster-whisper's batched pipeline (speech regions joined
    up to 30 s). ``decode`` decodes each as one clip (the CTranslate2 backend checks
    each as Whisper checks a window, :func:`window_verdict`); a chunk whose text ends
    early is decoded again from there (:func:`decode_chunks`); the times are mapped
    back to the audio's. ``vad_threads``: see :func:`speech_spans`.
    """
    from faster_whisper.vad import SpeechTimestampsMap

    duration = samples.size / SAMPLE_RATE
    spans = speech_spans(samples, vad_threads)
    if not spans:
        return Transcript("", options.language, duration)
    chunks, offsets = join_spans(samples, spans, CHUNK_MAX_SECONDS)
    to_file = SpeechTimestampsMap(spans, SAMPLE_RATE)
    segments: list[Segment] = []
    language = options.language
    with progress_bar(duration, progress) as bar:
        # one batch at a time, so that the bar moves after each (issue 27.10: four
        # batches of a 1-hour file held it at 0 % for minutes)
        group = batch_size
        for first in range(0, len(chunks), group):
            found, languages = decode_chunks(
                chunks[first : first + group], options, decode, batch_size
            )
            for offset, chunk_segments, chunk_language in zip(
                offsets[first : first + group], found, languages, strict=True
            ):
                language = language or chunk_language
                for s in chunk_segments:
                    start = to_file.get_original_time(offset + s.start)
                    end = to_file.get_original_time(offset + s.end, is_end=True)
                    segments.append(Segment(start, end, s.text))
            if segments:
                bar.update(max(0.0, min(segments[-1].end, duration) - bar.n))
        bar.update(max(0.0, duration - bar.n))
    return Transcript.from_segments(clamp_segments(segments, duration), language, duration)


def join_spans(
    samples: np.ndarray, spans: list[dict], max_seconds: float
) -> tuple[list[np.ndarray], list[float]]:
    """Speech spans joined into chunks of at most ``max_seconds``, cut at long pauses.

    faster-whisper's ``collect_chunks`` fills each chunk up to the limit and cuts before
    the span that does not fit, whatever the pause there: on the distinct-speech
    benchmark it cut one sentence at a 0.2 s breath and whisper-base lost 7 characters
    on its two halves. Here a chunk that is full is cut instead at its longest pause
    after the first half of the limit. Returns the chunks (the spans' samples end to
    end, as ``collect_chunks`` gives them) and each one's offset in seconds of speech.
    """
    limit = int(max_seconds * SAMPLE_RATE)
    groups: list[list[dict]] = [[]]
    for span in spans:
        group = groups[-1]
        length = sum(s["end"] - s["start"] for s in group)
        if group and length + span["end"] - span["start"] > limit:
            # the longest pause between two of the group's spans past half the limit,
            # where what follows it still fits with the new span; else cut at the end
            best, best_gap, held = len(group), -1, 0
            for k in range(1, len(group)):
                held += group[k - 1]["end"] - group[k - 1]["start"]
                gap = group[k]["start"] - group[k - 1]["end"]
                fits = length - held + span["end"] - span["start"] <= limit
                if held >= limit // 2 and fits and gap > best_gap:
                    best, best_gap = k, gap
            groups[-1], rest = group[:best], group[best:]
            groups.append(rest)
        groups[-1].append(span)
    chunks, offsets, position = [], [], 0
    for group in groups:
        chunks.append(np.concatenate([samples[s["start"] : s["end"]] for s in group]))
        offsets.append(position / SAMPLE_RATE)
        position += chunks[-1].size
    return chunks, offsets


def speech_spans(samples: np.ndarray, threads: int = 1) -> list[dict]:
    """Silero VAD's speech spans (faster-whisper's batched settings), in samples.

    Silero runs on one thread, alone before any decoding: 0.7 s of the 9.8 s the old
    322 s benchmark clip took on 2 cores. With ``threads`` above 1, audio of at least two
    :data:`VAD_PART_SECONDS` is cut into up to ``threads`` parts that run side by side
    (onnxruntime releases the GIL). Each cut lies at the quietest :data:`QUIET_SECONDS`
    near its even share, on Silero's window grid, so the windows are those of one pass
    and the parts differ from one pass only in the model state at each cut: on that clip,
    one span of 66 started 48 ms later.
    """
    from concurrent.futures import ThreadPoolExecutor

    from faster_whisper.vad import VadOptions, get_speech_timestamps

    vad = VadOptions(max_speech_duration_s=CHUNK_SECONDS, min_silence_duration_ms=160)
    parts = max(1, min(threads, int(samples.size / SAMPLE_RATE // VAD_PART_SECONDS)))
    if parts == 1:
        return get_speech_timestamps(samples, vad, sampling_rate=SAMPLE_RATE)
    bounds = [0, *(quiet_cut(samples, samples.size * k // parts) for k in range(1, parts))]
    bounds.append(samples.size)
    with ThreadPoolExecutor(parts) as pool:
        found = pool.map(
            lambda k: get_speech_timestamps(
                samples[bounds[k] : bounds[k + 1]], vad, sampling_rate=SAMPLE_RATE
            ),
            range(parts),
        )
        return [
            {"start": s["start"] + bounds[k], "end": s["end"] + bounds[k]}
            for k, spans in enumerate(found)
            for s in spans
        ]


def quiet_cut(samples: np.ndarray, near: int) -> int:
    """The middle of the quietest :data:`QUIET_SECONDS` within :data:`SEARCH_SECONDS` of
    sample ``near``, rounded down to Silero's window grid."""
    width = int(QUIET_SECONDS * SAMPLE_RATE)
    reach = int(SEARCH_SECONDS * SAMPLE_RATE)
    low = max(0, near - reach)
    high = min(samples.size - width, near + reach)
    if high <= low:
        return near // VAD_WINDOW * VAD_WINDOW
    energy = np.concatenate(([0.0], np.cumsum(samples[low : high + width].astype(np.float64) ** 2)))
    starts = np.arange(0, high - low + 1, width // 10)
    quietest = int(starts[np.argmin(energy[starts + width] - energy[starts])])
    return (low + quietest + width // 2) // VAD_WINDOW * VAD_WINDOW


def decode_chunks(
    chunks: list[np.ndarray], options: DecodeOptions, decode: BatchDecoder, batch_size: int
) -> tuple[list[list[Segment]], list[str | None]]:
    """Decode VAD chunks in batches, then the speech each one's text skipped.

    A chunk is speech from end to end (the VAD cut its pauses out), yet Whisper
    sometimes leaves part of a window without text: it ends early (on the old repeated
    benchmark clip, whisper-base stopped after 9.4 s of a 28.4 s chunk), or its
    timestamps jump over a sentence (on the distinct-speech benchmark, from 12.1 s to
    20.1 s of a 27.9 s chunk: one whole clip lost, 31 characters). The sequential
    decoder would go on from the last timestamp; here every such hole of more than
    :data:`TAIL_SECONDS` (after the last segment, or between two) is decoded again as a
    clip of its own, up to :data:`TAIL_PASSES` times.
    """
    found: list[list[Segment]] = [[] for _ in chunks]
    languages: list[str | None] = [None] * len(chunks)
    pending = [(i, 0, chunks[i].size) for i in range(len(chunks))]
    for _ in range(1 + TAIL_PASSES):
        if not pending:
            break
        clips = [chunks[i][start:stop] for i, start, stop in pending]
        later = []
        decoded = decode(clips, options, batch_size)
        for (i, start, stop), transcript in zip(pending, decoded, strict=True):
            offset = start / SAMPLE_RATE
            found[i] += [
                Segment(s.start + offset, s.end + offset, s.text) for s in transcript.segments
            ]
            languages[i] = languages[i] or transcript.language
            later += [(i, start + a, start + b) for a, b in holes(transcript, stop - start)]
        pending = later
    for segments in found:
        segments.sort(key=lambda s: s.start)
    return found, languages


def holes(transcript: Transcript, samples: int) -> list[tuple[int, int]]:
    """The spans of a decoded speech clip (``samples`` long) that got no text, in samples:
    after the last segment (when the text ended after at least 1 s) and between two
    segments, each longer than :data:`TAIL_SECONDS`."""
    segments = transcript.segments
    if not segments:
        return []
    found = []
    for before, after in zip(segments, segments[1:], strict=False):
        if after.start - before.end > TAIL_SECONDS:
            found.append((int(before.end * SAMPLE_RATE), int(after.start * SAMPLE_RATE)))
    end = segments[-1].end
    if end >= 1.0 and samples / SAMPLE_RATE - end > TAIL_SECONDS:
        found.append((int(end * SAMPLE_RATE), samples))
    return found


def window_verdict(segments: list, options: DecodeOptions) -> str | None:
    """Whisper's checks on one 30 s window decoded once by the batched pipeline.

    faster-whisper's ``BatchedInferencePipeline`` decodes at the first temperature only
    and applies none of the thresholds; its sequential decoder applies them as Whisper
    does. ``"silence"``: no-speech probability over its threshold and an unlikely text
    (the window gives no text); ``"fallback"``: the text loops (gzip compression ratio) or
    is unlikely (average log-probability), so the window needs the fallback temperatures;
    None: the text stands. Without robust decoding there are no thresholds: always None.
    """
    if not segments or not options.robust:
        return None
    from faster_whisper.transcribe import get_compression_ratio

    limits = options.thresholds
    first = segments[0]  # every segment of one chunk carries the chunk's scores
    unlikely = (
        limits["logprob_threshold"] is not None and first.avg_logprob < limits["logprob_threshold"]
    )
    if (
        limits["no_speech_threshold"] is not None
        and first.no_speech_prob > limits["no_speech_threshold"]
        and unlikely
    ):
        return "silence"
    ratio = get_compression_ratio("".join(s.text for s in segments))
    loops = (
        limits["compression_ratio_threshold"] is not None
        and ratio > limits["compression_ratio_threshold"]
    )
    if (loops or unlikely) and len(options.temperatures) > 1:
        return "fallback"
    return None
