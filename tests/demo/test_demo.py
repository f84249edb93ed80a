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


def test_demo_runs_every_stage_and_writes_the_report(
    tiny_model_dir, test_wav, tmp_path, capsys, benchmark_script
):
    cfg = DemoConfig(
        base_model=str(tiny_model_dir),
        guard_data=str(test_wav.parent / "test.json"),
        guard_curve=True,
        output_dir=str(tmp_path / "demo"),
        num_train=8,
        num_test=2,
        num_dev=2,
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
    # base and fine-tuned, both backends, both test sets; but the base model with
    # transformers on the guard set only (it loops on the synthetic split)
    keys = {(m.stage, m.backend, m.dataset) for m in report.measurements}
    assert len(keys) == 7
    assert ("base", "transformers fp32", "synthetic test split") not in keys
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
        "merges tried" in notes
        and "merge used: train/checkpoint-" in notes
        and "guard set: <whisper_finetune>/assets/real_speech/test.json" in notes
    )
    # every trial merge is a point of the trade-off curve, one of them chosen
    assert report.tradeoff and sum(p["chosen"] for p in report.tradeoff) == 1
    tradeoff = json.loads((out / "report" / "tradeoff.json").read_text())
    assert tradeoff == report.tradeoff and (out / "report" / "tradeoff.png").is_file()
    assert not list((out / "scales").rglob("model.safetensors"))  # only the chosen merge kept
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
    assert report.settings["dev_data"] == "corpus/dev.jsonl"  # the dev split chooses
    assert "only reported" in notes
    assert str(tmp_path) not in md
    assert "total time" in capsys.readouterr().out
    # benchmarks/merge_grid.py scores merges of this finished run, so it cannot rot
    grid = benchmark_script("merge_grid")
    rows = grid.main(
        ["--run", str(out), "--points", "2:1:0.5", "--output", str(tmp_path / "grid.jsonl")]
        + ["--guard_data", cfg.guard_data, "--beam_size", "1"]
    )
    assert [r["point"] for r in rows] == ["base", "2-1-0.5"]
    assert rows[1]["guard_low"] <= rows[1]["guard_change"] <= rows[1]["guard_high"]
    assert len((tmp_path / "grid.jsonl").read_text().splitlines()) == 2
    with pytest.raises(SystemExit, match="checkpoint-9"):
        grid.main(
            ["--run", str(out), "--points", "9:1:1", "--output", str(tmp_path / "g2")]
            + ["--guard_data", cfg.guard_data]
        )


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


def _point(name, scale, change, dev, kept=None):
    from whisper_finetune.demo.measure import MergePoint
    from whisper_finetune.evaluation.metrics import PairedBootstrap

    kept = change <= 0.01 if kept is None else kept
    interval = PairedBootstrap(change, change - 0.01, change + 0.01, 0.5)
    return MergePoint(Path(name), scale, 0.12 + change, interval, kept, dev)


@pytest.mark.parametrize(
    ("points", "expected", "why"),
    [
        # 1: both bounds met -> the lowest dev CER among those
        (
            [("c80", 1.0, 0.03, 0.08), ("c80", 0.5, 0.008, 0.095), ("c40", 0.5, 0.0, 0.097)],
            ("c80", 0.5),
            "meets both",
        ),
        # 2: the target reached only while breaking the guard -> the one that forgets least
        (
            [("c80", 1.0, 0.03, 0.08), ("c80", 0.7, 0.02, 0.09), ("c80", 0.5, 0.0, 0.12)],
            ("c80", 0.7),
            "forgets least",
        ),
        # 3: the target out of reach -> of those that keep the guard, the lowest dev CER
        (
            [("c80", 1.0, 0.03, 0.15), ("c80", 0.5, 0.005, 0.13), ("c40", 0.5, 0.0, 0.14)],
            ("c80", 0.5),
            "no merge reached",
        ),
        # 4: neither -> the lowest dev CER of all
        (
            [("c80", 1.0, 0.03, 0.15), ("c80", 0.5, 0.02, 0.16)],
            ("c80", 1.0),
            "no merge kept the guard or reached",
        ),
        # a tie goes to the merge tried first
        (
            [("c80", 0.5, 0.0, 0.09), ("c40", 0.5, 0.0, 0.09)],
            ("c80", 0.5),
            "meets both",
        ),
    ],
)
def test_the_merge_is_chosen_by_both_bounds_then_by_the_least_forgetting(points, expected, why):
    """Both bounds met: the lowest dev CER; only the target reached: the least forgetting
    of those (the issue's fallback); only the guard kept: the lowest dev CER of those."""
    from whisper_finetune.demo.measure import choose_merge

    chosen, reason = choose_merge([_point(*p) for p in points], DemoConfig(target_cer=0.10))
    assert (chosen.checkpoint.name, chosen.scale) == expected
    assert why in reason


