"""Corpus-level CER and WER, per-utterance error counts, and empty references."""

from __future__ import annotations

import math

import pytest

from whisper_finetune.evaluation.metrics import (
    METRICS,
    cer,
    corpus_error_counts,
    error_counts,
    score,
    wer,
)


def test_every_listed_metric_scores_and_no_other_does():
    """METRICS is what ``score`` accepts: each one scores, anything else is refused."""
    assert set(METRICS) == {"cer", "wer"}
    for metric in METRICS:
        assert score(["a b c"], ["a b d"], metric) > 0
        assert score(["a b c"], ["a b c"], metric) == 0
    with pytest.raises(ValueError, match="metric"):
        score(["a"], ["a"], "ter")


def test_repetition_loops_are_flagged_by_compression_ratio():
    from whisper_finetune.evaluation.metrics import compression_ratio, is_repetition

    loop = "你不想要我" * 20
    assert compression_ratio(loop) > 2.4 and is_repetition(loop)
    for ordinary in (
        "近几年不但我用书给女儿压岁也劝说亲朋友不要给女儿压岁钱而改送压岁书",
        "",
        "hello",
    ):
        assert not is_repetition(ordinary), ordinary


@pytest.mark.parametrize(
    "reference, hypothesis, metric, expected",
    [
        ("abc", "abd", "cer", (1, 3)),  # one substitution
        ("abc", "abc", "cer", (0, 3)),
        ("abc", "ab", "cer", (1, 3)),  # one deletion
        ("abc", "abcd", "cer", (1, 3)),  # one insertion
        ("今天天气很好", "今天天汽很好啊", "cer", (2, 6)),
        ("你 好", "你好", "cer", (0, 2)),  # spaces are not characters
        ("a b c", "a x c d", "wer", (2, 3)),
        ("the cat sat", "the cat sat", "wer", (0, 3)),
        ("the cat sat", "", "wer", (3, 3)),  # all deletions
        ("abc", "", "cer", (3, 3)),
        ("", "", "cer", (0, 0)),  # empty reference: hypothesis units are insertions
        ("", "ab c", "cer", (3, 0)),
        ("", "ab c", "wer", (2, 0)),
        ("   ", "x", "wer", (1, 0)),
    ],
)
def test_error_counts(reference, hypothesis, metric, expected):
    assert error_counts(reference, hypothesis, metric) == expected


def test_known_values():
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    assert cer("abc", "abd") == pytest.approx(1 / 3)  # a bare string is one utterance
    assert wer(["a b c d"], ["a x c"]) == pytest.approx(2 / 4)
    assert wer(["hello world"], ["hello world"]) == 0.0
    assert score(["abc"], ["abd"], metric="cer") == cer(["abc"], ["abd"])
    assert score(["a b"], ["a c"], metric="wer") == pytest.approx(0.5)


def test_corpus_level_is_not_the_mean_of_utterances():
    refs = ["a", "abcdefghij"]
    hyps = ["b", "abcdefghij"]
    # one error in 11 characters, not the mean of 1/1 and 0/10
    assert cer(refs, hyps) == pytest.approx(1 / 11)
    mean = sum(cer([r], [h]) for r, h in zip(refs, hyps, strict=True)) / len(refs)
    assert mean == pytest.approx(0.5)


def test_corpus_sums_errors_and_units():
    refs = ["今天 天气", "", "很好"]
    hyps = ["今天天汽", "多余", ""]
    assert corpus_error_counts(refs, hyps, "cer") == (1 + 2 + 2, 4 + 0 + 2)
    assert cer(refs, hyps) == pytest.approx(5 / 6)


def test_can_exceed_one_with_insertions():
    assert cer(["a"], ["bcd"]) == pytest.approx(3.0)


def test_empty_references_only():
    assert cer([""], [""]) == 0.0
    assert cer([], []) == 0.0
    assert math.isinf(cer([""], ["abc"]))
    assert math.isinf(wer(["", " "], ["x", ""]))


def test_mismatched_lengths_and_bad_metric():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        cer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown metric"):
        score(["a"], ["a"], metric="bleu")
    with pytest.raises(ValueError, match="unknown metric"):
        error_counts("a", "a", "mer")
    with pytest.raises(TypeError):
        cer(["a", None], ["a", "b"])  # type: ignore[list-item]
