"""The whisper.cpp backend: a GGML model file through ``pywhispercpp``.

``pip install whisper-finetune[whispercpp]`` brings ``pywhispercpp``, whose wheels carry
whisper.cpp compiled in. Models are the files ``whisper-finetune convert --format=ggml``
writes (or any whisper.cpp ``ggml-*.bin``).

Decoding follows the same :class:`DecodeOptions` as the other backends. Robust decoding
(the default) maps onto whisper.cpp's own fallback: the same temperature step, log-prob
and no-speech thresholds, and whisper.cpp's entropy threshold in place of the gzip
compression ratio (whisper.cpp's analogue, with the same default of 2.4); the Silero VAD
gate runs in front, as on the other backends. ``robust=False`` is one greedy or beam pass
with no thresholds. Non-speech tokens are suppressed as transformers' generation config
does, and there is no conditioning on the previous window unless asked. Audio of at
least :data:`LONG_AUDIO_SECONDS` takes the CTranslate2 backend's long-audio path
(:func:`~whisper_finetune.inference.chunks.transcribe_chunked`): Silero VAD chunks of up
to 30 s of speech, each decoded alone (no text carried over), and what an early end left
of a chunk decoded again; asked to condition on the previous text, whisper.cpp runs its
own 30 s windows over the whole audio instead. Every
call builds its own ``whisper_full_params`` from its :class:`DecodeOptions`, so one
loaded model serves calls with different options; whisper.cpp's context is not
reentrant, so calls on one transcriber run one at a time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.inference.base import (
    CT2_ONLY,
    AudioInput,
    as_samples,
    clamp_segments,
    gated,
)
from whisper_finetune.inference.chunks import transcribe_chunked
from whisper_finetune.inference.transcript import (
    DEFAULT_OPTIONS,
    DecodeOptions,
    Segment,
    Transcript,
)
from whisper_finetune.models.ggml_check import (
    find_ggml_file,
    load_whisper_cpp,
    read_ggml_header,
    require_extra,
)

logger = logging.getLogger(__name__)

# thresholds no window crosses: whisper.cpp fails a window whose token entropy is below
# entropy_thold (a repetition loop) or whose average log-prob is below logprob_thold
NO_ENTROPY_CHECK = 0.0
NO_LOGPROB_CHECK = -1e9

# audio at least this long is cut into Silero VAD chunks (as on the CTranslate2 backend)
LONG_AUDIO_SECONDS = 60.0


class WhisperCppTranscriber:
    """Whisper through whisper.cpp (``pywhispercpp``).

    Args:
        model_path: a whisper.cpp model file, or a folder holding one ``ggml-*.bin``.
        device: ``"auto"``/``"cpu"`` run on the CPU; ``"cuda"`` asks whisper.cpp for a GPU
            (the PyPI wheels are CPU builds). The weights run in the file's own type
            (see ``compute_type`` of :func:`~whisper_finetune.inference.loader.load_transcriber`).
        cpu_threads: threads; 0 uses whisper.cpp's default (up to 4).
        progress: show a progress bar on stderr for long audio.
        long_audio_chunks: cut audio of :data:`LONG_AUDIO_SECONDS` or more into VAD
            chunks decoded one by one (False: whisper.cpp's own windows over it all).

    Raises:
        whisper_finetune.models.ggml_check.MissingExtraError: without ``pywhispercpp``.
        FileNotFoundError: when ``model_path`` holds no whisper.cpp model file.
        ValueError: for an f32 file, which this whisper.cpp build cannot run on a CPU.
    """

    backend = "whispercpp"

    def __init__(
        self,
        model_path: str | os.PathLike,
        device: str = "auto",
        cpu_threads: int = 0,
        progress: bool = True,
        long_audio_chunks: bool = True,
    ) -> None:
        require_extra("pywhispercpp", "the whisper.cpp backend (--backend=whispercpp)")
        path = find_ggml_file(model_path)
        if path is None:
            raise FileNotFoundError(
                f"{model_path} is not a whisper.cpp model file nor a folder holding one "
                "ggml-*.bin (make one with: whisper-finetune convert --format=ggml)"
            )
        if read_ggml_header(path)["ftype"] == 0:
            raise ValueError(
                f"{path} is an f32 model: whisper.cpp's CPU convolution takes f16 kernels only "
                "and aborts the process on it (ggml-org/whisper.cpp#2557); convert with "
                "--quantization=f16 (or q8_0, ...) instead"
            )
        self._ctx = load_whisper_cpp(path, use_gpu=device.startswith("cuda"))
        import _pywhispercpp as pw  # loaded by load_whisper_cpp

        self._pw = pw
        self.model_path = str(path)
        self.cpu_threads = cpu_threads
        self.progress = progress
        self.long_audio_chunks = long_audio_chunks
        self._lock = threading.Lock()

    def __del__(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            self._pw.whisper_free(ctx)

    def _params(self, options: DecodeOptions):
        pw = self._pw
        for name in CT2_ONLY:
            if getattr(options, name):
                raise ValueError(f"{name} is only supported by the ct2 backend (--backend=ct2)")
        greedy = options.beam_size == 1
        strategy = pw.whisper_sampling_strategy
        params = pw.whisper_full_default_params(
            strategy.WHISPER_SAMPLING_GREEDY if greedy else strategy.WHISPER_SAMPLING_BEAM_SEARCH
        )
        if self.cpu_threads > 0:
            params.n_threads = self.cpu_threads
        if greedy:
            params.greedy = {"best_of": 1}
        else:
            params.beam_search = {"beam_size": options.beam_size, "patience": -1.0}
        params.language = options.language or "auto"
        params.translate = options.task == "translate"
        params.no_timestamps = options.without_timestamps
        params.no_context = not options.condition_on_previous_text
        params.temperature = options.temperature
        thresholds = options.thresholds  # all None without robust decoding
        step = options.temperature_increment_on_fallback if options.robust else None
        params.temperature_inc = step or 0.0  # 0: one temperature, no fallback
        ratio, logprob = thresholds["compression_ratio_threshold"], thresholds["logprob_threshold"]
        params.entropy_thold = ratio if ratio is not None else NO_ENTROPY_CHECK
        params.logprob_thold = logprob if logprob is not None else NO_LOGPROB_CHECK
        no_speech = thresholds["no_speech_threshold"]
        # a probability never exceeds 1: no window is skipped
        params.no_speech_thold = no_speech if no_speech is not None else 1.0
        params.suppress_nst = True  # transformers' generation config suppresses these too
        if options.max_new_tokens is not None:
            params.max_tokens = options.max_new_tokens
        if options.initial_prompt:
            params.initial_prompt = options.initial_prompt
        params.print_progress = False
        params.print_realtime = False
        params.print_timestamps = False
        return params

    def transcribe(self, audio: AudioInput, options: DecodeOptions = DEFAULT_OPTIONS) -> Transcript:
        """Transcribe one audio of any length; see :class:`~whisper_finetune.inference.base.Transcriber`."""
        samples = np.ascontiguousarray(as_samples(audio), dtype=np.float32)
        if samples.size == 0:
            return Transcript("", options.language, 0.0)
        if (
            self.long_audio_chunks
            and samples.size >= LONG_AUDIO_SECONDS * SAMPLE_RATE
            and not options.condition_on_previous_text
        ):
            self._params(options)  # refuse options whisper.cpp lacks before the VAD runs
            # the chunks are the speech the VAD found: that is the gate
            return transcribe_chunked(
                samples, options, self._chunks, 1, self.progress, max(1, self.cpu_threads)
            )
        return gated([samples], options, lambda kept: [self._one(kept[0], options)])[0]

    def _chunks(
        self, clips: list[np.ndarray], options: DecodeOptions, batch_size: int
    ) -> list[Transcript]:
        # one chunk at a time, each from a clean context (whisper.cpp's own fallback and
        # thresholds apply to each, as to a window)
        return [self._one(np.ascontiguousarray(c), options) for c in clips]

    def _one(self, samples: np.ndarray, options: DecodeOptions) -> Transcript:
        duration = samples.size / SAMPLE_RATE
        params = self._params(options)
        pw = self._pw
        with self._lock:
            if pw.whisper_full(self._ctx, params, samples, samples.size) != 0:
                raise RuntimeError(f"whisper.cpp failed to transcribe ({self.model_path})")
            segments = [
                Segment(
                    # 10 ms units; without timestamps whisper.cpp leaves t0 undefined
                    max(pw.whisper_full_get_segment_t0(self._ctx, i) / 100, 0.0),
                    pw.whisper_full_get_segment_t1(self._ctx, i) / 100,
                    pw.whisper_full_get_segment_text(self._ctx, i)
                    .decode("utf-8", errors="replace")
                    .strip(),
                )
                for i in range(pw.whisper_full_n_segments(self._ctx))
            ]
            language = options.language or pw.whisper_lang_str(pw.whisper_full_lang_id(self._ctx))
        return Transcript.from_segments(clamp_segments(segments, duration), language, duration)

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        options: DecodeOptions = DEFAULT_OPTIONS,
        batch_size: int | None = None,
    ) -> list[Transcript]:
        """Transcribe clips one after another (whisper.cpp decodes one audio at a time,
        so ``batch_size`` changes nothing)."""
        return [self.transcribe(a, options) for a in audios]
