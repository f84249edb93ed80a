"""A merged fine-tune of whisper-base, exported to GGML, keeps its fine-tuned accuracy.

Needs a merged fine-tune (``whisper-finetune finetune`` then ``merge``; the demo makes
one): set ``WHISPER_FINETUNE_MERGED_MODEL`` to its folder. The synthetic test split (60
clips, seed 0, as the demo builds it) is written to ``WHISPER_FINETUNE_SYNTH_DIR`` or a
temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whisper_finetune.evaluation.metrics import score
from whisper_finetune.inference.transcript import DecodeOptions
from whisper_finetune.text import normalize_text

pytestmark = pytest.mark.slow
MERGED = os.environ.get("WHISPER_FINETUNE_MERGED_MODEL")


def _split(tmp_path: Path):
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.data.synth import SynthConfig, build_corpus

    folder = Path(os.environ.get("WHISPER_FINETUNE_SYNTH_DIR", tmp_path / "synth"))
    manifest = folder / "test.jsonl"
    if not manifest.is_file():
        cfg = SynthConfig(target_dir=str(folder), num_train=0, num_test=60, noise_share=0.02)
        manifest = build_corpus(cfg).test_manifest
    records = read_manifest(manifest)
    return [load_audio(r.audio_path) for r in records], [r.sentence for r in records]


def _cer(transcriber, clips, references) -> float:
    # like for like: one greedy pass on both backends, so the export is what differs
    # (robust decoding's fallback samples, and samples differ between engines)
    options = DecodeOptions.plain(language="zh")
    texts = [transcriber.transcribe(c, options).text for c in clips]
    return score([normalize_text(r) for r in references], [normalize_text(t) for t in texts], "cer")


@pytest.mark.skipif(not MERGED, reason="set WHISPER_FINETUNE_MERGED_MODEL to a merged fine-tune")
def test_merged_finetune_keeps_its_synthetic_split_cer_in_ggml(tmp_path):
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.models.ggml import convert_to_ggml

    clips, references = _split(tmp_path)
    assert len(clips) == 60
    transformers = _cer(load_transcriber(MERGED, "transformers", "cpu", cpu_threads=2), clips, references)
    for quantization in ("f16", "q8_0"):
        out = convert_to_ggml(MERGED, tmp_path / quantization, quantization=quantization)
        ggml = _cer(load_transcriber(out, "whispercpp", cpu_threads=2), clips, references)
        print(f"synthetic split CER: transformers {transformers:.4f}, ggml {quantization} {ggml:.4f}")
        assert abs(ggml - transformers) <= 0.02, (quantization, ggml, transformers)
    base = _cer(
        load_transcriber("embedded:whisper-base", "whispercpp", compute_type="q8_0", cpu_threads=2),
        clips,
        references,
    )
    print(f"synthetic split CER of whisper-base itself (ggml q8_0): {base:.4f}")
    assert base > transformers + 0.1  # the fine-tuned behaviour is what the export carries
