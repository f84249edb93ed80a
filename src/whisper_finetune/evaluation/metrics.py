"""Character and word error rates, computed at corpus level with jiwer.

A corpus score is ``sum(errors) / sum(reference units)`` over all utterances, where
errors are substitutions + deletions + insertions. This is not the mean of the
per-utterance rates: a long utterance weighs more than a short one, as in Kaldi,
ESPnet and the Whisper paper.

Inputs are assumed to be normalized already (see
:func:`whisper_finetune.text.normalize_text`); this module only tokenizes:

* ``"cer"`` counts characters with all whitespace removed, so ``"你 好"`` and
  ``"你好"`` are the same two characters;
* ``"wer"`` counts whitespace-separated words.

Empty references are handled here, not by jiwer (jiwer 3 raises on them): an utterance
with no reference units contributes its hypothesis units as insertions and nothing to
the denominator. This module imports nothing heavy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

logger = logging.getLogger(__name__)

METRICS = ("cer", "wer")


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _units(text: str, metric: str) -> list[str]:
    """Split text into the units the metric counts: characters or words."""
    if metric == "cer":
        return list("".join(text.split()))
    return text.split()


def _as_list(texts: str | Sequence[str], what: str) -> list[str]:
    # A bare string is one utterance; iterating it would silently make one per character.
    items = [texts] if isinstance(texts, str) else list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(t).__name__}")
    return items


def error_counts(reference: str, hypothesis: str, metric: str = "cer") -> tuple[int, int]:
    """Edit errors of one utterance and the size of its reference.

    Args:
        reference: the normalized reference transcript.
        hypothesis: the normalized hypothesis transcript.
        metric: ``"cer"`` (characters, whitespace ignored) or ``"wer"`` (words).

    Returns:
        ``(errors, ref_units)``: substitutions + deletions + insertions, and the number
        of reference characters or words. An empty reference gives
        ``(len(hypothesis units), 0)``.

    Raises:
        ValueError: if ``metric`` is not one of :data:`METRICS`.
    """
    return corpus_error_counts([reference], [hypothesis], metric)


def corpus_error_counts(
    references: str | Sequence[str], hypotheses: str | Sequence[str], metric: str = "cer"
) -> tuple[int, int]:
    """Total edit errors and total reference units over a corpus.

    Args:
        references: normalized reference transcripts, one per utterance.
        hypotheses: normalized hypothesis transcripts, aligned with ``references``.
        metric: ``"cer"`` or ``"wer"``.

    Returns:
        ``(errors, ref_units)`` summed over all utterances.

    Raises:
        ValueError: if the lists differ in length or ``metric`` is unknown.
        TypeError: if an item is not a string.
    """
    _check_metric(metric)
    refs = _as_list(references, "references")
    hyps = _as_list(hypotheses, "hypotheses")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")

    errors = 0
    ref_units = 0
    scored_refs: list[str] = []
    scored_hyps: list[str] = []
    for ref, hyp in zip(refs, hyps, strict=True):
        ref_tokens = _units(ref, metric)
        hyp_tokens = _units(hyp, metric)
        if not ref_tokens:
            errors += len(hyp_tokens)  # all insertions
        elif not hyp_tokens:
            errors += len(ref_tokens)  # all deletions
            ref_units += len(ref_tokens)
        else:
            # Rejoin the units so that jiwer's own tokenization sees exactly ours.
            sep = "" if metric == "cer" else " "
            scored_refs.append(sep.join(ref_tokens))
            scored_hyps.append(sep.join(hyp_tokens))
    if scored_refs:
        import jiwer

        process = jiwer.process_characters if metric == "cer" else jiwer.process_words
        out = process(scored_refs, scored_hyps)
        errors += out.substitutions + out.deletions + out.insertions
        ref_units += out.hits + out.substitutions + out.deletions
    return int(errors), int(ref_units)


def score(
    references: str | Sequence[str], hypotheses: str | Sequence[str], metric: str = "cer"
) -> float:
    """Corpus-level error rate: total errors divided by total reference units.

    Args:
        references: normalized reference transcripts, one per utterance (a bare string
            counts as one utterance).
        hypotheses: normalized hypothesis transcripts, aligned with ``references``.
        metric: ``"cer"`` or ``"wer"``.

    Returns:
        The error rate (0.0 is perfect; it can exceed 1.0 with many insertions). When
        the references hold no units at all (including an empty corpus), the rate is
        undefined: 0.0 is returned if the hypotheses are empty too, and ``math.inf``
        otherwise.

    Raises:
        ValueError: if the lists differ in length or ``metric`` is unknown.
    """
    errors, ref_units = corpus_error_counts(references, hypotheses, metric)
    if ref_units == 0:
        if errors:
            logger.warning("%s: references are empty but hypotheses are not", metric)
            return math.inf
        return 0.0
    return errors / ref_units


def cer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Corpus-level character error rate (whitespace ignored); see :func:`score`."""
    return score(references, hypotheses, "cer")


