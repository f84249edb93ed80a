"""Large-v3 and turbo paths (issue 9 item 14) on a tiny random model shaped like them.

128 mel bins, ``<|nospeech|>`` instead of ``<|nocaptions|>``, 51,866 tokens and every
timestamp id shifted by one: labels, a training step, merge, CTranslate2 conversion
(faster-whisper must read 128 mels from ``preprocessor_config.json``) and inference on
both backends.
"""

from __future__ import annotations

import json

import pytest
from finetune_data import CLIPS, write_manifest

from whisper_finetune.data.dataset import LabelBuilder
from whisper_finetune.data.manifest import Record, TimedText
from whisper_finetune.inference.transcript import DecodeOptions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SOT, EOT, ZH, TRANSCRIBE, NOSPEECH, NOTIMESTAMPS, TS0 = (
    50258,
    50257,
    50260,
    50360,
    50363,
    50364,
    50365,
)


def test_v3_labels_use_its_token_ids(tiny_v3_model_dir):
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(tiny_v3_model_dir)
    assert len(tokenizer) == 51866
    labels = LabelBuilder(tokenizer, "zh")
    assert (labels.no_speech, labels.no_timestamps, labels.timestamp_begin) == (
        NOSPEECH,
        NOTIMESTAMPS,
        TS0,
    )
    assert labels.build(Record(audio_path="a.wav", sentence="")) == [SOT, NOSPEECH, EOT]
    timed = Record(audio_path="a.wav", sentence="你好", sentences=(TimedText(0.0, 1.0, "你好"),))
    ids = labels.build(timed, timestamps=True)
    assert ids[:3] == [SOT, ZH, TRANSCRIBE]
    assert ids[3] == TS0 and ids[-2] == TS0 + 50  # 1.00 s = 50 steps of 0.02 s
    assert labels.build(timed)[3] == NOTIMESTAMPS


def test_v3_trains_merges_converts_and_transcribes_on_both_backends(
    tiny_v3_model_dir, tmp_path, test_wav
):
    from faster_whisper import WhisperModel

    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.models.convert import convert_to_ct2
    from whisper_finetune.training.merge import merge_adapter
    from whisper_finetune.training.train import FinetuneConfig, finetune

    train = write_manifest(tmp_path / "data", clips=CLIPS[:4])
    cfg = FinetuneConfig(
        base_model=str(tiny_v3_model_dir),
        train_data=str(train),
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=2,
        max_steps=2,
        save_steps=2,
        warmup_steps=0,
        lora_r=4,
        timestamp_ratio=1.0,
        report_to=("none",),
    )
    result = finetune(cfg)
    assert result.global_step == 2
    merged = merge_adapter(result.final_dir, tmp_path / "merged")
    assert json.loads((merged / "config.json").read_text())["num_mel_bins"] == 128

    ct2 = convert_to_ct2(merged, tmp_path / "ct2", quantization="float32")
    assert json.loads((ct2 / "preprocessor_config.json").read_text())["feature_size"] == 128
    fw = WhisperModel(str(ct2), device="cpu", compute_type="float32")
    assert fw.feature_extractor.mel_filters.shape[0] == 128
    assert fw.model.n_mels == 128 and fw.model.num_languages == 100

    options = DecodeOptions.plain(language="zh", max_new_tokens=6)
    texts = {}
    for backend, model in (("transformers", merged), ("ct2", ct2)):
        transcriber = load_transcriber(model, backend, device="cpu")
        t = transcriber.transcribe(test_wav, options)
        assert t.language == "zh" and t.segments, backend
        texts[backend] = t.text
        detected = transcriber.transcribe(test_wav, DecodeOptions.plain(max_new_tokens=2))
        assert detected.language, backend  # language detection runs on 128 mels
    # the same float32 weights give the same first token (a random model's later logits are
    # near ties that the two mel implementations can tip either way)
    assert texts["transformers"].split()[0] == texts["ct2"].split()[0], texts
