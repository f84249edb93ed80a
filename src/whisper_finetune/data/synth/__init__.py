"""The built-in Mandarin corpus: HSK sentences spoken by espeak-ng, as manifests.

``sentences`` picks and splits the text, ``voice`` speaks it, ``levels`` adds noise and
sets levels, ``corpus`` builds the folder (see its docstring for the guarantees).
"""

from whisper_finetune.data.synth.config import MAX_SECONDS, SynthConfig, SynthResult
from whisper_finetune.data.synth.corpus import build_corpus
from whisper_finetune.data.synth.levels import active_power, colored_noise, mix_at_snr, set_peak
from whisper_finetune.data.synth.sentences import (
    HskSentence,
    clean_pinyin,
    count_chars,
    load_hsk_sentences,
    pinyin_for_espeak,
    select_sentences,
    split_of,
)
from whisper_finetune.data.synth.voice import check_espeak, espeak_synthesize

__all__ = [
    "MAX_SECONDS",
    "HskSentence",
    "SynthConfig",
    "SynthResult",
    "active_power",
    "build_corpus",
    "check_espeak",
    "clean_pinyin",
    "colored_noise",
    "count_chars",
    "espeak_synthesize",
    "load_hsk_sentences",
    "mix_at_snr",
    "pinyin_for_espeak",
    "select_sentences",
    "set_peak",
    "split_of",
]
