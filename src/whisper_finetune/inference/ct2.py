"""The CTranslate2 backend: Whisper through faster-whisper.

faster-whisper returns segments as a lazy generator; :class:`CT2Transcriber` consumes it
inside its own call, so decoding time and errors belong to that call. The temperature
schedule and the compression-ratio, log-prob and no-speech thresholds come from
:class:`~whisper_finetune.inference.transcript.DecodeOptions`, as on the transformers
backend, so both decode alike (``robust=False``: one greedy pass on both).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.data.workers import available_cpus
from whisper_finetune.inference.base import (
    CHUNK_SAMPLES,
    CHUNK_SECONDS,
    AudioInput,
    as_samples,
    clamp_segments,
    gated,
    progress_bar,
    speech_regions,
)
from whisper_finetune.inference.chunks import transcribe_chunked, window_verdict
from whisper_finetune.inference.replicas import ReplicaSplit
from whisper_finetune.inference.transcript import (
    DEFAULT_OPTIONS,
    DecodeOptions,
    Segment,
    Transcript,
    Word,
)

logger = logging.getLogger(__name__)

# On a CPU, one audio at least this long is cut at pauses (Silero VAD) and its chunks are
# decoded in batches, unless a batch size was chosen: LONG_AUDIO_BATCH chunks on one
# replica, BATCH_PER_REPLICA per replica on several (at most MAX_REPLICAS by default; see
# inference/replicas.py). On the old 322 s benchmark clip (8 clips repeated), 2 cores:
# RTF 0.062 sequential, 0.047 batched on one replica, about 0.03 on two. On 385 s of
# distinct speech (benchmarks/long_audio.py, docs/long-audio.md): CER 0.135, the CER of
# the same 40 clips decoded one by one, against 0.189 for sequential 30 s windows.
LONG_AUDIO_SECONDS = 60.0
LONG_AUDIO_BATCH = 8
BATCH_PER_REPLICA = 6
MAX_REPLICAS = 8


def _seed(seed: int | None) -> None:
    """Seed CTranslate2's sampling (fallback temperatures) for the next call."""
    if seed is not None:
        import ctranslate2

        ctranslate2.set_random_seed(seed)


