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


def test_paired_bootstrap_sees_a_consistent_loss_and_no_change():
    from whisper_finetune.evaluation.metrics import paired_bootstrap

    base = [(i % 3, 30) for i in range(48)]
    # one more error on every second clip: +24 errors over 1,440 characters
    worse = [(e + (i % 2), u) for i, (e, u) in enumerate(base)]
    b = paired_bootstrap(base, worse, resamples=500, seed=1)
    assert b.difference == pytest.approx(24 / 1440)
    assert 0 < b.low <= b.difference <= b.high
    assert b.share_worse == 1.0
    same = paired_bootstrap(base, base, resamples=200)
    assert (same.difference, same.low, same.high, same.share_worse) == (0.0, 0.0, 0.0, 0.0)


def test_paired_bootstrap_interval_straddles_zero_for_one_character():
    from whisper_finetune.evaluation.metrics import paired_bootstrap

    base = [(2, 30)] * 48
    one_more = [(3, 30)] + [(2, 30)] * 47  # one character on one clip
    b = paired_bootstrap(base, one_more, resamples=1000)
    assert b.difference == pytest.approx(1 / 1440)
    assert b.low == 0.0 < b.high  # nothing on most draws: a change this size is noise
    assert 0.5 < b.share_worse < 0.75  # the clip is drawn in ~64% of resamples
    assert "interval" in b.describe()


def test_paired_bootstrap_refuses_unpaired_sets():
    from whisper_finetune.evaluation.metrics import paired_bootstrap

    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([(1, 10)], [(1, 10), (0, 5)])
    with pytest.raises(ValueError, match="utterance 1: 5 reference units"):
        paired_bootstrap([(1, 10), (0, 5)], [(1, 10), (0, 6)])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="no reference units"):
        paired_bootstrap([(0, 0)], [(1, 0)])
