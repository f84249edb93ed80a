"""The demo's whole road, in miniature: tiny random Whisper, a few synthetic clips, 2 steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_finetune.demo.demo import DemoConfig, run_demo

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)"
)


def test_demo_runs_every_stage_and_writes_the_report(tiny_model_dir, test_wav, tmp_path, capsys):
    cfg = DemoConfig(
        base_model=str(tiny_model_dir),
        guard_data=str(test_wav.parent / "test.json"),
        guard_curve=True,
        output_dir=str(tmp_path / "demo"),
        num_train=8,
        num_test=2,
        max_steps=2,
        eval_steps=2,
        eval_samples=2,
        per_device_train_batch_size=2,
        merge_scales=(1.0, 0.5),
        max_new_tokens=8,
        precision="fp32",
    )
    report = run_demo(cfg)
    out = tmp_path / "demo"
    # every stage ran and was timed
    assert list(report.stage_seconds) == [
        "corpus",
        "pack",
        "baseline",
        "finetune",
        "merge",
        "convert",
        "evaluate",
    ]
    # base and fine-tuned, both backends, both test sets
    keys = {(m.stage, m.backend, m.dataset) for m in report.measurements}
    assert len(keys) == 8
    assert all(m.n_utts > 0 and m.rtf > 0 for m in report.measurements)
    # artifacts: merged model, CTranslate2 model, report with plots, per-utterance results
    assert (out / "merged" / "model.safetensors").is_file()
    assert (out / "ct2-int8" / "model.bin").is_file()
    assert (out / "ct2-int8" / "preprocessor_config.json").is_file()
    for name in ("report.md", "loss.png", "cer.png", "rtf.png"):
        assert (out / "report" / name).is_file(), name
    utterances = (
        (out / "eval" / "fine-tuned-synthetic-test-ct2" / "utterances.jsonl")
        .read_text()
        .splitlines()
    )
    assert len(utterances) == 2 and "hypothesis" in json.loads(utterances[0])
    # no folder the demo writes has a space in its name
    assert not [p for p in out.rglob("*") if " " in p.name]
    assert report.log_history and any("loss" in h for h in report.log_history)
    notes = " ".join(report.notes)
    assert (
        "merge scale chosen by the guard" in notes
        and "guard set: <whisper_finetune>/assets/real_speech/test.json" in notes
    )
    # the guard set is reported per clip, per model and backend
    clips = {(stage, backend, clip) for stage, backend, clip, *_ in report.per_clip}
    assert clips == {
        (st, b, "test.wav")
        for st in ("base", "fine-tuned")
        for b in ("transformers fp32", "ct2 int8")
    }
    # the CER-against-training-time curve: one point per evaluation, time growing
    evals = [p for p in report.curve if "eval_cer" in p]
    assert (
        [p["step"] for p in evals] == [2]
        and evals[0]["train_seconds"] > 0
        and "eval_guard_cer" in evals[0]
    )
    md = (out / "report" / "report.md").read_text()
    assert "Real speech (guard set) per clip" in md and "Time to CER 0.10" in md
    assert (out / "report" / "time-to-cer.png").is_file()
    # where the figures come from: relative paths, seed, versions, CPU
    assert report.settings["seed"] == 0 and "transformers" in report.settings["versions"]
    assert report.settings["cpu"] and report.settings["test_data"] == "corpus/test.jsonl"
    assert str(tmp_path) not in md
    assert "total time" in capsys.readouterr().out


def test_demo_refuses_a_non_empty_output_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(DemoConfig(output_dir=str(tmp_path)))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_public_api_is_lazy_and_complete():
    code = (
        "import sys, whisper_finetune as w; assert 'torch' not in sys.modules; "
        "[getattr(w, n) for n in w.__all__]; print('ok')"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "ok"
    )


def test_guard_set_ships_with_the_package_and_needs_no_shared_folder(tmp_path):
    """From a copy of the package with no ``../shared`` anywhere near, the demo finds the
    real-speech guard set (the 48 real clips: seven real-dev clips, test.wav and real-zh-dev's
    40) inside the package, each with its source kind."""
    src = Path(__file__).resolve().parents[2] / "src" / "whisper_finetune"
    copy = tmp_path / "clone" / "src"
    shutil.copytree(src, copy / "whisper_finetune", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import json, pathlib; from whisper_finetune.demo.recipe import DemoConfig, resolve_guard_data; "
        "from whisper_finetune.data.manifest import read_manifest; from whisper_finetune.data.audio import load_audio; "
        "from whisper_finetune.evaluation.realspeech import clip_kinds; "
        "p = resolve_guard_data(DemoConfig(), pathlib.Path('run')).guard_data; rs = read_manifest(p); "
        "print(json.dumps([[r.audio_path for r in rs], len(rs), [load_audio(r.audio_path).size for r in rs], "
        "sorted(set(clip_kinds(p).values()))]))"
    )
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    paths, n, sizes, kinds = json.loads(out.stdout)
    assert all(Path(p).is_relative_to(copy) for p in paths) and not (tmp_path / "shared").exists()
    assert n == 48 and all(size > 16000 for size in sizes)
    assert kinds == ["broadcast", "expressive", "read", "spontaneous", "whispered"]
    notice = (copy / "whisper_finetune" / "assets" / "real_speech" / "NOTICE.md").read_text()
    assert "Apache-2.0" in notice and "MIT" in notice


def test_evaluation_token_limit_follows_the_longest_reference(tiny_model_dir):
    """The demo caps generated tokens at twice what its longest reference needs, so a
    looping base model is scored on a bounded hypothesis instead of 448 tokens a clip."""
    from transformers import WhisperTokenizerFast

    from whisper_finetune.demo.measure import token_limit

    short, long = "你好", "今天天气很好我们一起去公园散步吧" * 3
    tokens = len(
        WhisperTokenizerFast.from_pretrained(tiny_model_dir)(
            long, add_special_tokens=False
        ).input_ids
    )
    assert tokens > 20
    assert token_limit([short, long], str(tiny_model_dir)) == 2 * (tokens + 5)
    assert token_limit([short], str(tiny_model_dir)) == 32  # never under 32


def test_the_guarded_merge_with_the_lowest_subset_cer_wins(tmp_path, monkeypatch):
    """Each checkpoint gets the largest merge scale that keeps the guard; of those merges,
    the lowest test-subset CER wins (an earlier checkpoint may); a checkpoint that keeps
    the guard at no scale is no candidate; a tie goes to the later checkpoint."""
    from types import SimpleNamespace

    from whisper_finetune.demo import measure

    # checkpoint -> (scale that keeps the guard or None, test-subset CER at that scale)
    plan = {"checkpoint-10": (None, 0.0), "checkpoint-20": (0.5, 0.12), "checkpoint-30": (0.3, 0.2)}
    scored = []

    def choose(adapter, guard, baselines, cfg, work, keep=False):
        scale, _ = plan[Path(adapter).name]
        assert keep
        if scale is None:
            return 0.3, [(1.0, {"transformers": 0.5}), (0.3, {"transformers": 0.4})]
        (work / f"scale-{scale:.2f}" / "merged").mkdir(parents=True)
        return scale, [(scale, {"transformers": 0.1, "ct2": 0.1})]

    def evaluate(model, backend, manifests, cfg):
        name = Path(model).parents[1].name
        scored.append(name)
        return [SimpleNamespace(value=plan[name][1])]

    monkeypatch.setattr(measure, "choose_merge_scale", choose)
    monkeypatch.setattr(measure, "evaluate_model", evaluate)
    cfg = DemoConfig(output_dir=str(tmp_path))
    checkpoints = [tmp_path / "train" / name for name in plan]
    work = tmp_path / "scales"
    chosen, scale, merged, rows = measure.choose_checkpoint_and_scale(
        checkpoints, "guard.jsonl", {"transformers": 0.1, "ct2": 0.1}, cfg, work, "subset.jsonl"
    )
    assert (chosen.name, scale) == ("checkpoint-20", 0.5) and merged.is_dir()
    assert scored == ["checkpoint-20", "checkpoint-30"]  # the guard-breaking one not scored
    assert [r["kept"] for r in rows] == [False, True, True]
    assert not (work / "checkpoint-30" / "scale-0.30" / "merged").exists()  # loser removed
    # a tie goes to the later checkpoint
    plan["checkpoint-30"] = (0.3, 0.12)
    chosen, *_ = measure.choose_checkpoint_and_scale(
        checkpoints, "guard.jsonl", {}, cfg, tmp_path / "tie", "subset.jsonl"
    )
    assert chosen.name == "checkpoint-30"
    # no checkpoint keeps the guard: none chosen, the smallest scale
    plan.update({k: (None, 0.0) for k in plan})
    chosen, scale, merged, _ = measure.choose_checkpoint_and_scale(
        checkpoints, "guard.jsonl", {}, cfg, tmp_path / "none", "subset.jsonl"
    )
    assert chosen is None and merged is None and scale == cfg.merge_scales[-1]


@pytest.mark.parametrize("beam_size", [1, 5])
def test_every_demo_evaluation_decodes_with_its_beam_width(tmp_path, monkeypatch, beam_size):
    """``--beam_size`` reaches every evaluation the demo runs (the guard's too), each
    manifest with the demo's language and token limit."""
    from types import SimpleNamespace

    from whisper_finetune.demo import measure
    from whisper_finetune.evaluation import evaluate as evaluation
    from whisper_finetune.inference import loader

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"audio": {"path": "a.wav"}, "duration": 1.0, "sentence": "你好"}) + "\n"
    )
    seen = []
    monkeypatch.setattr(loader, "load_transcriber", lambda *a, **k: "transcriber")
    monkeypatch.setattr(measure, "token_limit", lambda sentences, base: 40)
    monkeypatch.setattr(
        evaluation, "evaluate", lambda t, records, cfg: seen.append(cfg.decode) or SimpleNamespace()
    )
    monkeypatch.setattr(evaluation, "write_report", lambda *a, **k: None)
    cfg = DemoConfig(output_dir=str(tmp_path), beam_size=beam_size)
    backend = measure.backends(cfg)[1]
    measure.evaluate_model(
        "model", backend, {tmp_path / "a": str(manifest), tmp_path / "b": str(manifest)}, cfg
    )
    assert [(d.beam_size, d.language, d.max_new_tokens) for d in seen] == [
        (beam_size, "zh", 40)
    ] * 2


