"""The transformers backend: Whisper through transformers' ``generate``.

Like :class:`~whisper_finetune.inference.ct2.CT2Transcriber`, it takes a :class:`~whisper_finetune.inference.transcript.DecodeOptions` and
return a :class:`~whisper_finetune.inference.transcript.Transcript`, and neither changes shared
state per call (options travel with the call, never through ``tokenizer.set_prefix_tokens`` or a
mutated ``generation_config``), so one loaded transcriber can serve many threads'
requests with different languages.

Audio of any length is accepted:

* transformers: up to 30 s is one ``generate`` call; longer audio goes through
  transformers' sequential long-form generation on the full-length features, which
  needs timestamp tokens to know where to seek (so ``without_timestamps`` is ignored
  for it).
* ct2: faster-whisper's own sliding window. With ``batch_size > 1`` a single audio is
  cut at pauses by the Silero VAD and its chunks are decoded in batches
  (``BatchedInferencePipeline``).

Warm-up and timing are the caller's business.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.inference.base import (
    CHUNK_SAMPLES,
    CT2_ONLY,
    AudioInput,
    as_samples,
    clamp_segments,
    gated,
    progress_bar,
)
from whisper_finetune.inference.encoder_cache import reused_encoder
from whisper_finetune.inference.transcript import (
    DEFAULT_OPTIONS,
    DecodeOptions,
    Segment,
    Transcript,
)

logger = logging.getLogger(__name__)


class _BatchMaskWarningFilter(logging.Filter):
    """Drops transformers' "attention mask is not set with a batched input" warning.

    It fires on every batched Whisper ``generate`` because Whisper's pad token is its
    end-of-text token. Whisper's decoder prompts are never padded (every row starts
    with the same special tokens), so the mask it asks for would be all ones.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "attention mask is not set with a batched input" not in record.getMessage()