class CT2Transcriber:
    """Whisper through CTranslate2 (faster-whisper).

    Args:
        model_path: a CTranslate2 Whisper folder with ``tokenizer.json`` and
            ``preprocessor_config.json``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 compute type: ``"default"`` (float16 on CUDA, the same
            precision class as the transformers backend's default; on CPU the model's own
            type, or the nearest the CPU supports),
            ``"int8"``, ``"int8_float16"``, ``"float16"``, ``"float32"``, ...
        cpu_threads: threads per CPU worker; 0 leaves CTranslate2's default.
        num_workers: parallel workers when called from several threads.
        batch_size: above 1, faster-whisper's ``BatchedInferencePipeline`` decodes in
            batches: :meth:`transcribe` cuts the audio at pauses (Silero VAD) into
            chunks, and :meth:`transcribe_batch` treats each clip as one chunk.
        pad_audio: pad clips shorter than 30 s with 30 s of silence *before* the log-mel,
            as transformers' feature extractor (and so training) does, instead of
            faster-whisper's own zero log-mel padding. ``None`` (the default): silence on
            float types, where it gives transformers' features and about its CER; zero
            log-mel padding on int8 types, where silence padding was measured worse
            every time (the demo's merged model on its synthetic split: 0.252 against
            0.201, while float32 gave 0.197 and 0.195 and transformers 0.206;
            whisper-base on the real-speech guard set: 0.132 against 0.119). See also
            ``benchmarks/padding_robust.py``.
        progress: show a progress bar on stderr for audio over 30 s.
        long_audio_batch: at 1 (the default ``batch_size``), the batch size used for one
            audio of :data:`LONG_AUDIO_SECONDS` or more; ``None`` means, on a CPU,
            :data:`BATCH_PER_REPLICA` per replica and at least :data:`LONG_AUDIO_BATCH`,
            and 1 (sequential decoding) on a GPU. Audio
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
        pad_audio: bool | None = None,
        progress: bool = True,
        long_audio_batch: int | None = None,
        replicas: int | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path)
        self.batch_size = batch_size
        self.progress = progress
        if compute_type == "default":
            # like for like with the transformers backend on GPU: float16 on both (the
            # model's own type, often float32 after a conversion, would compare fp32
            # CTranslate2 with fp16 transformers); on CPU the model's own type
            import ctranslate2

            on_cuda = device.startswith("cuda") or (
                device == "auto" and ctranslate2.get_cuda_device_count() > 0
            )
            compute_type = "float16" if on_cuda else "default"
        self.compute_type = compute_type
        import ctranslate2

        from whisper_finetune.cuda_libs import require_ct2_cuda_libraries

        if device.startswith("cuda") or (
            device == "auto" and ctranslate2.get_cuda_device_count() > 0
        ):
            # CUDA 12 cuBLAS / cuDNN 9: found, or an error naming the pip install line
            # (a CUDA 13 machine lacks them; CTranslate2 would fail later, or abort)
            require_ct2_cuda_libraries("cuda")
        self.model = WhisperModel(
            self.model_path,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )
        inner = getattr(self.model, "model", None)  # the CTranslate2 model
        if pad_audio is None:
            effective = str(getattr(inner, "compute_type", compute_type))
            pad_audio = not effective.startswith("int8")
        self.pad_audio = pad_audio
        self.cpu_threads = cpu_threads
        self.num_workers = num_workers
        on_cpu = getattr(inner, "device", "cpu") == "cpu"
        if replicas is None:
            replicas = (
                num_workers
                if num_workers > 1
                else min(cpu_threads or available_cpus(), MAX_REPLICAS)
            )
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.replicas = replicas if on_cpu else 1
        if long_audio_batch is None:
            long_audio_batch = (
                max(LONG_AUDIO_BATCH, BATCH_PER_REPLICA * self.replicas) if on_cpu else 1
            )
        self.long_audio_batch = long_audio_batch
        self._pipeline_model = None
        self._pipeline_lock = threading.Lock()

    def _batched_model(self):
        """The faster-whisper model the batched pipeline runs on (see ``replicas``).

        Made once, under a lock: the server calls one transcriber from several threads.
        """
        with self._pipeline_lock:
            if self._pipeline_model is None:
                self._pipeline_model = self._replica_model()
            return self._pipeline_model

    def _replica_model(self):
        if self.replicas < 2:
            return self.model
        from faster_whisper import WhisperModel

        if self.num_workers == self.replicas:
            model = self.model
        else:
            logger.info("loading %d one-thread replicas for batched decoding", self.replicas)
            model = WhisperModel(
                self.model_path,
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=1,
                num_workers=self.replicas,
                local_files_only=True,
            )
        # a lone window runs on the main model, with all the threads on one job
        model.model = ReplicaSplit(model.model, self.replicas, alone=self.model.model)
        return model

    @staticmethod
    def _kwargs(options: DecodeOptions) -> dict:
        return {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size,
            "best_of": 1,
            # the same schedule and thresholds as the transformers backend
            "temperature": list(options.temperatures),
            "compression_ratio_threshold": options.thresholds["compression_ratio_threshold"],
            "log_prob_threshold": options.thresholds["logprob_threshold"],
            "no_speech_threshold": options.thresholds["no_speech_threshold"],
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
        batch_size = self._batch_size(samples, options)
        if batch_size > 1 and (options.vad_filter or samples.size >= CHUNK_SAMPLES):
            # cut at pauses with Silero VAD, the gate's model at the gate's threshold, and
            # decode only the speech: that is the gate, so the gate's own pass over the
            # whole audio (0.7 s on the 322 s benchmark clip) is skipped
            if options.word_timestamps:  # faster-whisper's pipeline places the words
                return self._transcribe(samples, options, True, batch_size)
            return transcribe_chunked(
                samples, options, self._unpadded, batch_size, self.progress, self.replicas
            )

        def decode(kept: list[np.ndarray]) -> list[Transcript]:
            return [self._transcribe(kept[0], options, batch_size > 1, batch_size)]

        return gated([samples], options, decode)[0]

    def _batch_size(self, samples: np.ndarray, options: DecodeOptions) -> int:
        """``batch_size``, or ``long_audio_batch`` for long audio on a CPU."""
        if (
            self.batch_size == 1
            and self.long_audio_batch > 1
            and samples.size >= LONG_AUDIO_SECONDS * SAMPLE_RATE
            and not options.condition_on_previous_text
        ):
            return self.long_audio_batch
        return self.batch_size

    def _transcribe(
        self,
        samples: np.ndarray,
        options: DecodeOptions,
        batched: bool,
        batch_size: int | None = None,
        pad_audio: bool | None = None,
    ) -> Transcript:
        duration = samples.size / SAMPLE_RATE
        if samples.size == 0:
            return Transcript("", options.language, 0.0)
        kwargs = self._kwargs(options)
        _seed(options.seed)
        if batched:
            from faster_whisper import BatchedInferencePipeline

            # the batched pipeline needs VAD chunks for audio of 30 s or more
            kwargs["vad_filter"] = options.vad_filter or duration >= CHUNK_SECONDS
            pipeline = BatchedInferencePipeline(self._batched_model())
            batch_size = batch_size or self.batch_size
            segments, info = pipeline.transcribe(samples, batch_size=batch_size, **kwargs)
        else:
            pad_audio = self.pad_audio if pad_audio is None else pad_audio
            if pad_audio and not options.vad_filter and samples.size < CHUNK_SAMPLES:
                # one 30 s window of waveform zeros, as transformers and training see it
                samples = np.pad(samples, (0, CHUNK_SAMPLES - samples.size))
            segments, info = self.model.transcribe(samples, **kwargs)
        # faster-whisper decodes lazily, while the generator is iterated: do it here
        decoded = []
        with progress_bar(duration, self.progress) as bar:
            for s in segments:
                decoded.append(self._segment(s))
                bar.update(max(0.0, min(float(s.end), duration) - bar.n))
            bar.update(max(0.0, duration - bar.n))
        return Transcript.from_segments(clamp_segments(decoded, duration), info.language, duration)

    def stream(self, audio: AudioInput, options: DecodeOptions = DEFAULT_OPTIONS):
        """Decode lazily: ``(info, segments)``, faster-whisper's own segment generator.

        Each segment (with ``id``, ``seek``, ``tokens``, ``avg_logprob``, ...) is decoded
        when the generator reaches it, so a caller can pass it on at once or stop early
        (the server streams them). The sequential decoder is used whatever
        ``batch_size`` is; times are not clamped to the audio's length.
        """
        samples = as_samples(audio)
        segments, info = self.model.transcribe(samples, **self._kwargs(options))
        if not (options.robust and options.vad_gate):
            return segments, info
        # the VAD gate of transcribe(), for the whole audio: no speech, no segments (and no
        # decoding, since the generator is never advanced)
        if samples.size and speech_regions(samples):
            return segments, info
        return iter(()), info

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        options: DecodeOptions = DEFAULT_OPTIONS,
        batch_size: int | None = None,
    ) -> list[Transcript]:
        """Transcribe clips; batched when ``batch_size > 1`` and the language is known.

        ``batch_size`` (default: the transcriber's) lets a caller that gathered the clips
        itself (the server, batching concurrent requests) batch them on any transcriber.

        Batching lays the clips (each at most 30 s) end to end on whole-second
        boundaries and gives faster-whisper their positions as ``clip_timestamps``, so
        each clip is one chunk of ``BatchedInferencePipeline``. Otherwise, and for
        longer clips or an unknown language (detected per clip), clips run one by one.
        """
        clips = [as_samples(a) for a in audios]
        return gated(clips, options, lambda kept: self._decode(kept, options, batch_size))

    def _decode(
        self, clips: list[np.ndarray], options: DecodeOptions, batch_size: int | None = None
    ) -> list[Transcript]:
        batch_size = batch_size or self.batch_size
        batchable = (
            batch_size > 1
            and options.language is not None
            and not options.word_timestamps
            and all(0 < c.size <= CHUNK_SAMPLES for c in clips)
        )
        if not batchable or len(clips) < 2:
            # one by one with faster-whisper's sequential decoder (no VAD unless asked)
            return [self._transcribe(c, options, batched=False) for c in clips]
        return self._batched(clips, options, batch_size)

    def _unpadded(
        self, clips: list[np.ndarray], options: DecodeOptions, batch_size: int
    ) -> list[Transcript]:
        """Long audio's chunks (and their rests), padded as faster-whisper pads them (log-mel
        zeros), not with silence, whatever ``pad_audio``: on the long benchmark clip, CER
        0.091 against 0.098, and a third faster (fewer early ends); a chunk is speech up to
        30 s, with little padding."""
        return self._batched(clips, options, batch_size, pad_audio=False)

    def _batched(
        self,
        clips: list[np.ndarray],
        options: DecodeOptions,
        batch_size: int | None = None,
        pad_audio: bool | None = None,
    ) -> list[Transcript]:
        from faster_whisper import BatchedInferencePipeline

        # each clip's chunk: the clip, or (pad_audio) the clip and silence up to 30 s
        pad_audio = self.pad_audio if pad_audio is None else pad_audio
        sizes = [CHUNK_SAMPLES if pad_audio else c.size for c in clips]
        starts, position = [], 0
        for size in sizes:
            starts.append(position)
            position += -(-size // SAMPLE_RATE) * SAMPLE_RATE + SAMPLE_RATE  # ceil + 1 s gap
        joined = np.zeros(position, dtype=np.float32)
        for start, clip in zip(starts, clips, strict=True):
            joined[start : start + clip.size] = clip
        # whole-second starts are exact in float; the +0.5 keeps int(end * 16000) exact
        clip_timestamps = [
            {"start": start / SAMPLE_RATE, "end": (start + size + 0.5) / SAMPLE_RATE}
            for start, size in zip(starts, sizes, strict=True)
        ]
        kwargs = self._kwargs(options)
        kwargs["vad_filter"] = False
        _seed(options.seed)
        pipeline = BatchedInferencePipeline(self._batched_model())
        segments, info = pipeline.transcribe(
            joined,
            batch_size=batch_size or self.batch_size,
            clip_timestamps=clip_timestamps,
            **kwargs,
        )
        # a segment's seek is its chunk's start in 10 ms frames
        by_seek = {start // (SAMPLE_RATE // 100): i for i, start in enumerate(starts)}
        raw: list[list] = [[] for _ in clips]
        for s in segments:
            raw[by_seek[s.seek]].append(s)
        results = []
        for i, clip in enumerate(clips):
            verdict = window_verdict(raw[i], options)
            if verdict == "fallback":
                # the pipeline decodes each chunk once, at the first temperature: the
                # sequential decoder gives this clip Whisper's whole fallback, padded
                # as its first pass was
                results.append(self._transcribe(clip, options, False, pad_audio=pad_audio))
                continue
            kept = [] if verdict == "silence" else raw[i]
            offset, duration = starts[i] / SAMPLE_RATE, clip.size / SAMPLE_RATE
            decoded = [self._segment(s, offset=offset) for s in kept]
            results.append(
                Transcript.from_segments(clamp_segments(decoded, duration), info.language, duration)
            )
        return results