@pytest.mark.parametrize(
    ("lora_layers", "scale_part", "expected"),
    [
        ("all", "auto", {"scale": 1.0, "decoder_scale": 0.9}),  # the demo's default
        ("encoder", "auto", {"scale": 0.9}),
        ("all", "all", {"scale": 0.9}),
    ],
)
def test_the_guard_scales_the_adapters_scale_part_names(
    tmp_path, monkeypatch, lora_layers, scale_part, expected
):
    """The guard's merge scale weighs the decoder's adapters only (the encoder's whole) when
    the decoder has adapters, else the whole adapter; a scale that breaks the guard is
    followed by the next."""
    from types import SimpleNamespace

    from whisper_finetune.demo import measure
    from whisper_finetune.training import merge

    merges = []

    def fake_merge(adapter, out, overwrite=False, alignment_heads=True, **weights):
        assert alignment_heads is False  # a trial merge does not choose timestamp heads
        merges.append(weights)
        Path(out).mkdir(parents=True)
        return Path(out)

    guard = iter([0.5, 0.1])  # the first scale breaks the guard, the second keeps it

    def fake_evaluate(*args):
        value = next(guard, 0.1)
        errors = [round(value * 100)] + [10] * 9  # the first of ten clips changes
        one = [SimpleNamespace(errors=e, ref_units=100) for e in errors]
        return [SimpleNamespace(value=sum(errors) / 1000, utterances=one)]

    monkeypatch.setattr(merge, "merge_adapter", fake_merge)
    monkeypatch.setattr(measure, "evaluate_model", fake_evaluate)
    monkeypatch.setattr(
        "whisper_finetune.models.convert.convert_to_ct2", lambda merged, out, **k: Path(out)
    )
    cfg = DemoConfig(
        output_dir=str(tmp_path),
        lora_layers=lora_layers,
        scale_part=scale_part,
        merge_scales=(1.0, 0.9),
    )
    base = measure.GuardResult(0.1, ((10, 100),) * 10)
    scale, tried = measure.choose_merge_scale(
        "adapter", "guard.jsonl", {"transformers": base, "ct2": base}, cfg, tmp_path
    )
    assert scale == 0.9 and [s for s, *_ in tried] == [1.0, 0.9]
    assert tried[0][2]["ct2"].difference == pytest.approx(0.04)  # 40 more errors of 1,000
    assert "transformers" not in tried[0][1]  # ct2 broke the guard: transformers not run
    whole = {k: 1.0 for k in expected}
    assert merges == [whole, expected]


