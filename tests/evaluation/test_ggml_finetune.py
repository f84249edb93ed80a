"""A merged fine-tune of whisper-base, exported to GGML, keeps its fine-tuned accuracy.

The fine-tune is ``WHISPER_FINETUNE_MERGED_MODEL`` when set (a merged model, e.g. the
demo's ``runs/demo/merged``); otherwise the test makes one: 20 encoder-only LoRA steps of
the demo's recipe on 160 synthetic utterances at learning rate 1e-3, merged at full scale
(about 3 minutes on 2 cores).
Both sides decode the demo's 60-clip synthetic test split in one plain greedy pass, each
clip capped at twice the new tokens the longest reference needs (44), so what differs is
the export, not the decoder's fallback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whisper_finetune.evaluation.metrics import score
from whisper_finetune.inference.transcript import DecodeOptions
from whisper_finetune.text import normalize_text

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_torch_threads")]


@pytest.fixture(scope="module")
def two_torch_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def finetune_and_split(tmp_path_factory):
    """(merged model folder, test split manifest)."""
    from dataclasses import replace

    from whisper_finetune.demo.recipe import DemoConfig, Stages, build_data, training_config
    from whisper_finetune.training.merge import merge_adapter
    from whisper_finetune.training.train import finetune

    work = tmp_path_factory.mktemp("ggml-finetune")
    merged = os.environ.get("WHISPER_FINETUNE_MERGED_MODEL")
    if merged:  # only the test split is needed
        from whisper_finetune.data.synth import SynthConfig, build_corpus

        synth = SynthConfig(
            target_dir=str(work / "corpus"), num_train=0, num_test=60, noise_share=0.02
        )
        return Path(merged), str(build_corpus(synth).test_manifest)
    cfg = replace(DemoConfig(output_dir=str(work)), num_train=160, num_test=60, num_dev=0)
    train, _, test = build_data(cfg, work, Stages())  # no dev split: nothing is chosen
    # pinned: at the demo's 5e-4 (since 2026-12-01) 20 steps leave a half-trained model
    # (transformers CER 0.276 on the split) whose near-ties f16 rounding flips more often; this
    # test is about the export, so its fine-tune stays the one it was written for (encoder-only
    # adapters, as the demo's were until its decoder got adapters too, later on 2026-12-01)
    cfg = replace(
        cfg,
        max_steps=20,
        eval_steps=0,
        warmup_steps=2,
        learning_rate=1e-3,
        lora_layers="encoder",
        scale_part="all",
    )
    result = finetune(training_config(cfg, work / "train", train, test, report_to=("none",)))
    return merge_adapter(str(result.final_dir), work / "merged", scale=1.0), test


def _cer(transcriber, manifest) -> float:
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.demo.measure import token_limit

    records = read_manifest(manifest)
    assert len(records) == 60
    limit = token_limit([r.sentence for r in records], "embedded:whisper-base")
    options = DecodeOptions.plain(language="zh", max_new_tokens=limit)
    texts = [transcriber.transcribe(load_audio(r.audio_path), options).text for r in records]
    return score(
        [normalize_text(r.sentence) for r in records], [normalize_text(t) for t in texts], "cer"
    )


def test_merged_finetune_keeps_its_synthetic_split_cer_in_ggml(finetune_and_split, tmp_path):
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.models.ggml import convert_to_ggml

    merged, manifest = finetune_and_split
    transformers = _cer(
        load_transcriber(str(merged), "transformers", "cpu", cpu_threads=2), manifest
    )
    base = _cer(
        load_transcriber("embedded:whisper-base", "whispercpp", compute_type="q8_0", cpu_threads=2),
        manifest,
    )
    print(
        f"synthetic split CER: transformers {transformers:.4f}; whisper-base (ggml q8_0) {base:.4f}"
    )
    assert base > transformers + 0.1  # the fine-tuned behaviour is what the export must carry
    for quantization in ("f16", "q8_0"):
        out = convert_to_ggml(merged, tmp_path / quantization, quantization=quantization)
        ggml = _cer(load_transcriber(out, "whispercpp", cpu_threads=2), manifest)
        print(
            f"synthetic split CER: transformers {transformers:.4f}, ggml {quantization} {ggml:.4f}"
        )
        assert abs(ggml - transformers) <= 0.02, (quantization, ggml, transformers)
