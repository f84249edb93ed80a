"""Abuse on the server: honest clients beside a decompression bomb, idle sockets, slow
bodies and oversized options (issue 27, items 6-9).

It starts its own server (``whisper-finetune serve --port=0``, ct2 int8, the embedded
whisper-base, one worker), with the soft open-file limit set to 1024 as on a default
Linux login, and runs two phases of ``--seconds`` each, side by side in one run:

1. **quiet**: ``--honest`` clients post ``test.wav`` (8.4 s of real Mandarin) to
   ``/v1/audio/transcriptions`` in a loop, each waiting for its answer;
2. **attack**: the same clients, while
   - a **bomb** client posts, one after the other, a FLAC holding 10 h of silence
     (about 1 MB; its header gives the length) and an ADTS AAC holding 90 min (no
     length in any header: found while decoding);
   - ``--idle`` sockets are held open without a byte sent (a fifth of them send half a
     request head and trickle a byte a second), each reopened a second after the server
     closes it;
   - ``--slow`` clients send a request head for a 10 MB upload, then 100 bytes a second;
   - an **options** client posts ``beam_size=1500`` to ``/v1/transcribe`` and a 100,000
     character ``prompt`` to ``/v1/audio/transcriptions``.

Printed per phase: honest requests served and their errors (any answer but 200, or no
answer), their p50/max latency, what the attackers got (status counts), the worst
``/health`` latency (probed every second on a fresh connection), the server's peak RSS,
and how many bytes its log grew.

With ``--features_minutes N`` it first measures, in two processes of its own, what N
minutes of (near-silent) audio cost above the loaded model: handed whole to
faster-whisper's sequential decoder, as the server did (it computes the log-mel of all
of it at once), and through the server's job, which cuts it into 5-minute pieces.

    python benchmarks/serve_abuse.py                     # 2 x 45 s
    python benchmarks/serve_abuse.py --features_minutes 20 --seconds 0
    nice -n 5 python benchmarks/serve_abuse.py --seconds 30 --idle 2000

It is a measurement, not a test: the machine is shared, so figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEST_WAV = REPO / "src" / "whisper_finetune" / "assets" / "real_speech" / "test.wav"
RATE = 16000


def flac_of_silence(seconds: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", RATE, 1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(RATE * 60, dtype=np.int16)
        for _ in range(seconds // 60):
            f.write(block)
    return buffer.getvalue()


def aac_of_silence(seconds: int) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=RATE, layout="mono")
        zeros = np.zeros((1, 1024), np.float32)
        for pts in range(0, seconds * RATE, 1024):
            frame = av.AudioFrame.from_ndarray(zeros, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, pts
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def start_server(args, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))

    def low_fd_limit() -> None:  # as the issue found it: ulimit -n 1024
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))

    command = [
        sys.executable, "-m", "whisper_finetune", "serve", "--port=0",
        "--model_path=embedded:whisper-base", "--backend=ct2", "--compute_type=int8",
        "--workers=1", "--language=zh", *args.serve_args,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                               preexec_fn=low_fd_limit)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"serving .* on (http://\S+)", log.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        time.sleep(0.2)
    process.kill()
    sys.exit(f"the server did not start:\n{log.read_text(errors='replace')}")


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


class Phase:
    def __init__(self) -> None:
        self.honest: list[float] = []
        self.honest_errors: Counter = Counter()
        self.attack: Counter = Counter()
        self.health: list[float] = []
        self.health_errors = 0
        self.rss_peak = 0.0


# the honest clients run in a process of their own, as they would on other machines: the
# attackers' event loop here (thousands of sockets) must not delay them
HONEST = """
import asyncio, sys, time, httpx
url, path, clients, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
audio = open(path, "rb").read()
stop = time.monotonic() + seconds

async def client():
    async with httpx.AsyncClient(timeout=120) as http:
        while time.monotonic() < stop:
            start = time.monotonic()
            try:
                r = await http.post(url + "/v1/audio/transcriptions",
                                    files={"file": ("test.wav", audio, "audio/wav")})
                ok = r.status_code == 200 and bool(r.json().get("text"))
                print("ok" if ok else r.status_code, f"{time.monotonic() - start:.3f}", flush=True)
            except httpx.HTTPError as exc:
                print(type(exc).__name__, f"{time.monotonic() - start:.3f}", flush=True)

async def main():
    await asyncio.gather(*(client() for _ in range(clients)))

