"""WenetSpeech: pack labelled segments of long recordings into <=30 s timestamped samples.

The metadata (``WenetSpeech.json``) lists long recordings and their segments::

    {"audios": [{"aid": "Y0000000000_--5llN02F84", "path": "audio/train/.../x.opus",
                 "duration": 2494.57, "segments": [{"sid": "..._S00000",
                 "begin_time": 20.08, "end_time": 24.4, "text": "...",
                 "confidence": 1.0, "subsets": ["{L}", "{M}"]}]}]}

Consecutive segments of one recording are packed into samples of at most
``max_duration`` seconds, with per-sentence timestamps relative to the sample start
(``sentences``) and ``audio.start_time/end_time`` pointing into the long file, so no
audio is copied for them.

Unlabelled gaps. Inside a sample, a stretch between two kept segments has speech but no
label when a dropped segment (confidence below ``min_confidence``, or not in the chosen
subset) lies in it, and may have when it is longer than ``min_gap`` seconds. Trained on
such a sample, Whisper learns to skip speech. With ``gap_policy="silence"`` (default,
like the original ``set_silence()``), such a sample is cut out of the long file, the gaps
are zeroed, and it is written as a new 16 kHz wav under ``target_dir/silenced/`` (the
record then has no start/end times). With ``gap_policy="split"`` a new sample starts at
every such gap instead, and no audio is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from whisper_finetune.data.manifest import Record, TimedText, write_manifest

logger = logging.getLogger(__name__)

# subset name -> output manifest; L, M and S are nested training subsets
SUBSET_SPLITS = {
    "L": "train",
    "M": "train",
    "S": "train",
    "DEV": "dev",
    "TEST_NET": "test_net",
    "TEST_MEETING": "test_meeting",
}
_TRAIN_SUBSETS = ("L", "M", "S")


class _Segment(NamedTuple):
    begin: float
    end: float
    text: str


@dataclass(frozen=True)
class WenetSpeechConfig:
    """Options of the WenetSpeech recipe."""

    metadata: str = field(
        default="", metadata={"help": "WenetSpeech.json", "aliases": ["wenetspeech_json"]}
    )
    audio_dir: str | None = field(
        default=None,
        metadata={"help": "folder the metadata's audio paths are relative to (None: its folder)"},
    )
    target_dir: str = field(
        default="dataset",
        metadata={
            "help": "folder for the manifests and the silenced sample wavs",
            "aliases": ["annotation_dir"],
        },
    )
    subset: tuple[str, ...] = field(
        default=("L", "DEV", "TEST_NET", "TEST_MEETING"),
        metadata={
            "help": "subsets to write: one of L/M/S (train.jsonl) and any of "
            "DEV, TEST_NET, TEST_MEETING",
            "choices": list(SUBSET_SPLITS),
        },
    )
    min_confidence: float = field(
        default=0.95, metadata={"help": "drop segments whose label confidence is lower"}
    )
    max_duration: float = field(default=30.0, metadata={"help": "longest sample, in seconds"})
    gap_policy: str = field(
        default="silence",
        metadata={
            "help": "unlabelled gaps: silence (zero them in a new wav) or split "
            "(start a new sample)",
            "choices": ["silence", "split"],
        },
    )
    min_gap: float = field(
        default=1.0,
        metadata={
            "help": "a gap between segments longer than this (seconds) counts as "
            "unlabelled even without a dropped segment in it"
        },
    )
    overwrite: bool = field(
        default=False, metadata={"help": "rewrite silenced sample wavs that already exist"}
    )
    language: str = field(default="zh", metadata={"help": "language code of every record"})


@dataclass(frozen=True)
class WenetSpeechResult:
    """What :func:`prepare_wenetspeech` produced.

    Attributes:
        manifests: output split (train, dev, test_net, test_meeting) to manifest path.
        samples: output split to number of packed samples.
        segments: output split to number of segments kept in those samples.
        low_confidence: segments dropped for a confidence below the threshold.
        too_long: single segments longer than ``max_duration`` (left out).
        silenced: samples written as new wavs with their unlabelled gaps zeroed.
        missing_audio: recordings whose audio file was not found (left out).
    """

    manifests: dict[str, str]
    samples: dict[str, int]
    segments: dict[str, int]
    low_confidence: int = 0
    too_long: int = 0
    silenced: int = 0
    missing_audio: int = 0


@dataclass
class _Sample:
    segments: list[_Segment]
    gaps: list[tuple[float, float]]  # absolute times of unlabelled gaps to zero

    @property
    def start(self) -> float:
        return self.segments[0].begin

    @property
    def end(self) -> float:
        return self.segments[-1].end


def _subset_names(raw: Any) -> set[str]:
    # the official metadata writes "{L}"; accept "L" too
    return {str(s).strip("{} ").upper() for s in raw or ()}


def _iter_audios(path: Path) -> Iterator[dict]:
    """Yield the metadata's recordings, streaming with ijson when it is installed."""
    try:
        import ijson
    except ImportError:
        ijson = None
    if ijson is not None:
        with open(path, "rb") as f:
            yield from ijson.items(f, "audios.item")
        return
    if path.stat().st_size > 1 << 30:
        logger.warning("Loading %s whole; `pip install ijson` streams it in less memory", path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("audios"), list):
        raise ValueError(f"{path}: expected a JSON object with an 'audios' list")
    yield from data["audios"]