def test_without_a_target_the_guard_alone_decides():
    from whisper_finetune.demo.measure import choose_merge

    points = [_point("c80", 1.0, 0.03, 0.05), _point("c80", 0.5, 0.0, 0.2)]
    chosen, _ = choose_merge(points, DemoConfig(target_cer=None))
    assert chosen.scale == 0.5


@pytest.mark.parametrize(
    ("lora_layers", "scale_part", "weights"),
    [
        ("all", "auto", lambda s: {"scale": 1.0, "decoder_scale": s}),  # the demo's default
        ("encoder", "auto", lambda s: {"scale": s}),
        ("all", "all", lambda s: {"scale": s}),
    ],
)
def test_the_search_goes_newest_first_and_stops_where_the_bounds_are_met(
    tmp_path, monkeypatch, lora_layers, scale_part, weights
):
    """Newest checkpoint first, each largest scale first, weighing the adapters
    ``scale_part`` names; a checkpoint's scan stops at its first scale that keeps the guard
    or, once a merge has reached the target, at one that misses it; the search stops at
    the first merge meeting both bounds; each merge scored with CTranslate2 on the guard
    set and the dev set, its merge kept for the choice."""
    from types import SimpleNamespace

    from whisper_finetune.demo import measure
    from whisper_finetune.training import merge

    merges = []

    def fake_merge(adapter, out, overwrite=False, alignment_heads=True, **w):
        assert alignment_heads is False  # a trial merge does not choose timestamp heads
        merges.append((Path(adapter).name, w))
        Path(out).mkdir(parents=True)
        return Path(out)

    # (checkpoint, scale) -> (guard errors on the first of ten clips of 100 chars, subset CER)
    plan = {
        ("checkpoint-80", 1.0): (40, 0.12),
        ("checkpoint-80", 0.7): (25, 0.13),
        ("checkpoint-80", 0.5): (15, 0.14),  # keeps the guard but misses the target
        ("checkpoint-60", 1.0): (30, 0.09),  # reaches the target, breaks the guard
        ("checkpoint-60", 0.7): (30, 0.11),  # misses the target: 60's smaller scales skipped
        ("checkpoint-40", 1.0): (30, 0.098),
        ("checkpoint-40", 0.7): (12, 0.095),  # both bounds met: the search ends
    }

    def fake_evaluate(model, backend, manifests, cfg):
        assert backend.name == "ct2"
        _, checkpoint, scale, _ = Path(model).parts[-4:]
        errors, subset = plan[(checkpoint, float(scale.split("-")[1]))]
        clips = [errors] + [10] * 9
        guard = SimpleNamespace(
            value=sum(clips) / 1000,
            utterances=[SimpleNamespace(errors=e, ref_units=100) for e in clips],
        )
        assert [p.name for p in manifests] == ["eval-guard", "eval-dev"]
        return [guard, SimpleNamespace(value=subset)]

    monkeypatch.setattr(merge, "merge_adapter", fake_merge)
    monkeypatch.setattr(measure, "evaluate_model", fake_evaluate)
    monkeypatch.setattr(
        "whisper_finetune.models.convert.convert_to_ct2", lambda merged, out, **k: Path(out)
    )
    cfg = DemoConfig(
        output_dir=str(tmp_path),
        lora_layers=lora_layers,
        scale_part=scale_part,
        merge_scales=(1.0, 0.7, 0.5, 0.3),
        target_cer=0.10,
    )
    base = measure.GuardResult(0.1, ((10, 100),) * 10)
    # in step order, as complete_checkpoints gives them
    checkpoints = [tmp_path / "train" / f"checkpoint-{n}" for n in (40, 60, 80)]
    points = measure.search_merges(
        checkpoints, "guard.jsonl", base, cfg, tmp_path / "scales", "dev.jsonl"
    )
    assert [(p.checkpoint.name, p.scale) for p in points] == list(plan)
    assert [p.kept for p in points] == [False, False, True, False, False, False, True]
    assert points[0].interval.difference == pytest.approx(0.03)  # 30 more errors of 1,000
    assert [m for m in merges] == [(c, weights(s)) for c, s in plan]
    assert all(p.merged.is_dir() for p in points)
    chosen, _ = measure.choose_merge(points, cfg)
    assert (chosen.checkpoint.name, chosen.scale) == ("checkpoint-40", 0.7)


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


def test_the_guarded_merge_tries_the_last_checkpoint_unless_asked_for_all():
    saved = [Path("train/checkpoint-40"), Path("train/checkpoint-80")]
    assert DemoConfig().merge_candidates(saved) == saved[-1:]
    assert DemoConfig(merge_checkpoints="all").merge_candidates(saved) == saved
    assert DemoConfig().merge_candidates([]) == []
    with pytest.raises(ValueError, match="--merge_checkpoints must be last or all, got 'first'"):
        DemoConfig(merge_checkpoints="first")


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
