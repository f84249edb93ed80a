"""The voice: espeak-ng's ``cmn-latn-pinyin`` speaking numbered pinyin, as 16 kHz samples."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install it with `apt-get install espeak-ng` (Debian/Ubuntu; "
    "`brew install espeak-ng` on macOS), or pass --espeak=/path/to/espeak-ng"
)


def check_espeak(
    espeak: str = "espeak-ng", voice: str = "cmn-latn-pinyin", variants: Sequence[str] = ()
) -> str:
    """Make sure espeak-ng runs and has ``voice`` and ``variants``; return its version.

    Args:
        espeak: the executable, a name on PATH or a path.
        voice: the voice that must exist.
        variants: voice variants that must exist (``"default"`` always does);
            espeak-ng silently ignores an unknown one, so it is checked here.

    Raises:
        RuntimeError: saying how to install espeak-ng, or what is missing.
    """
    exe = shutil.which(espeak)
    if exe is None:
        raise RuntimeError(f"espeak-ng not found ({espeak!r} is not on PATH); {_INSTALL_HINT}")
    try:
        version = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        voices = subprocess.run(
            [exe, "--voices"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"espeak-ng ({exe}) does not run: {exc}; {_INSTALL_HINT}") from exc
    names = {line.split()[1].lower() for line in voices.splitlines()[1:] if len(line.split()) > 1}
    if voice.lower() not in names:
        raise RuntimeError(
            f"espeak-ng ({exe}) has no voice {voice!r}; the Mandarin pinyin voice ships "
            "with espeak-ng 1.50 or later (Debian 11+, Ubuntu 22.04+): "
            f"{_INSTALL_HINT}. Voices found for Chinese: "
            f"{sorted(n for n in names if n.startswith(('cmn', 'zh', 'yue')))}"
        )
    data = re.search(r"Data at:\s*(.+)$", version.strip())
    variant_dir = Path(data.group(1).strip()) / "voices" / "!v" if data else None
    if variant_dir is not None and variant_dir.is_dir():
        known = {p.name for p in variant_dir.iterdir()}
        unknown = [v for v in variants if v not in ("", "default") and v not in known]
        if unknown:
            raise RuntimeError(
                f"espeak-ng has no voice variant(s) {unknown}; choose from 'default' and "
                f"{sorted(known)}"
            )
    else:
        logger.debug("cannot find espeak-ng's voice variants; not checking %s", variants)
    match = re.search(r"text-to-speech:\s*(\S+)", version)
    return match.group(1) if match else version.strip()


def espeak_synthesize(
    text: str,
    *,
    voice: str = "cmn-latn-pinyin",
    variant: str = "default",
    speed_wpm: int = 140,
    pitch: int = 50,
    espeak: str = "espeak-ng",
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; return float32 samples in [-1, 1] and their rate.

    Args:
        text: what to say; for the pinyin voice, numbered pinyin (``"ni3 hao3"``).
        voice: espeak-ng voice name.
        variant: a variant from espeak-ng's ``voices/!v`` (``"m3"``, ``"f2"``), or
            ``"default"``.
        speed_wpm: speaking rate, words (here: syllables) per minute.
        pitch: base pitch, 0-99.
        espeak: the executable.

    Raises:
        RuntimeError: if espeak-ng fails or returns no audio.
    """
    name = voice if variant in ("", "default") else f"{voice}+{variant}"
    cmd = [espeak, "-v", name, "-s", str(int(speed_wpm)), "-p", str(int(pitch)), "--stdout"]
    try:
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=120)
    except FileNotFoundError as exc:
        raise RuntimeError(f"espeak-ng not found ({espeak!r}); {_INSTALL_HINT}") from exc
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        raise RuntimeError(
            f"espeak-ng failed on {text!r} ({' '.join(cmd)}): exit {proc.returncode}, "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return decode_wav_stream(proc.stdout)


def decode_wav_stream(data: bytes) -> tuple[np.ndarray, int]:
    """Decode espeak-ng's ``--stdout`` wav, whose header lengths are placeholders."""
    with wave.open(io.BytesIO(data)) as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
    if width != 2 or channels != 1:
        raise RuntimeError(f"unexpected espeak-ng output: {width * 8}-bit, {channels} channels")
    # the data chunk runs to the end of the stream, whatever its header says
    start = data.find(b"data") + 8
    payload = data[start : start + (len(data) - start) // 2 * 2]
    samples = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    return samples, rate
