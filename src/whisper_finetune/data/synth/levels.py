"""Noise and levels: coloured noise, active speech power, mixing at an SNR, peak gain."""

from __future__ import annotations

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE

NOISE_COLORS = ("white", "pink", "brown")


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of unit RMS with a white, pink (1/f) or brown (1/f²) spectrum."""
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}.get(color)
    if exponent is None:
        raise ValueError(f"unknown noise color {color!r}; expected one of {NOISE_COLORS}")
    noise = rng.standard_normal(n)
    if exponent:
        spectrum = np.fft.rfft(noise)
        freqs = np.arange(len(spectrum), dtype=np.float64)
        freqs[0] = 1.0  # no DC boost
        noise = np.fft.irfft(spectrum / freqs**exponent, n)
        noise -= noise.mean()
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise / rms if rms > 0 else noise).astype(np.float32)


def active_power(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Mean power over the 20 ms frames within 40 dB of the loudest (the speech)."""
    frame = max(1, sample_rate // 50)
    n = len(samples) // frame * frame
    if n == 0:
        return float(np.mean(samples.astype(np.float64) ** 2)) if len(samples) else 0.0
    energy = np.mean(samples[:n].astype(np.float64).reshape(-1, frame) ** 2, axis=1)
    return float(energy[energy >= energy.max() * 1e-4].mean())


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + noise``, the noise scaled to ``snr_db`` below the active speech power."""
    scale = np.sqrt(active_power(speech) / 10 ** (snr_db / 10) / np.mean(noise**2))
    return (speech + noise * scale).astype(np.float32)


def set_peak(samples: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale ``samples`` so their peak is at ``peak_dbfs`` (the gain step)."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak == 0.0:
        return samples
    return (samples * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)
