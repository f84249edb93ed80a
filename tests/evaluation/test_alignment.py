"""Alignment heads: scoring finds the head that follows the audio, DTW matches the
reference implementation, and the command writes heads into the model and its
converted forms (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from finetune_data import write_manifest

from whisper_finetune.evaluation.alignment import (
    FRAME_S,
    TimedSample,
    boundary_errors,
    dtw,
    head_scores,
    token_starts,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Could not find a config file in"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _sample(n_tokens=12, n_frames=300) -> TimedSample:
    """Three sentences of four tokens over 6 s: 0-2 s, 2.2-4 s, 4.2-6 s."""
    return TimedSample(
        origin="synthetic",
        features=np.zeros((80, 3000), np.float32),
        tokens=[],
        first_row=0,
        token_sentence=np.repeat([0, 1, 2], n_tokens // 3),
        spans=np.array([(0.0, 2.0), (2.2, 4.0), (4.2, 6.0)]),
        n_frames=n_frames,
    )


def _attention(sample: TimedSample, aligned=(1, 0), seed=0) -> np.ndarray:
    """(2 layers, 2 heads, tokens + EOT, frames): one head walks the audio token by token
    (each token attends around its own place in its sentence), the others are noise."""
    rng = np.random.default_rng(seed)
    n_text = len(sample.token_sentence)
    attn = rng.random((2, 2, n_text + 1, sample.n_frames))
    times = (np.arange(sample.n_frames) + 0.5) * FRAME_S
    walk = np.zeros((n_text + 1, sample.n_frames))
    for k, (start, end) in enumerate(sample.spans):
        idx = np.flatnonzero(sample.token_sentence == k)
        edges = np.linspace(start, end, idx.size + 1)
        for j, i in enumerate(idx):
            walk[i] = np.exp(-(((times - (edges[j] + edges[j + 1]) / 2) / 0.1) ** 2))
    walk[-1] = np.exp(-(((times - sample.spans[-1, 1]) / 0.1) ** 2))
    attn[aligned] = walk + 1e-3
    return attn / attn.sum(-1, keepdims=True)


def test_scores_pick_the_head_that_follows_the_audio():
    sample = _sample()
    scores = head_scores(_attention(sample), sample)
    assert np.unravel_index(np.argmax(scores), scores.shape) == (1, 0)
    assert (
        scores[1, 0] > 0.95 and scores.max(where=np.arange(4).reshape(2, 2) != 2, initial=0) < 0.6
    )


def test_aligned_head_times_boundaries_and_noise_does_not():
    sample = _sample()
    attn = _attention(sample)
    good = boundary_errors(token_starts(attn, [(1, 0)]), sample)
    bad = boundary_errors(token_starts(attn, [(0, 0), (0, 1)]), sample)
    assert len(good) == 6  # a start and an end per sentence
    assert good.mean() < 0.3 < bad.mean()


def test_dtw_matches_transformers_reference():
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping

    cost = np.random.default_rng(1).random((9, 40))
    ours = dtw(cost)
    ref = _dynamic_time_warping(cost)
    assert np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])


@pytest.fixture(scope="module")
def timed_manifest(tmp_path_factory):
    return write_manifest(tmp_path_factory.mktemp("timed"), name="timed.jsonl")


def test_command_writes_heads_into_model_and_ct2(tiny_model_dir, timed_manifest, tmp_path):
    pytest.importorskip("ctranslate2")
    import shutil

    from whisper_finetune.cli import main
    from whisper_finetune.models.convert import convert_to_ct2

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    ct2 = convert_to_ct2(model, tmp_path / "ct2", quantization="float32", verify=False)
    args = ["alignment-heads", f"--model_path={model}", f"--data={timed_manifest}"]
    assert main([*args, "--num_heads=3", "--force", "--converted", str(ct2)]) == 0
    heads = json.loads((model / "generation_config.json").read_text())["alignment_heads"]
    assert len(heads) == 3 and len({tuple(h) for h in heads}) == 3
    config = json.loads((model / "config.json").read_text())
    assert all(
        0 <= a < config["decoder_layers"] and 0 <= b < config["decoder_attention_heads"]
        for a, b in heads
    )
    assert json.loads((ct2 / "config.json").read_text())["alignment_heads"] == heads


def test_bad_inputs_are_named(tiny_model_dir, tmp_path, capsys):
    from whisper_finetune.cli import main

    untimed = tmp_path / "untimed.jsonl"
    wav = write_manifest(tmp_path / "a").parent / "clip0.wav"
    untimed.write_text(json.dumps({"audio": {"path": str(wav)}, "sentence": "你好"}) + "\n")
    assert main(["alignment-heads", f"--model_path={tiny_model_dir}", f"--data={untimed}"]) == 1
    assert "untimed.jsonl" in capsys.readouterr().err
    assert main(["alignment-heads", f"--model_path={tmp_path}", f"--data={untimed}"]) == 1
    assert "not a transformers Whisper folder" in capsys.readouterr().err