def _is_unlabelled(a: float, b: float, dropped: list[_Segment], min_gap: float) -> bool:
    if b - a > min_gap:
        return True
    return any(d.begin < b and d.end > a for d in dropped)


def pack_segments(
    kept: list[_Segment], dropped: list[_Segment], config: WenetSpeechConfig
) -> tuple[list[_Sample], int]:
    """Pack a recording's kept segments (sorted) into samples of <= ``max_duration``.

    Args:
        kept: the labelled segments to train on, sorted by begin time.
        dropped: the recording's other segments (speech without a usable label).
        config: gives ``max_duration``, ``min_gap`` and ``gap_policy``.

    Returns:
        the samples and the number of segments left out for being too long alone.
    """
    samples: list[_Sample] = []
    current: _Sample | None = None
    too_long = 0
    for seg in kept:
        if seg.end - seg.begin > config.max_duration:
            too_long += 1
            current = None
            continue
        if current is not None:
            a, b = current.end, seg.begin
            gap = b > a and _is_unlabelled(a, b, dropped, config.min_gap)
            if seg.end - current.start > config.max_duration or (
                gap and config.gap_policy == "split"
            ):
                current = None
            elif gap:
                current.gaps.append((a, b))
        if current is None:
            current = _Sample([], [])
            samples.append(current)
        current.segments.append(seg)
    return samples, too_long


class _LongAudio:
    """A recording decoded at most once, however many samples are cut out of it.

    Decoding the whole file once beats a seek per sample: compressed formats (opus) are
    decoded from the start for every slice.
    """

    def __init__(self, path: Path):
        self.path = path
        self._samples = None

    def cut(self, start: float, end: float):
        from whisper_finetune.data.audio import SAMPLE_RATE, load_audio

        if self._samples is None:
            self._samples = load_audio(self.path)
        return self._samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)].copy()


def _silenced_wav(
    source: _LongAudio, sample: _Sample, out_dir: Path, aid: str, overwrite: bool
) -> Path:
    """Cut the sample out of the recording, zero its gaps, write it as a wav."""
    from whisper_finetune.data.audio import SAMPLE_RATE, write_wav

    name = f"{aid}_{round(sample.start * 1000):09d}-{round(sample.end * 1000):09d}.wav"
    path = out_dir / name
    if path.is_file() and not overwrite:
        return path
    samples = source.cut(sample.start, sample.end)
    for a, b in sample.gaps:
        lo = max(0, round((a - sample.start) * SAMPLE_RATE))
        hi = min(len(samples), round((b - sample.start) * SAMPLE_RATE))
        samples[lo:hi] = 0.0
    return write_wav(path, samples, SAMPLE_RATE)  # atomic: a re-run never sees half a file


def _record(sample: _Sample, audio_path: Path, silenced: bool, language: str) -> Record:
    start = sample.start
    sentences = tuple(
        TimedText(round(s.begin - start, 3), round(s.end - start, 3), s.text)
        for s in sample.segments
    )
    return Record(
        audio_path=str(audio_path),
        sentence="".join(s.text for s in sample.segments),
        duration=round(sample.end - start, 3),
        start_time=None if silenced else round(start, 3),
        end_time=None if silenced else round(sample.end, 3),
        sentences=sentences,
        language=language,
    )