asyncio.run(main())
"""


async def honest_clients(url: str, clients: int, stop: float, phase: Phase) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HONEST, url, str(TEST_WAV), str(clients),
        str(stop - time.monotonic()), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for line in (await process.communicate())[0].decode().split("\n"):
        if line.strip():
            outcome, seconds = line.split()
            if outcome == "ok":
                phase.honest.append(float(seconds))
            else:
                phase.honest_errors[outcome] += 1


async def bomb_client(url: str, bombs: list[tuple[str, bytes]], stop: float, phase: Phase):
    import httpx

    async with httpx.AsyncClient(timeout=120) as http:
        while time.monotonic() < stop:
            for name, data in bombs:
                try:
                    r = await http.post(
                        f"{url}/v1/audio/transcriptions", files={"file": (name, data)}
                    )
                    phase.attack[f"bomb {name}: {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    phase.attack[f"bomb {name}: {type(exc).__name__}"] += 1


async def options_client(url: str, audio: bytes, stop: float, phase: Phase) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=120) as http:
        while time.monotonic() < stop:
            for path, field, data in (
                ("/v1/transcribe", "audio", {"beam_size": "1500"}),
                ("/v1/audio/transcriptions", "file", {"prompt": "好" * 100_000}),
            ):
                try:
                    r = await http.post(f"{url}{path}", files={field: ("a.wav", audio)}, data=data)
                    phase.attack[f"options {path}: {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    phase.attack[f"options {path}: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.2)


async def idle_socket(host: str, port: int, half: bool, stop: float, phase: Phase) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            phase.attack["idle: connect refused"] += 1
            await asyncio.sleep(1)
            continue
        try:
            if half:
                writer.write(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: " + host.encode())
            while time.monotonic() < stop:
                wait = 1.0 if half else stop - time.monotonic()  # half: a byte a second
                try:
                    if await asyncio.wait_for(reader.read(1024), max(wait, 0.01)) == b"":
                        phase.attack["idle: closed by the server"] += 1
                        break
                except asyncio.TimeoutError:
                    if half:
                        writer.write(b"x")
        except OSError:
            phase.attack["idle: reset by the server"] += 1
        finally:
            writer.close()
        await asyncio.sleep(1)


async def slow_body(host: str, port: int, stop: float, phase: Phase) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
                         "Content-Type: multipart/form-data; boundary=b\r\n"
                         "Content-Length: 10000000\r\n\r\n--b\r\n".encode())  # fmt: skip
            answer = b""
            while time.monotonic() < stop:
                writer.write(b"x" * 100)
                try:
                    answer += await asyncio.wait_for(reader.read(4096), 1.0)
                except asyncio.TimeoutError:
                    continue
                if answer.startswith(b"HTTP/") or not answer:
                    break
            if answer.startswith(b"HTTP/"):
                status = answer[9:12].decode()
            else:
                status = "still sending at the end" if time.monotonic() >= stop else "closed"
            phase.attack[f"slow body: {status}"] += 1
            writer.close()
        except OSError:
            phase.attack["slow body: reset"] += 1
        await asyncio.sleep(0.5)


# /health is probed from a process of its own, so that the attackers' event loop here
# does not delay the probe: one fresh connection a second, one line per probe
PROBE = """
import sys, time, urllib.request
url, stop = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < stop:
    start = time.monotonic()
    try:
        ok = urllib.request.urlopen(url + "/health", timeout=10).status == 200
    except Exception:
        ok = False
    print(f"{ok:d} {time.monotonic() - start:.3f}", flush=True)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