def test_scale_part_is_checked_against_the_adapters():
    with pytest.raises(ValueError, match="no decoder part"):
        DemoConfig(lora_layers="encoder", scale_part="decoder")
    with pytest.raises(ValueError, match="--scale_part must be"):
        DemoConfig(scale_part="encoder")


@pytest.mark.parametrize(
    ("rule", "errors", "kept"),
    [
        ("estimate", [12] + [10] * 9, True),  # +0.002 on the whole set: within +0.01
        ("estimate", [30] + [10] * 9, False),  # +0.02
        # +0.008 from one clip: within +0.01, but the interval's upper end is not
        ("upper", [18] + [10] * 9, False),
        ("upper", [10] * 10, True),
    ],
)
def test_the_guard_verdict_states_its_noise_and_can_demand_the_upper_end(rule, errors, kept):
    from whisper_finetune.demo.measure import GuardResult, guard_verdict

    base = GuardResult(0.1, ((10, 100),) * 10)
    merged = GuardResult(sum(errors) / 1000, tuple((e, 100) for e in errors))
    ok, interval = guard_verdict(base, merged, DemoConfig(guard_rule=rule))
    assert ok is kept
    assert interval.difference == pytest.approx((sum(errors) - 100) / 1000)
    assert interval.low <= interval.difference <= interval.high