def _check_subsets(subsets: tuple[str, ...]) -> dict[str, str]:
    wanted = {s.strip("{} ").upper() for s in subsets}
    unknown = wanted - set(SUBSET_SPLITS)
    if unknown:
        raise ValueError(
            f"unknown WenetSpeech subset(s) {sorted(unknown)}; choose from {list(SUBSET_SPLITS)}"
        )
    train = wanted & set(_TRAIN_SUBSETS)
    if len(train) > 1:
        raise ValueError(
            f"choose one training subset of L, M, S (they are nested), got {sorted(train)}"
        )
    return {s: SUBSET_SPLITS[s] for s in wanted}


def prepare_wenetspeech(config: WenetSpeechConfig) -> WenetSpeechResult:
    """Turn WenetSpeech metadata into train/dev/test manifests of <=30 s samples.

    Args:
        config: the recipe's options.

    Returns:
        the manifests written and the counts of what was kept, dropped and silenced.

    Raises:
        FileNotFoundError: the metadata file is missing.
        ValueError: bad options or metadata, or an audio file that does not decode.
    """
    if not config.metadata:
        raise ValueError("--metadata (the WenetSpeech.json file) is required")
    metadata = Path(config.metadata).expanduser()
    if not metadata.is_file():
        raise FileNotFoundError(f"WenetSpeech metadata not found: {metadata}")
    wanted = _check_subsets(config.subset)
    audio_dir = Path(config.audio_dir).expanduser() if config.audio_dir else metadata.parent
    target = Path(config.target_dir).expanduser()
    records: dict[str, list[Record]] = {split: [] for split in wanted.values()}
    counts = {
        "segments": dict.fromkeys(records, 0),
        "low": 0,
        "long": 0,
        "silenced": 0,
        "missing": 0,
    }
    for audio in tqdm(_iter_audios(metadata), desc="recordings", unit="rec"):
        _add_recording(audio, audio_dir, target, wanted, config, records, counts)
    manifests, samples = {}, {}
    for split, recs in records.items():
        path = target / f"{split}.jsonl"
        samples[split] = write_manifest(recs, path)
        manifests[split] = str(path)
        logger.info(
            "Wrote %d samples (%d segments) to %s", samples[split], counts["segments"][split], path
        )
    for key, what in (
        ("low", f"segments below confidence {config.min_confidence:g} dropped"),
        ("long", f"segments longer than {config.max_duration} s left out"),
        ("missing", "recordings without their audio file left out"),
    ):
        if counts[key]:
            logger.warning("%d %s", counts[key], what)
    return WenetSpeechResult(
        manifests,
        samples,
        counts["segments"],
        counts["low"],
        counts["long"],
        counts["silenced"],
        counts["missing"],
    )


def _add_recording(
    audio: dict,
    audio_dir: Path,
    target: Path,
    wanted: dict[str, str],
    config: WenetSpeechConfig,
    records: dict[str, list[Record]],
    counts: dict,
) -> None:
    aid = str(audio.get("aid", ""))
    source = (audio_dir / str(audio.get("path", ""))).absolute()
    parsed = []
    for seg in audio.get("segments") or ():
        s = _Segment(
            float(seg["begin_time"]), float(seg["end_time"]), str(seg.get("text", "")).strip()
        )
        confident = float(seg.get("confidence", 1.0)) >= config.min_confidence
        parsed.append((s, confident and bool(s.text), _subset_names(seg.get("subsets"))))
    parsed.sort(key=lambda p: p[0].begin)
    relevant = [p for p in parsed if p[2] & set(wanted)]
    if not relevant:
        return
    if not source.is_file():
        logger.warning("%s: audio %s not found; recording left out", aid, source)
        counts["missing"] += 1
        return
    counts["low"] += sum(1 for _, ok, _ in relevant if not ok)
    long_audio = _LongAudio(source)
    for split in sorted(set(wanted.values())):
        names = {s for s, sp in wanted.items() if sp == split}
        kept = [s for s, ok, subs in parsed if ok and subs & names]
        dropped = [s for s, ok, subs in parsed if not (ok and subs & names)]
        packed, too_long = pack_segments(kept, dropped, config)
        counts["long"] += too_long
        for sample in packed:
            silence = bool(sample.gaps)
            path = source
            if silence:
                path = _silenced_wav(
                    long_audio, sample, target / "silenced" / split, aid, config.overwrite
                )
                counts["silenced"] += 1
            records[split].append(_record(sample, path, silence, config.language))
            counts["segments"][split] += len(sample.segments)