"""


async def watch(url: str, pid: int, stop: float, phase: Phase) -> None:
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, url, str(stop - time.monotonic()),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    while time.monotonic() < stop:
        phase.rss_peak = max(phase.rss_peak, rss_mb(pid))
        await asyncio.sleep(0.2)
    for line in (await probe.communicate())[0].decode().split("\n"):
        if line.strip():
            ok, seconds = line.split()
            phase.health.append(float(seconds))
            phase.health_errors += ok != "1"


async def run_phase(args, url: str, pid: int, attack: bool, bombs, audio: bytes) -> Phase:
    phase = Phase()
    stop = time.monotonic() + args.seconds
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()
    tasks = [honest_clients(url, args.honest, stop, phase)]
    tasks.append(watch(url, pid, stop, phase))
    if attack:
        tasks.append(bomb_client(url, bombs, stop, phase))
        tasks.append(options_client(url, audio, stop, phase))
        tasks += [slow_body(host, int(port), stop, phase) for _ in range(args.slow)]
        tasks += [idle_socket(host, int(port), i % 5 == 0, stop, phase) for i in range(args.idle)]
    await asyncio.gather(*tasks)
    return phase


def report(name: str, phase: Phase, seconds: float, log_growth: int) -> None:
    served = len(phase.honest)
    lat = sorted(phase.honest)
    errors = sum(phase.honest_errors.values())
    print(f"\n== {name} ({seconds:.0f} s)")
    print(f"honest clients: {served} served ({served / seconds:.2f}/s), {errors} errors "
          f"{dict(phase.honest_errors) or ''}; latency p50 {lat[len(lat) // 2] if lat else 0:.2f} s, "
          f"max {lat[-1] if lat else 0:.2f} s")  # fmt: skip
    print(f"/health: worst {max(phase.health, default=0):.3f} s over {len(phase.health)} probes, "
          f"{phase.health_errors} failed")  # fmt: skip
    print(f"server RSS peak: {phase.rss_peak:.0f} MB; log grew {log_growth} bytes "
          f"({log_growth / seconds * 60 / 1024:.1f} KiB/min)")  # fmt: skip
    for key, count in sorted(phase.attack.items()):
        print(f"  attacker {key}: {count}")


FEATURES = """
import io, resource, sys, threading, time
import numpy as np, soundfile as sf
from whisper_finetune.inference.loader import load_transcriber
from whisper_finetune.inference.transcript import DecodeOptions
from whisper_finetune.serving import decode
mode, minutes = sys.argv[1], float(sys.argv[2])
transcriber = load_transcriber("embedded:whisper-base", "ct2", compute_type="int8")
noise = np.random.default_rng(0).standard_normal(int(minutes * 60 * 16000))
buffer = io.BytesIO()
sf.write(buffer, (0.001 * noise).astype(np.float32), 16000, format="FLAC")
del noise
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, options = time.monotonic(), DecodeOptions(language="zh")
job = decode.Job(buffer, "long.flac", options, max_seconds=minutes * 60 + 1)
if mode == "whole":
    segments, _ = transcriber.stream(decode.read_samples(job), options)
    list(segments)
else:
    decode.run(transcriber, job, threading.Event())
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(f"{mode}: {peak:.0f} MB above the loaded model, {time.monotonic() - start:.1f} s")
"""


def measure_features(minutes: float) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    print(f"== {minutes:g} min of audio, peak RSS of the transcription")
    for mode in ("whole", "pieces"):
        done = subprocess.run([sys.executable, "-c", FEATURES, mode, str(minutes)], env=env,
                              capture_output=True, text=True)  # fmt: skip
        print(done.stdout.strip() or done.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each phase")
    parser.add_argument("--honest", type=int, default=4)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--serve_args", nargs="*", default=[], help="extra flags for serve")
    parser.add_argument("--features_minutes", type=float, default=0.0,
                        help="first compare whole-file and piecewise features on this much audio")  # fmt: skip
    args = parser.parse_args()
    if args.features_minutes > 0:
        measure_features(args.features_minutes)
    if args.seconds <= 0:
        return

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this side holds the sockets
    started = time.monotonic()
    bombs = [
        ("bomb-10h.flac", flac_of_silence(10 * 3600)),
        ("bomb-90min.aac", aac_of_silence(5400)),
    ]
    print(f"bombs: {', '.join(f'{n} {len(d) / 1024:.0f} KiB' for n, d in bombs)} "
          f"(made in {time.monotonic() - started:.0f} s)")  # fmt: skip
    audio = TEST_WAV.read_bytes()
    log = Path(tempfile.mkstemp(prefix="serve_abuse_", suffix=".log")[1])
    process, url = start_server(args, log)
    try:
        print(
            f"server {url} (pid {process.pid}), log {log}; RSS at start {rss_mb(process.pid):.0f} MB"
        )
        for name, attack in (("quiet: honest clients alone", False),
                             ("attack: the same clients beside the abuse", True)):  # fmt: skip
            size = log.stat().st_size
            phase = asyncio.run(run_phase(args, url, process.pid, attack, bombs, audio))
            report(name, phase, args.seconds, log.stat().st_size - size)
        time.sleep(3)
        print(f"\nRSS after the attack: {rss_mb(process.pid):.0f} MB; server still up: "
              f"{process.poll() is None}")  # fmt: skip
        status = Path(f"/proc/{process.pid}/status").read_text()
        print("peak RSS of the process (VmHWM):",
              int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) // 1024, "MB")  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
