"""What the built-in corpus is made of: its options and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAX_SECONDS = 30.0  # Whisper's input window; longer clips would be silently truncated


def _range_help(what: str) -> dict[str, str]:
    return {"help": f"{what}: two numbers, MIN MAX; each clip draws uniformly in between"}


@dataclass(frozen=True)
class SynthConfig:
    """Options of the synthetic Mandarin corpus (``prepare synth-mandarin``).

    Ranges are ``(min, max)`` pairs; each utterance draws uniformly from them.
    """

    target_dir: str = field(
        default="data/synth-mandarin",
        metadata={
            "help": "folder for train/, dev/ and test/ wavs and train.jsonl, dev.jsonl, test.jsonl"
        },
    )
    num_train: int = field(
        default=320, metadata={"help": "number of spoken training utterances (sentences)"}
    )
    num_test: int = field(
        default=80, metadata={"help": "number of spoken test utterances (sentences)"}
    )
    num_dev: int = field(
        default=0,
        metadata={
            "help": "spoken development utterances for choosing checkpoints and merges, drawn "
            "from the training pool after the training sentences (so num_train's choice is "
            "unchanged; no dev.jsonl when 0)"
        },
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
        if min(self.num_train, self.num_test, self.num_dev) < 0:
            raise ValueError("num_train, num_dev and num_test must not be negative")
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
    dev_manifest: Path | None = None  # with num_dev > 0
    num_dev: int = 0  # spoken development utterances
