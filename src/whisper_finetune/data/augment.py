"""Waveform augmentation, configured as data: a list of ``{type, params, prob}``.

The configuration file (JSON or YAML) is the original project's format, e.g.::

    [
      {"type": "speed", "params": {"min_speed_rate": 0.9, "max_speed_rate": 1.1, "num_rates": 3}, "prob": 0.5},
      {"type": "shift", "params": {"min_shift_ms": -5, "max_shift_ms": 5}, "prob": 0.0},
      {"type": "volume", "params": {"min_gain_dBFS": -15, "max_gain_dBFS": 15}, "prob": 0.5},
      {"type": "noise", "params": {"min_snr_dB": 10, "max_snr_dB": 50, "noise_dir": "noise/"}, "prob": 0.2},
      {"type": "resample", "params": {"new_sample_rates": [8000, 32000, 44100]}, "prob": 0.0}
    ]

Each entry is applied, in order, with probability ``prob``. Augmentations that move
audio in time (``speed``, ``shift``) report how, so timestamp labels stay aligned.
Unknown types or parameters are errors, and ``noise`` with an empty folder fails when
the configuration is loaded, not silently during training.

SpecAugment is not here: it masks log-mel features inside the model and is switched on
through the model config (``apply_spec_augment``, ``mask_time_prob``,
``mask_feature_prob``; see ``FinetuneConfig``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, resample

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm", ".aac"})


@dataclass(frozen=True)
class AugmentSpec:
    """One entry of the augmentation list."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)
    prob: float = 1.0


@dataclass(frozen=True)
class Augmented:
    """An augmented waveform and the time map ``t_new = t * time_scale + time_offset``."""

    wave: np.ndarray
    time_scale: float = 1.0
    time_offset: float = 0.0


# ---- the augmentations: (wave, rng) -> (wave, scale, offset) -------------------------


def _speed(min_speed_rate=0.9, max_speed_rate=1.1, num_rates=3):
    if not 0 < min_speed_rate <= max_speed_rate:
        raise ValueError("speed: need 0 < min_speed_rate <= max_speed_rate")
    rates = np.linspace(min_speed_rate, max_speed_rate, num_rates) if num_rates > 0 else None

    def apply(wave, rng):
        rate = (
            float(rng.choice(rates))
            if rates is not None
            else rng.uniform(min_speed_rate, max_speed_rate)
        )
        if rate == 1.0:
            return wave, 1.0, 0.0
        # tape-style speed change by linear interpolation (pitch moves with speed), as upstream
        n_out = max(1, int(round(wave.size / rate)))
        positions = np.linspace(0, wave.size - 1, n_out)
        out = np.interp(positions, np.arange(wave.size), wave).astype(np.float32)
        return out, 1.0 / rate, 0.0

    return apply


def _shift(min_shift_ms=-5.0, max_shift_ms=5.0):
    if min_shift_ms > max_shift_ms:
        raise ValueError("shift: min_shift_ms must not exceed max_shift_ms")

    def apply(wave, rng):
        shift_ms = rng.uniform(min_shift_ms, max_shift_ms)
        n = int(round(abs(shift_ms) * SAMPLE_RATE / 1000))
        if n == 0 or n >= wave.size:
            return wave, 1.0, 0.0
        out = np.zeros_like(wave)
        if shift_ms > 0:  # delay: the audio starts later
            out[n:] = wave[:-n]
        else:  # advance
            out[:-n] = wave[n:]
        return out, 1.0, shift_ms / 1000.0

    return apply


def _volume(min_gain_dBFS=-15.0, max_gain_dBFS=15.0):  # noqa: N803 (upstream's names)
    if min_gain_dBFS > max_gain_dBFS:
        raise ValueError("volume: min_gain_dBFS must not exceed max_gain_dBFS")

    def apply(wave, rng):
        gain_db = rng.uniform(min_gain_dBFS, max_gain_dBFS)
        return (wave * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32), 1.0, 0.0

    return apply


