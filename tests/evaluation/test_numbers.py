"""Numeral normalisation (cn2an) in the text normalizer and in evaluation."""

from __future__ import annotations

import pytest

from whisper_finetune.evaluation.metrics import cer
from whisper_finetune.text import normalize_numerals, normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("四十", "四十"),  # Chinese numerals stay as written
        ("我有40块", "我有四十块"),
        ("１９９８年", "一九九八年"),  # full-width digits fold first; a year reads digit by digit
        ("1767年第一条全铁轨道", "一七六七年第一条全铁轨道"),
        ("40%的人", "百分之四十的人"),
        ("1,000元", "一千元"),  # thousands separator
        ("2.4公里", "二点四公里"),
        ("一样一些", "一样一些"),  # words holding a numeral character are left alone
        ("hello world", "hello world"),
    ],
)
def test_normalize_text_writes_arabic_numerals_as_chinese(text, expected):
    assert normalize_text(text, normalize_numbers=True) == expected


def test_numbers_are_off_unless_asked_and_type_checked():
    assert normalize_text("我有40块") == "我有40块"
    with pytest.raises(TypeError, match="expects a str"):
        normalize_numerals(40)


def test_forty_and_sishi_score_the_same_only_when_normalised():
    ref, hyp = "亚马逊河宽度可达6英里", "亚马逊河宽度可达六英里"
    assert cer(normalize_text(ref), normalize_text(hyp)) > 0
    both = normalize_text(ref, normalize_numbers=True), normalize_text(hyp, normalize_numbers=True)
    assert cer(*both) == 0.0


def test_evaluate_normalises_numbers_for_chinese_by_default():
    from whisper_finetune.data.manifest import Record
    from whisper_finetune.evaluation.evaluate import EvalConfig, evaluate, numbers_normalized
    from whisper_finetune.inference.transcript import DecodeOptions

    assert numbers_normalized(EvalConfig(), "zh") is True
    assert numbers_normalized(EvalConfig(), "en") is False
    assert numbers_normalized(EvalConfig(normalize_numbers=False), "zh") is False

    class Fixed:  # a transcriber that always answers with Arabic numerals
        def transcribe_batch(self, clips, options):
            from types import SimpleNamespace

            return [SimpleNamespace(text="花了100块钱") for _ in clips]

    from whisper_finetune.assets import test_wav

    records = [Record(str(test_wav()), "花了一百块钱", language="zh")]
    config = dict(progress=False, decode=DecodeOptions(language="zh"))
    auto = evaluate(Fixed(), records, EvalConfig(**config))
    off = evaluate(Fixed(), records, EvalConfig(normalize_numbers=False, **config))
    assert auto.errors == 0
    assert auto.utterances[0].hypothesis_normalized == "花了一百块钱"
    assert off.errors > 0