def wer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Corpus-level word error rate; see :func:`score`."""
    return score(references, hypotheses, "wer")


REPETITION_THRESHOLD = 2.4  # Whisper's compression_ratio_threshold


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length, as Whisper's decoder computes it.

    Ordinary text stays well below 2; a hypothesis that repeats a phrase compresses far
    better (``"你不想要我" * 20`` gives about 11).
    """
    import zlib

    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_repetition(text: str, threshold: float = REPETITION_THRESHOLD) -> bool:
    """True when ``text`` repeats itself (a decoding loop): compression ratio over ``threshold``."""
    return compression_ratio(text) > threshold


class PairedBootstrap(NamedTuple):
    """What :func:`paired_bootstrap` found (rates as fractions; ``difference`` = other - base)."""

    difference: float  # on the whole set
    low: float  # the interval's lower end
    high: float  # the interval's upper end
    share_worse: float  # share of resamples in which the other model is worse
    confidence: float = 0.95

    def describe(self) -> str:
        return (
            f"{self.difference:+.4f} ({self.confidence:.0%} interval {self.low:+.4f} to "
            f"{self.high:+.4f})"
        )


def paired_bootstrap(
    base: Sequence[tuple[int, int]],
    other: Sequence[tuple[int, int]],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """How sure a corpus error rate's change is: a paired bootstrap over utterances.

    ``base`` and ``other`` hold each utterance's ``(errors, ref_units)`` under two
    models, in the same order (the same clips). The utterances are resampled with
    replacement ``resamples`` times, the same draw for both models, and the change of the
    corpus rate (``other`` minus ``base``, each ``sum(errors) / sum(ref_units)``) is
    computed on every draw; the interval holds its central ``confidence`` share.

    Returns:
        :class:`PairedBootstrap`: the change on the whole set, the interval's ends, and
        the share of draws in which ``other`` is worse (a one-sided p-value's complement).

    Raises:
        ValueError: on sets of different lengths, an empty set, or a set with no
            reference units at all.
    """
    import random

    if len(base) != len(other):
        raise ValueError(f"paired sets differ in length: {len(base)} and {len(other)} utterances")
    if not base:
        raise ValueError("paired_bootstrap needs at least one utterance")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    for i, (a, b) in enumerate(zip(base, other, strict=True)):
        if a[1] != b[1]:
            raise ValueError(
                f"utterance {i}: {a[1]} reference units under one model, {b[1]} under the "
                "other: not the same utterance, or not normalized alike"
            )
    units = [u for _, u in base]
    if sum(units) == 0:
        raise ValueError("the utterances hold no reference units")
    errs_a = [e for e, _ in base]
    errs_b = [e for e, _ in other]
    whole = (sum(errs_b) - sum(errs_a)) / sum(units)
    rng = random.Random(seed)
    n = len(units)
    diffs = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        total = sum(units[i] for i in idx)
        if total == 0:
            continue  # a draw of empty references only: no rate
        diffs.append(sum(errs_b[i] - errs_a[i] for i in idx) / total)
    diffs.sort()
    tail = (1 - confidence) / 2
    low = diffs[min(len(diffs) - 1, int(tail * len(diffs)))]
    high = diffs[min(len(diffs) - 1, max(0, math.ceil((1 - tail) * len(diffs)) - 1))]
    worse = sum(d > 0 for d in diffs) / len(diffs)
    return PairedBootstrap(whole, low, high, worse, confidence)