def _noise(noise_dir, min_snr_dB=10.0, max_snr_dB=50.0):  # noqa: N803
    folder = Path(noise_dir).expanduser()
    if not folder.is_dir():
        raise ValueError(f"noise: noise_dir {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"noise: no audio files in {folder}")
    cache: dict[Path, np.ndarray] = {}

    def apply(wave, rng):
        path = files[int(rng.integers(len(files)))]
        if path not in cache:
            cache[path] = load_audio(path)
        noise = cache[path]
        if noise.size < wave.size:
            noise = np.tile(noise, int(np.ceil(wave.size / noise.size)))
        start = int(rng.integers(noise.size - wave.size + 1))
        noise = noise[start : start + wave.size]
        wave_rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
        noise_rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
        if noise_rms == 0.0 or wave_rms == 0.0:
            return wave, 1.0, 0.0
        snr_db = rng.uniform(min_snr_dB, max_snr_dB)
        gain = wave_rms / (noise_rms * 10.0 ** (snr_db / 20.0))
        return (wave + gain * noise).astype(np.float32), 1.0, 0.0

    return apply


def _resample(new_sample_rates=(8000, 32000, 44100)):
    rates = [int(r) for r in new_sample_rates]
    if not rates or min(rates) <= 0:
        raise ValueError("resample: new_sample_rates must be a non-empty list of positive rates")

    def apply(wave, rng):
        # a round trip through another rate: band-limits (8 kHz) or adds resampling artefacts
        rate = rates[int(rng.integers(len(rates)))]
        out = resample(resample(wave, SAMPLE_RATE, rate), rate, SAMPLE_RATE)
        return (
            out[: wave.size] if out.size > wave.size else np.pad(out, (0, wave.size - out.size)),
            1.0,
            0.0,
        )

    return apply


AUGMENTATIONS: dict[str, Callable[..., Callable]] = {
    "speed": _speed,
    "shift": _shift,
    "volume": _volume,
    "noise": _noise,
    "resample": _resample,
}


def parse_specs(items: Any, where: str = "augmentation config") -> list[AugmentSpec]:
    """Validate a decoded configuration list.

    Args:
        items: the list of ``{type, params, prob}`` objects.
        where: name used in error messages (the file).

    Raises:
        ValueError: naming the entry and what is wrong with it.
    """
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected a list of {{type, params, prob}} objects")
    specs = []
    for i, item in enumerate(items):
        w = f"{where}: entry {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{w}: expected an object")
        unknown = set(item) - {"type", "params", "prob"}
        if unknown:
            raise ValueError(f"{w}: unknown keys {sorted(unknown)}")
        kind = item.get("type")
        if kind not in AUGMENTATIONS:
            raise ValueError(f"{w}: unknown type {kind!r}; known: {sorted(AUGMENTATIONS)}")
        prob = item.get("prob", 1.0)
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
            raise ValueError(f"{w}: prob must be a number in [0, 1], got {prob!r}")
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError(f"{w}: params must be an object")
        specs.append(AugmentSpec(kind, dict(params), float(prob)))
    return specs


def load_augment_config(path: str | os.PathLike) -> list[AugmentSpec]:
    """Read an augmentation list from a JSON or YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"augmentation config not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    return parse_specs(data, str(path))


def _resolve_dir(folder: str, base_dir: str | os.PathLike) -> str:
    """A relative folder resolves against the config file, then the working directory."""
    folder = os.path.expanduser(folder)
    beside_config = os.path.join(base_dir, folder)
    if os.path.isabs(folder) or os.path.isdir(beside_config) or not os.path.isdir(folder):
        return beside_config
    return folder


class Augmenter:
    """Applies a list of augmentations to 16 kHz mono float32 waveforms.

    Args:
        specs: the parsed configuration; entries with ``prob == 0`` are dropped.
        base_dir: folder that a relative ``noise_dir`` resolves against.

    Raises:
        ValueError: for bad parameters (unknown names, empty noise folder, ...).
    """

    def __init__(self, specs: Sequence[AugmentSpec], base_dir: str | os.PathLike = "."):
        self.specs = [s for s in specs if s.prob > 0]
        self._steps = []
        for spec in self.specs:
            params = dict(spec.params)
            if spec.type == "noise" and "noise_dir" in params:
                params["noise_dir"] = _resolve_dir(params["noise_dir"], base_dir)
            try:
                self._steps.append((spec, AUGMENTATIONS[spec.type](**params)))
            except TypeError as exc:
                raise ValueError(
                    f"augmentation {spec.type!r}: bad params {spec.params}: {exc}"
                ) from exc

    def __bool__(self) -> bool:
        return bool(self._steps)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> Augmented:
        """Augment one waveform (the input is not modified)."""
        scale, offset = 1.0, 0.0
        for spec, step in self._steps:
            if rng.random() >= spec.prob:
                continue
            wave, s, o = step(wave, rng)
            scale, offset = scale * s, offset * s + o
        return Augmented(np.asarray(wave, dtype=np.float32), scale, offset)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Augmenter:
        """Build from a JSON/YAML file; relative noise folders resolve against it."""
        return cls(load_augment_config(path), base_dir=Path(path).parent)
