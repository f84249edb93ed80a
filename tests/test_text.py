"""The one text normalizer: punctuation, script, case and spacing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from whisper_finetune.text import normalize_text

DEFAULT_CASES = [
    # full-width / CJK punctuation
    ("你好，世界！", "你好世界"),
    ("今天天气怎么样？很好。", "今天天气怎么样很好"),
    ("「你好」他说", "你好他说"),
    ("『引号』《书名》【括号】（圆括号）", "引号书名括号圆括号"),
    ("一、二；三：四……五——六", "一二三四五六"),
    ("“双引号”‘单引号’", "双引号单引号"),
    # traditional to simplified
    ("近幾年，不但", "近几年不但"),
    ("這個軟體很簡單", "这个软体很简单"),
    # Latin: lowercased, punctuation gone, words kept apart
    ("Hello, World!", "hello world"),
    ("Hello,World", "hello world"),
    ("don't STOP", "dont stop"),
    ("e-mail: a@b.com", "e mail a b com"),
    # full-width letters and digits become ASCII
    ("ＡＢＣ１２３", "abc123"),
    # whitespace: collapsed, removed next to CJK
    ("  hello \t\n  world  ", "hello world"),
    ("你 好", "你好"),
    ("  你  好 世 界 ", "你好世界"),
    ("你好\u3000世界", "你好世界"),
    ("我用 Python 写代码", "我用python写代码"),
    ("hello 世界 again", "hello世界again"),
    # symbols and invisible characters
    ("50%的人", "50的人"),
    ("价格 $100 + 税", "价格100税"),
    ("a\u200bb\ufeff", "ab"),
    ("你好😀", "你好"),
    # nothing left
    ("", ""),
    ("，。！？", ""),
    ("   ", ""),
]


@pytest.mark.parametrize("text, expected", DEFAULT_CASES)
def test_normalize_defaults(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    "text, remove_punctuation, to_simplified, expected",
    [
        ("你好，世界！", False, True, "你好，世界！"),
        ("近幾年，不但", False, True, "近几年，不但"),
        ("近幾年，不但", True, False, "近幾年不但"),
        ("近幾年，不但", False, False, "近幾年，不但"),
        ("「你好」", False, True, "「你好」"),
        ("Hello, World!", False, True, "hello, world!"),
        ("你好 ， 世界", False, True, "你好，世界"),
        ("ＡＢＣ，１２３", False, False, "abc，123"),
    ],
)
def test_switches(text, remove_punctuation, to_simplified, expected):
    out = normalize_text(text, remove_punctuation=remove_punctuation, to_simplified=to_simplified)
    assert out == expected


@pytest.mark.parametrize(
    "text", [t for t, _ in DEFAULT_CASES] + ["Mixed 中文 and English，還有標點！"]
)
def test_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_spaces_do_not_change_cjk_comparisons():
    assert normalize_text("你 好 世 界") == normalize_text("你好世界")
    assert normalize_text("你好 world") == normalize_text("你好world")


def test_rejects_non_strings():
    with pytest.raises(TypeError):
        normalize_text(None)  # type: ignore[arg-type]


def test_imports_without_torch():
    code = (
        "import sys, whisper_finetune.text as t, whisper_finetune.evaluation.metrics as m; "
        "t.normalize_text('近幾年'); m.cer(['abc'], ['abd']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
