"""HSK sentences for the corpus: pinyin for espeak-ng, a stable split, selection."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whisper_finetune.data.synth.config import SynthConfig

# fixed salt of the train/test split hash: changing it would reshuffle the split
_SPLIT_SALT = "whisper-finetune/synth-mandarin/split"

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


@dataclass(frozen=True)
class HskSentence:
    """One sentence of the HSK data, as used here."""

    id: str
    level: int
    text: str  # simplified Chinese, punctuation kept
    pinyin: str  # numbered pinyin with clause breaks, ready for espeak-ng


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
    """Choose ``num_train``, ``num_dev`` and ``num_test`` sentences, HSK levels in equal shares.

    Each split draws only from its own hash-defined pool; the dev sentences are the
    training pool's next ``num_dev`` after the training ones (the training choice does not
    depend on ``num_dev``). Within a level, sentences are ordered by a seeded hash (a
    seeded shuffle that adding sentences does not upset), and levels are taken
    round-robin; a level that runs out leaves its turn to the others.

    Raises:
        ValueError: if a split's pool is too small for the requested count.
    """
    pools: dict[str, dict[int, list[HskSentence]]] = {"train": {}, "test": {}}
    for s in sentences:
        if s.level in cfg.levels and cfg.min_chars <= count_chars(s.text) <= cfg.max_chars:
            pools[split_of(s.text, cfg.test_fraction)].setdefault(s.level, []).append(s)
    wanted = {"train": cfg.num_train + cfg.num_dev, "test": cfg.num_test}
    asked = {"train": "num_train + num_dev", "test": "num_test"}
    chosen: dict[str, list[HskSentence]] = {}
    for split, by_level in pools.items():
        available = sum(len(v) for v in by_level.values())
        if wanted[split] > available:
            raise ValueError(
                f"{asked[split]}={wanted[split]} but only {available} HSK sentences fit "
                f"the {split} split (levels {list(cfg.levels)}, {cfg.min_chars}-{cfg.max_chars} "
                f"characters, test_fraction={cfg.test_fraction}); ask for fewer"
            )
        queues = [
            sorted(by_level[lv], key=lambda s: stable_hash(f"{cfg.seed}\0{s.text}"), reverse=True)
            for lv in sorted(by_level)
        ]
        picked: list[HskSentence] = []
        while len(picked) < wanted[split]:
            for queue in queues:
                if queue and len(picked) < wanted[split]:
                    picked.append(queue.pop())
        chosen[split] = picked
    chosen["train"], chosen["dev"] = (
        chosen["train"][: cfg.num_train],
        chosen["train"][cfg.num_train :],
    )
    return chosen


def stable_hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, stable_hash(key)])
