"""Evaluation and transcription sharded over 2 gloo processes equal one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_finetune.evaluation import distributed as D

SRC = Path(__file__).resolve().parents[2] / "src"
MODEL = [
    "--model_path=embedded:whisper-base",
    "--backend=ct2",
    "--compute_type=int8",
    "--device=cpu",
]
TIMING = ("elapsed_seconds", "rtf", "processes")


def _clips(tmp_path: Path, test_wav: Path) -> Path:
    """Five 1.5 s slices of the real recording, with its reference cut roughly to match."""
    text = "近几年不但我用书给女儿压岁也劝说亲朋不要给女儿压岁钱而改送压岁书"
    rows = [
        {
            "audio": {"path": str(test_wav), "start_time": 1.5 * i, "end_time": 1.5 * (i + 1)},
            "sentence": text[6 * i : 6 * i + 6],
        }
        for i in range(5)
    ]
    path = tmp_path / "clips.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _run(args: list[str], processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if processes == 1:
        cmd = [sys.executable, "-m", "whisper_finetune", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "whisper_finetune",
            *args,
        ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_two_processes_give_the_same_summary_and_utterances_as_one(tmp_path, test_wav):
    manifest = _clips(tmp_path, test_wav)
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"eval-{n}"
        _run(
            [
                "evaluate",
                f"--test_data={manifest}",
                f"--output_dir={out}",
                "--batch_size=2",
                "--progress=false",
                *MODEL,
            ],
            n,
        )
        outs[n] = out
        assert sorted(p.name for p in out.iterdir()) == [
            "summary.json",
            "utterances.jsonl",
        ]  # no rank files left
    one, two = (json.loads((outs[n] / "summary.json").read_text()) for n in (1, 2))
    assert (one["processes"], two["processes"]) == (1, 2)
    assert {k: v for k, v in one.items() if k not in TIMING} == {
        k: v for k, v in two.items() if k not in TIMING
    }
    assert one["n_utts"] == 5 and one["n_ref_units"] > 0
    assert (outs[1] / "utterances.jsonl").read_text() == (outs[2] / "utterances.jsonl").read_text()

    # infer over the same manifest: one JSON line per record, in manifest order
    texts = {}
    for n in (1, 2):
        out = tmp_path / f"infer-{n}.jsonl"
        _run(
            ["infer", f"--audio_path={manifest}", f"--output_file={out}", "--language=zh", *MODEL],
            n,
        )
        texts[n] = out.read_text()
        assert not list(tmp_path.glob(f"infer-{n}.jsonl.*"))  # partial files merged away
    assert texts[1] == texts[2]
    items = [json.loads(x) for x in texts[1].splitlines()]
    assert [i["start_time"] for i in items] == [0.0, 1.5, 3.0, 4.5, 6.0]
    hyps = [
        json.loads(x)["hypothesis"] for x in (outs[1] / "utterances.jsonl").read_text().splitlines()
    ]
    assert [i["text"] for i in items] == hyps  # same decoding, same text


def test_records_are_dealt_out_by_rank_and_merged_back_in_order():
    n, world = 11, 3
    shards = [D.shard(n, D.Dist(rank=r, world=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert shards[1] == [1, 4, 7, 10]
    assert D.shard(n, D.Dist()) == list(range(n))


def test_each_process_takes_its_share_of_the_cores(monkeypatch):
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    try:
        assert D.cpu_threads(D.Dist(rank=1, world=8, local_rank=1, local_world=4)) == 4
        assert D.cpu_threads(D.Dist(rank=1, world=2, local_rank=1, local_world=2), requested=3) == 3
        assert D.cpu_threads(D.Dist()) == 0  # one process: the library's default
        assert D.cpu_threads(D.Dist(rank=0, world=32, local_rank=0, local_world=32)) == 1
    finally:
        torch.set_num_threads(threads)


def test_dist_reads_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    d = D.Dist.from_env()
    assert (d.rank, d.world, d.local_rank, d.local_world, d.is_main, d.active) == (
        3,
        4,
        1,
        2,
        False,
        True,
    )
    assert d.suffix() == "rank3-of-4"


def test_each_rank_sees_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    D._pin_gpu(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    D._pin_gpu(2)  # more processes than GPUs: round robin
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    D._pin_gpu(0)  # every GPU hidden on purpose stays hidden
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


FAILING_RANK = """
import os, sys
from whisper_finetune.inference.transcript import Transcript


class Echo:
    calls = 0

    def transcribe_batch(self, audios, options):
        Echo.calls += 1
        if os.environ["RANK"] == "1" and Echo.calls == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return [Transcript("你好", options.language, len(a) / 16000) for a in audios]


import whisper_finetune.inference.loader as loader
loader.load_transcriber = lambda **kw: Echo()
from whisper_finetune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_rank_stops_every_rank_and_says_where_the_results_are(tmp_path, test_wav):
    import numpy as np

    from whisper_finetune.data.audio import write_wav

    rows = []
    for i in range(6):
        write_wav(tmp_path / f"{i}.wav", np.zeros(16000, np.float32))
        rows.append(
            json.dumps({"audio": {"path": f"{i}.wav"}, "sentence": "你好"}, ensure_ascii=False)
            + "\n"
        )
    (tmp_path / "m.jsonl").write_text("".join(rows), encoding="utf-8")
    script = tmp_path / "run.py"
    script.write_text(FAILING_RANK, encoding="utf-8")
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        "evaluate",
        f"--test_data={tmp_path / 'm.jsonl'}",
        f"--output_dir={out}",
        "--batch_size=1",
        "--progress=false",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert (
        proc.stderr.count(
            "1 of 2 ranks failed: rank 1: RuntimeError: CUDA out of memory (simulated)"
        )
        == 2
    )  # both ranks say it
    assert (
        f"the 1 utterance(s) scored before it are in {out / 'utterances.rank1-of-2.jsonl'}"
        in proc.stderr
    )
    assert (
        len((out / "utterances.rank0-of-2.jsonl").read_text().splitlines()) == 3
    )  # rank 0 finished its share
    assert len((out / "utterances.rank1-of-2.jsonl").read_text().splitlines()) == 1
    assert not (out / "summary.json").exists()
