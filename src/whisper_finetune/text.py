"""Text normalization: the one normalizer used by training, evaluation and inference.

:func:`normalize_text` turns a transcript into the form that is compared when scoring
(and, with the switches off, the form that is trained on):

1. Compatibility forms of letters, digits and spaces become their plain forms
   (full-width ``Ａ１`` -> ``A1``, ideographic space -> space). Punctuation is left alone
   here, so that ``remove_punctuation=False`` keeps Chinese full-width punctuation.
2. Traditional Chinese becomes simplified (OpenCC ``t2s``).
3. Punctuation and symbols (Unicode categories ``P*`` and ``S*``) become spaces.
4. Text is lowercased; invisible format characters (zero-width space, BOM) are dropped.
5. Whitespace is collapsed to single spaces, and removed entirely where it touches a
   CJK character: Chinese is written without spaces, so ``"你 好" == "你好"`` and
   ``"用 Python 写" == "用Python写"``, while ``"hello  world"`` keeps one space.

With ``normalize_numbers`` (:func:`normalize_numerals`), Arabic numerals become Chinese
ones (cn2an ``an2cn``) before punctuation goes, so ``"40%"`` and ``百分之四十`` or
``"1767年"`` and ``一七六七年`` score the same. The direction is Arabic to Chinese because
it rewrites only digits: the other (``cn2an``) also rewrites words that merely contain a
numeral character (``一样`` -> ``1样``, ``十 一头`` -> ``10 1头``).

This module imports nothing heavy (no torch); OpenCC and cn2an are loaded on first use.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata

logger = logging.getLogger(__name__)

# Scripts written without spaces between words: Han (all extension blocks), kana,
# bopomofo, CJK punctuation and full-width forms. Hangul is left out on purpose: Korean
# separates words with spaces.
_CJK_CHARS = (
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3000-\u303f"  # CJK symbols and punctuation
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u312f"  # bopomofo
    "\u3190-\u31ff"  # kanbun, bopomofo extended, CJK strokes, katakana extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms (vertical punctuation)
    "\uff00-\uffef"  # half-width and full-width forms
    "\U00020000-\U0003134f"  # CJK extensions B to G, compatibility supplement
)
# Whitespace with a CJK character on either side.
_SPACE_NEXT_TO_CJK = re.compile(rf"\s+(?=[{_CJK_CHARS}])|(?<=[{_CJK_CHARS}])\s+")
_WHITESPACE = re.compile(r"\s+")
# Apostrophes inside words are dropped rather than spaced, so "don't" -> "dont".
_APOSTROPHES = frozenset("'\u2019\u02bc")


@functools.lru_cache(maxsize=1)
def _t2s_converter():
    """The OpenCC traditional-to-simplified converter, built once on first use."""
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified_chinese(text: str) -> str:
    """Traditional to simplified Chinese (OpenCC ``t2s``), leaving everything else alone."""
    return _t2s_converter().convert(text) if text else text


# a thousands separator between digit groups ("1,000"), dropped before conversion
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ASCII_DIGIT = re.compile(r"[0-9]")


def normalize_numerals(text: str) -> str:
    """Arabic numerals to Chinese ones with cn2an (``"40%"`` -> ``百分之四十``).

    cn2an reads a four-digit number before 年 as a year, digit by digit (``1998年`` ->
    ``一九九八年``), other numbers as quantities (``19500`` -> ``一万九千五百``), and
    converts decimals, percentages, fractions and signs (``2.4`` -> ``二点四``). Thousands
    separators (``1,000``) are dropped first. Text without an ASCII digit is returned
    unchanged; so is text cn2an cannot parse (logged at debug level), since a scorer must
    not fail on a hypothesis.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_numerals expects a str, got {type(text).__name__}")
    if not _ASCII_DIGIT.search(text):
        return text
    import warnings

    import cn2an

    text = _THOUSANDS_COMMA.sub("", text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cn2an warns on every span it leaves alone
        try:
            return cn2an.transform(text, "an2cn")
        except (ValueError, KeyError, IndexError) as exc:
            logger.debug("cn2an could not convert %r: %s", text, exc)
            return text


def _fold_compatibility_forms(text: str) -> str:
    """NFKC-fold letters, digits and spaces only, leaving punctuation as written."""
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return text
    return "".join(
        unicodedata.normalize("NFKC", ch) if unicodedata.category(ch)[0] in "LNZ" else ch
        for ch in text
    )


def _strip_punctuation(text: str) -> str:
    """Replace punctuation and symbols (Unicode ``P*`` and ``S*``) with spaces."""
    out = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        category = unicodedata.category(ch)
        out.append(" " if category[0] in "PS" else ch)
    return "".join(out)


def _drop_invisible(text: str) -> str:
    """Drop format characters (``Cf``: zero-width space, BOM) and non-space controls."""
    return "".join(
        ch for ch in text if not (unicodedata.category(ch) in ("Cf", "Cc") and not ch.isspace())
    )


def normalize_text(
    text: str,
    remove_punctuation: bool = True,
    to_simplified: bool = True,
    normalize_numbers: bool = False,
) -> str:
    """Normalize a transcript for training targets and for CER/WER scoring.

    The same function is applied to references and hypotheses, so scores do not depend
    on punctuation, script (traditional/simplified), letter case or spacing.

    Args:
        text: the transcript.
        remove_punctuation: replace punctuation and symbols, including full-width and
            CJK punctuation such as ``，。！？「」《》``, with spaces (then collapsed).
            Apostrophes are deleted instead, so ``"don't"`` becomes ``"dont"``.
        to_simplified: convert traditional Chinese to simplified with OpenCC ``t2s``.
        normalize_numbers: write Arabic numerals as Chinese ones
            (:func:`normalize_numerals`), so ``"40"`` and ``四十`` are the same.

    Returns:
        The normalized text: lowercase, single spaces between non-CJK words, no spaces
        next to CJK characters, no leading or trailing whitespace.

    Raises:
        TypeError: if ``text`` is not a string.

    Example:
        >>> normalize_text("近幾年，不但 Hello, World!")
        '近几年不但hello world'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    text = _fold_compatibility_forms(text)
    text = _drop_invisible(text)
    if to_simplified:
        text = _t2s_converter().convert(text) if text else text
    if normalize_numbers:
        text = normalize_numerals(text)
    if remove_punctuation:
        text = _strip_punctuation(text)
    text = text.lower()
    text = _WHITESPACE.sub(" ", text).strip()
    return _SPACE_NEXT_TO_CJK.sub("", text)


def language_code(language: str) -> str:
    """Whisper's code for a language: ``"zh"``, ``"<|zh|>"``, ``"Chinese"``, ``"mandarin"`` ->
    ``"zh"``. The one reading of language names, for training, validation and model cards.

    Raises:
        ValueError: a language Whisper does not know.
    """
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = str(language).strip().lower()
    if key.startswith("<|") and key.endswith("|>"):
        key = key[2:-2]
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"unknown Whisper language {language!r}")
