"""The CTranslate2 backend: Whisper through faster-whisper.

faster-whisper returns segments as a lazy generator; :class:`CT2Transcriber` consumes it
inside its own call, so decoding time and errors belong to that call. Decoding uses one
temperature (no fallback schedule) and no compression/log-prob/no-speech thresholds,
which is what the transformers backend does, so both give the same greedy text on the
same weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.inference.base import (
    CHUNK_SAMPLES,
    CHUNK_SECONDS,
    AudioInput,
    as_samples,
    clamp_segments,
)
from whisper_finetune.inference.transcript import (
    DEFAULT_OPTIONS,
    DecodeOptions,
    Segment,
    Transcript,
    Word,
)

logger = logging.getLogger(__name__)

# On a CPU, one audio at least this long is cut at pauses (Silero VAD) and its chunks are
# decoded in batches of LONG_AUDIO_BATCH, unless a batch size was chosen: on the 322 s
# benchmark clip it was as fast as sequential decoding with a lower CER (0.091 vs 0.164;
# README, "Long audio on a CPU").
LONG_AUDIO_SECONDS = 60.0
LONG_AUDIO_BATCH = 8


class CT2Transcriber:
    """Whisper through CTranslate2 (faster-whisper).

    Args:
        model_path: a CTranslate2 Whisper folder with ``tokenizer.json`` and
            ``preprocessor_config.json``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 compute type: ``"default"`` (the model's own type, or the
            nearest the device supports), ``"int8"``, ``"int8_float16"``, ``"float16"``,
            ``"float32"``, ...
        cpu_threads: threads per CPU worker; 0 leaves CTranslate2's default.
        num_workers: parallel workers when called from several threads.
        batch_size: above 1, faster-whisper's ``BatchedInferencePipeline`` decodes in
            batches: :meth:`transcribe` cuts the audio at pauses (Silero VAD) into
            chunks, and :meth:`transcribe_batch` treats each clip as one chunk.
        long_audio_batch: at 1 (the default ``batch_size``), the batch size used for one
            audio of :data:`LONG_AUDIO_SECONDS` or more; ``None`` means
            :data:`LONG_AUDIO_BATCH` on a CPU and 1 (sequential decoding) on a GPU. Audio
            decoded while conditioning on the previous text always goes sequentially.
    """

    backend = "ct2"

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 0,
        num_workers: int = 1,
        batch_size: int = 1,
        long_audio_batch: int | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path)
        self.batch_size = batch_size
        self.model = WhisperModel(
            self.model_path,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )
        if long_audio_batch is None:
            long_audio_batch = LONG_AUDIO_BATCH if self.model.model.device == "cpu" else 1
        self.long_audio_batch = long_audio_batch

    @staticmethod
    def _kwargs(options: DecodeOptions) -> dict:
        return {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size,
            "best_of": 1,
            # one temperature, no fallback: the same decoding as the transformers backend
            "temperature": options.temperature,
            "compression_ratio_threshold": None,
            "log_prob_threshold": None,
            "no_speech_threshold": None,
            "condition_on_previous_text": options.condition_on_previous_text,
            "without_timestamps": options.without_timestamps,
            "initial_prompt": options.initial_prompt,
            "max_new_tokens": options.max_new_tokens,
            "hotwords": options.hotwords,
            "vad_filter": options.vad_filter,
            "word_timestamps": options.word_timestamps,
        }

    @staticmethod
    def _segment(s, offset: float = 0.0) -> Segment:
        # float(): after VAD, faster-whisper's times are NumPy scalars
        words = tuple(
            Word(float(w.start) - offset, float(w.end) - offset, w.word, float(w.probability))
            for w in (s.words or ())
        )
        return Segment(float(s.start) - offset, float(s.end) - offset, s.text.strip(), words)

    def transcribe(self, audio: AudioInput, options: DecodeOptions = DEFAULT_OPTIONS) -> Transcript:
        """Transcribe one audio of any length; see :class:`Transcriber`."""
        samples = as_samples(audio)
        batch_size = self.batch_size
        if (
            batch_size == 1
            and self.long_audio_batch > 1
            and samples.size >= LONG_AUDIO_SECONDS * SAMPLE_RATE
            and not options.condition_on_previous_text
        ):
            batch_size = self.long_audio_batch
        return self._transcribe(samples, options, batch_size > 1, batch_size)

    def _transcribe(
        self,
        samples: np.ndarray,
        options: DecodeOptions,
        batched: bool,
        batch_size: int | None = None,
    ) -> Transcript:
        duration = samples.size / SAMPLE_RATE
        if samples.size == 0:
            return Transcript("", options.language, 0.0)
        kwargs = self._kwargs(options)
        if batched:
            from faster_whisper import BatchedInferencePipeline

            # the batched pipeline needs VAD chunks for audio of 30 s or more
            kwargs["vad_filter"] = options.vad_filter or duration >= CHUNK_SECONDS
            pipeline = BatchedInferencePipeline(self.model)
            batch_size = batch_size or self.batch_size
            segments, info = pipeline.transcribe(samples, batch_size=batch_size, **kwargs)
        else:
            segments, info = self.model.transcribe(samples, **kwargs)
        # faster-whisper decodes lazily, while the generator is iterated: do it here
        decoded = [self._segment(s) for s in segments]
        return Transcript.from_segments(clamp_segments(decoded, duration), info.language, duration)

    def transcribe_batch(
        self, audios: Sequence[np.ndarray], options: DecodeOptions = DEFAULT_OPTIONS
    ) -> list[Transcript]:
        """Transcribe clips; batched when ``batch_size > 1`` and the language is known.

        Batching lays the clips (each at most 30 s) end to end on whole-second
        boundaries and gives faster-whisper their positions as ``clip_timestamps``, so
        each clip is one chunk of ``BatchedInferencePipeline``. Otherwise, and for
        longer clips or an unknown language (detected per clip), clips run one by one.
        """
        clips = [as_samples(a) for a in audios]
        batchable = (
            self.batch_size > 1
            and options.language is not None
            and not options.word_timestamps
            and all(0 < c.size <= CHUNK_SAMPLES for c in clips)
        )
        if not batchable or len(clips) < 2:
            # one by one with faster-whisper's sequential decoder (no VAD unless asked)
            return [self._transcribe(c, options, batched=False) for c in clips]
        return self._batched(clips, options)

    def _batched(self, clips: list[np.ndarray], options: DecodeOptions) -> list[Transcript]:
        from faster_whisper import BatchedInferencePipeline

        starts, position = [], 0
        for clip in clips:
            starts.append(position)
            position += -(-clip.size // SAMPLE_RATE) * SAMPLE_RATE + SAMPLE_RATE  # ceil + 1 s gap
        joined = np.zeros(position, dtype=np.float32)
        for start, clip in zip(starts, clips, strict=True):
            joined[start : start + clip.size] = clip
        # whole-second starts are exact in float; the +0.5 keeps int(end * 16000) exact
        clip_timestamps = [
            {"start": start / SAMPLE_RATE, "end": (start + clip.size + 0.5) / SAMPLE_RATE}
            for start, clip in zip(starts, clips, strict=True)
        ]
        kwargs = self._kwargs(options)
        kwargs["vad_filter"] = False
        pipeline = BatchedInferencePipeline(self.model)
        segments, info = pipeline.transcribe(
            joined, batch_size=self.batch_size, clip_timestamps=clip_timestamps, **kwargs
        )
        # a segment's seek is its chunk's start in 10 ms frames
        by_seek = {start // (SAMPLE_RATE // 100): i for i, start in enumerate(starts)}
        grouped: list[list[Segment]] = [[] for _ in clips]
        for s in segments:
            i = by_seek[s.seek]
            grouped[i].append(self._segment(s, offset=starts[i] / SAMPLE_RATE))
        return [
            Transcript.from_segments(
                clamp_segments(g, c.size / SAMPLE_RATE), info.language, c.size / SAMPLE_RATE
            )
            for g, c in zip(grouped, clips, strict=True)
        ]