class _TopKWarningFilter(logging.Filter):
    """Drops "generation flags are not valid ... ['top_k']": top_k=0 is set on purpose for
    the fallback's sampling (as faster-whisper samples), and the first pass is greedy."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("generation flags are not valid" in message and "['top_k']" in message)


def _quiet_transformers() -> None:
    for name, kind in (
        ("transformers.generation.utils", _BatchMaskWarningFilter),
        ("transformers.generation.configuration_utils", _TopKWarningFilter),
    ):
        target = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in target.filters):
            target.addFilter(kind())


@contextlib.contextmanager
def _seeded(seed: int | None, device):
    """Seed torch's sampling for one call, leaving the caller's random state as it was."""
    import torch

    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class HFTranscriber:
    """Whisper through transformers' ``generate``.

    Args:
        model_path: a transformers Whisper folder (or a hub id, when the hub is reachable).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        compute_type: ``"default"`` (float16 on CUDA, float32 on CPU), ``"float32"``,
            ``"float16"`` or ``"bfloat16"``.
        progress: show a progress bar on stderr for audio over 30 s.
    """

    backend = "transformers"

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        compute_type: str = "default",
        progress: bool = True,
    ) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if compute_type == "default":
            compute_type = "float32" if device == "cpu" else "float16"
        if compute_type not in dtypes:
            raise ValueError(
                f"compute_type {compute_type!r} is not available on the transformers backend; "
                f"use one of {sorted(dtypes)} (int8 needs --backend=ct2)"
            )
        self.model_path = str(model_path)
        self.progress = progress
        self.device = torch.device(device)
        self.dtype = dtypes[compute_type]
        self.processor = WhisperProcessor.from_pretrained(self.model_path)
        self.model = WhisperForConditionalGeneration.from_pretrained(
            self.model_path, dtype=self.dtype
        )
        self.model.to(self.device).eval()
        _quiet_transformers()

    def _features(self, clips: Sequence[np.ndarray], long_form: bool):
        kwargs = {"sampling_rate": SAMPLE_RATE, "return_tensors": "pt"}
        if long_form:
            # keep everything past 30 s; transformers then runs sequential long-form generation
            kwargs.update(truncation=False, padding="longest", return_attention_mask=True)
        inputs = self.processor.feature_extractor(list(clips), **kwargs)
        features = inputs.input_features.to(self.device, self.dtype)
        mask = inputs.get("attention_mask") if long_form else None
        return features, (mask.to(self.device) if mask is not None else None)

    def _detect_languages(self, features) -> list[str]:
        """Language codes detected from the first 30 s of each input."""
        import torch

        with torch.inference_mode():
            ids = self.model.detect_language(features[..., : CHUNK_SAMPLES // 160])
        tokens = self.processor.tokenizer.convert_ids_to_tokens(ids.tolist())
        return [t.strip("<|>") for t in tokens]

    def _generate(self, clips: Sequence[np.ndarray], options: DecodeOptions) -> list[Transcript]:
        """Decode clips that are all short (one generate call) or one long clip."""
        import torch

        long_form = any(len(c) > CHUNK_SAMPLES for c in clips)
        features, mask = self._features(clips, long_form)
        languages = [options.language] * len(clips)
        if options.language is None:
            languages = self._detect_languages(features)
        kwargs = {
            "language": languages,
            "task": options.task,
            "num_beams": options.beam_size,
            # long-form decoding seeks by the predicted timestamps, so it needs them
            "return_timestamps": long_form or not options.without_timestamps,
            "return_segments": True,
        }
        if long_form:
            kwargs.update(
                attention_mask=mask, condition_on_prev_tokens=options.condition_on_previous_text
            )
        if options.max_new_tokens is not None:
            kwargs["max_new_tokens"] = options.max_new_tokens
        temperatures = options.temperatures
        if len(temperatures) > 1 or temperatures[0] > 0:
            # a tuple is transformers' fallback schedule; top_k=0 samples from the whole
            # distribution, as faster-whisper does (transformers' default top_k is 50)
            kwargs.update(temperature=temperatures if len(temperatures) > 1 else temperatures[0])
            kwargs.update(top_k=0, do_sample=temperatures[0] > 0)
        kwargs.update(options.thresholds)
        if kwargs["no_speech_threshold"] is not None and kwargs["logprob_threshold"] is None:
            kwargs["no_speech_threshold"] = None  # transformers' no-speech test needs the log-prob
        if options.initial_prompt:
            prompt = self.processor.get_prompt_ids(options.initial_prompt, return_tensors="pt")
            kwargs.update(prompt_ids=prompt.to(self.device), prompt_condition_type="first-segment")
        duration = max(len(c) for c in clips) / SAMPLE_RATE
        with (
            torch.inference_mode(),
            _seeded(options.seed, self.device),
            reused_encoder(self.model),  # each fallback temperature would encode again
            progress_bar(duration, self.progress and long_form) as bar,
        ):
            if long_form:

                def monitor(p_batch) -> None:  # (seek, max_frames) in 10 ms frames, per clip
                    done = float(p_batch[:, 0].min()) / 100
                    bar.update(max(0.0, min(done, duration) - bar.n))

                kwargs["monitor_progress"] = monitor
            out = self.model.generate(features, **kwargs)
            bar.update(max(0.0, duration - bar.n))
        decode = self.processor.tokenizer.decode
        transcripts = []
        for clip, language, raw in zip(clips, languages, out["segments"], strict=True):
            duration = len(clip) / SAMPLE_RATE
            segments = [
                Segment(
                    float(s["start"]),
                    float(s["end"]),
                    decode(s["tokens"], skip_special_tokens=True).strip(),
                )
                for s in raw
            ]
            transcripts.append(
                Transcript.from_segments(clamp_segments(segments, duration), language, duration)
            )
        return transcripts

    def transcribe(self, audio: AudioInput, options: DecodeOptions = DEFAULT_OPTIONS) -> Transcript:
        """Transcribe one audio of any length; see :class:`Transcriber`."""
        return self.transcribe_batch([as_samples(audio)], options)[0]

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        options: DecodeOptions = DEFAULT_OPTIONS,
        batch_size: int | None = None,
    ) -> list[Transcript]:
        """Transcribe clips; those up to 30 s share one batched ``generate`` call.

        Longer clips are transcribed one by one (long-form), empty ones give an empty
        transcript; with robust decoding, so do clips without speech (VAD gate).
        ``batch_size`` caps how many clips one ``generate`` call takes (default: all).
        """
        for name in CT2_ONLY:
            if getattr(options, name):
                raise ValueError(f"{name} is only supported by the ct2 backend (--backend=ct2)")
        clips = [as_samples(a) for a in audios]
        step = max(1, batch_size or len(clips) or 1)
        out: list[Transcript] = []
        for i in range(0, len(clips), step):
            group = clips[i : i + step]
            out += gated(group, options, lambda kept: self._decode(kept, options))
        return out

    def _decode(self, clips: list[np.ndarray], options: DecodeOptions) -> list[Transcript]:
        results: list[Transcript | None] = [None] * len(clips)
        short = [i for i, c in enumerate(clips) if 0 < c.size <= CHUNK_SAMPLES]
        if short:
            for i, t in zip(short, self._generate([clips[i] for i in short], options), strict=True):
                results[i] = t
        for i, clip in enumerate(clips):
            if results[i] is None:
                if clip.size == 0:
                    results[i] = Transcript("", options.language, 0.0)
                else:
                    results[i] = self._generate([clip], options)[0]
        return results  # type: ignore[return-value]
