"""Load on the server: N concurrent clients for M seconds against a real model on loopback.

Each client posts ``test.wav`` (8.4 s of real Mandarin) to ``/v1/audio/transcriptions``
in a loop, waiting for each answer before sending the next. A 429 (queue full) is
counted apart, and that client waits the server's ``Retry-After`` before trying again;
anything else that is not a 200 is an error. For each client count this prints
requests per second, audio seconds transcribed per wall second, p50/p95/p99 latency of
the successful requests, the 429 count and the error count (which must be zero: below
the queue limit every request succeeds, over it the extra ones get only 429s), the
batches the server made (``/health``) and the server's CPU seconds per audio second: on
a machine shared with other work, wall-clock throughput measures the neighbours as much
as the server, while CPU time per audio second is the server's own cost.

By default it starts its own server (``whisper-finetune serve --port=0``, ct2 int8, the
embedded whisper-base) and stops it at the end:

    python benchmarks/serve_load.py --clients 1 4 16 --seconds 20
    python benchmarks/serve_load.py --clients 1 4 16 --seconds 20 --compare  # batching on and off
    python benchmarks/serve_load.py --url http://127.0.0.1:5000 --api_key KEY --clients 8

It is a measurement, not a test: the machine is shared, so figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_WAV = REPO / "src" / "whisper_finetune" / "assets" / "real_speech" / "test.wav"


def start_server(args) -> tuple[subprocess.Popen, str, Path]:
    log = Path(tempfile.mkstemp(prefix="serve_load_", suffix=".log")[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "whisper_finetune",
        "serve",
        "--port=0",
        f"--model_path={args.model_path}",
        f"--backend={args.backend}",
        f"--compute_type={args.compute_type}",
        f"--workers={args.workers}",
        f"--max_queue={args.max_queue}",
        f"--language={args.language}",
    ]
    if getattr(args, "max_batch", None):
        env["WHISPER_FINETUNE_MAX_BATCH"] = str(args.max_batch)  # 1: no batching across requests
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"serving .* on (http://\S+)", log.read_text(errors="replace"))
        if match:
            return process, match.group(1), log
        time.sleep(0.2)
    process.kill()
    sys.exit(f"the server did not start:\n{log.read_text(errors='replace')}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def run_load(
    url: str,
    clients: int,
    seconds: float,
    audio: bytes,
    audio_seconds: float,
    headers: dict[str, str],
) -> dict:
    import httpx

    latencies: list[float] = []
    counts = {"ok": 0, "429": 0, "errors": 0}
    examples: list[str] = []
    stop_at = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            start = time.monotonic()
            try:
                r = await http.post(
                    url + "/v1/audio/transcriptions",
                    files={"file": ("test.wav", audio, "audio/wav")},
                    data={"model": "whisper-1"},
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                counts["errors"] += 1
                examples.append(f"{type(exc).__name__}: {exc}")
                continue
            if r.status_code == 200:
                latencies.append(time.monotonic() - start)
                counts["ok"] += 1
            elif r.status_code == 429:
                counts["429"] += 1
                wait = float(r.headers.get("retry-after", "1"))
                await asyncio.sleep(min(wait, max(0.0, stop_at - time.monotonic())))
            else:
                counts["errors"] += 1
                examples.append(f"HTTP {r.status_code}: {r.text[:200]}")

    limits = httpx.Limits(max_connections=clients + 4)
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.monotonic() - began  # includes the requests still running at the deadline
    return {
        "clients": clients,
        "wall": wall,
        "ok": counts["ok"],
        "rps": counts["ok"] / wall,
        "audio_per_wall": counts["ok"] * audio_seconds / wall,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "429": counts["429"],
        "errors": counts["errors"],
        "examples": examples[:3],
    }


def cpu_seconds(process: subprocess.Popen | None) -> float:
    """The server process's CPU time so far (user + system), from /proc; NaN elsewhere."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return float("nan")


def health(url: str) -> dict:
    import httpx

    return httpx.get(url + "/health", timeout=30).json().get("queue", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--url", default=None, help="an existing server; default: start one")
    parser.add_argument("--api_key", default=os.environ.get("WHISPER_FINETUNE_API_KEY"))
    parser.add_argument("--audio", default=str(TEST_WAV))
    parser.add_argument("--model_path", default="embedded:whisper-base")
    parser.add_argument("--backend", default="ct2")
    parser.add_argument("--compute_type", default="int8")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max_queue", type=int, default=8)
    parser.add_argument("--language", default="zh")
    parser.add_argument(
        "--max_batch",
        type=int,
        default=None,
        help="requests batched together at most (1: no batching); default: the server's",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also start a server without batching (max_batch 1) and run each "
        "client count on both, side by side",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio

    audio = Path(args.audio).read_bytes()
    audio_seconds = load_audio(args.audio).size / SAMPLE_RATE
    servers: list[tuple[str, str, subprocess.Popen | None]] = []  # (label, url, process)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        if args.url is not None:
            servers.append(("given", args.url, None))
        else:
            process, url, log = start_server(args)
            servers.append(("batching" if args.max_batch != 1 else "no batching", url, process))
            print(
                f"server: {url} (ct2 workers={args.workers}, max_queue={args.max_queue}); log {log}"
            )
            if args.compare:
                off = argparse.Namespace(**{**vars(args), "max_batch": 1})
                process, url, log = start_server(off)
                servers.append(("no batching", url, process))
                print(f"server without batching: {url}; log {log}")
        for _, url, _ in servers:  # one request first: no run pays for the first call's warm-up
            asyncio.run(run_load(url, 1, 0.01, audio, audio_seconds, headers))
        print(
            f"{Path(args.audio).name}: {audio_seconds:.2f} s of audio per request, {args.seconds:.0f} s per run"
        )
        print(
            "| server | clients | requests ok | req/s | audio s / wall s | vs 1 client | p50 s | p95 s "
            "| p99 s | 429 | errors | batches (jobs) | server CPU s / audio s |"
        )
        print(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )
        single: dict[str, float] = {}
        for clients in args.clients:
            for label, url, process in servers:
                before, cpu = health(url), cpu_seconds(process)
                r = asyncio.run(run_load(url, clients, args.seconds, audio, audio_seconds, headers))
                after, cpu = health(url), cpu_seconds(process) - cpu
                per_audio = cpu / (r["ok"] * audio_seconds) if r["ok"] else float("nan")
                single.setdefault(label, r["audio_per_wall"])
                ratio = r["audio_per_wall"] / single[label] if single[label] else float("nan")
                batches = after.get("batches", 0) - before.get("batches", 0)
                jobs = after.get("batched_jobs", 0) - before.get("batched_jobs", 0)
                print(
                    f"| {label} | {clients} | {r['ok']} | {r['rps']:.2f} | {r['audio_per_wall']:.2f} | "
                    f"{ratio:.2f}x | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {r['429']} | "
                    f"{r['errors']} | {batches} ({jobs}) | {per_audio:.3f} |",
                    flush=True,
                )
                for example in r["examples"]:
                    print(f"    error: {example}")
    finally:
        for _, _, process in servers:
            if process is not None:
                process.terminate()
                process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
