"""Live streams on ``/v1/realtime``: latency, and how many streams the server keeps up with.

Each stream is one ``websockets`` client sending distinct real Mandarin clips (the 40 of
``real-zh-dev``, two per stream, 1.5 s of silence after each) as 24 kHz PCM16 in 100 ms
chunks at the speed of speech, with server VAD. For each number of streams it prints,
over all the turns:

- **first partial**: from the moment the first speech of a turn was sent (where the
  server's VAD heard it: ``speech_started``'s ``audio_start_ms`` plus the 300 ms of
  lead-in it includes) to its first text of any kind: the tentative
  ``...transcription.partial`` event (the streams ask for ``partials`` unless
  ``--partials off``), else a delta, else its ``completed`` transcript;
- **first committed**: from the same moment to the turn's first
  ``...transcription.delta`` (text agreed by two decodes, never changed afterwards);
- **commit**: from the moment the end of the turn's speech was sent to its
  ``...transcription.completed`` (this includes the server VAD's 500 ms of silence);
- **CER live / whole**: the live transcripts against the references, and the same audio
  posted whole to ``/v1/audio/transcriptions`` (the goal: live within 0.02 of whole);
- whether the streams kept up in real time (every turn completed within
  ``--keep_up`` seconds of its speech's end);
- the server's CPU seconds per second of audio streamed (all of it, silence included):
  on a shared machine the load-independent cost of a stream.

By default it starts its own server (ct2 int8, the embedded whisper-base, ``--language
zh``); it is a measurement, not a test: run it with ``nice`` on a shared machine.

    python benchmarks/realtime_load.py --streams 1 2 4 8
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import cpu_seconds, percentile, start_server  # noqa: E402

SILENCE_AFTER = 1.5  # seconds of silence after each clip
CHUNK = 0.1


def load_clips():
    from whisper_finetune.assets import real_zh_dev_manifest
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.inference.base import speech_regions

    manifest = real_zh_dev_manifest()
    clips = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            samples = load_audio(manifest.parent / record["audio"]["path"])
            regions = speech_regions(samples)
            clips.append((samples, record["sentence"], regions[0][0], regions[-1][1]))
    return clips


async def one_stream(url: str, clips, headers: dict, partials: bool = True) -> list[dict]:
    """Stream the clips; per turn: first-partial and commit latency, transcript."""
    import websockets

    from whisper_finetune.data.codec import resample

    audio, turns, position = [], [], 0.0
    for samples, reference, start, end in clips:
        turns.append({"reference": reference, "speech_start": position + start,
                      "speech_end": position + end})  # fmt: skip
        audio.append(samples)
        audio.append(np.zeros(int(SILENCE_AFTER * 16000), np.float32))
        position += samples.size / 16000 + SILENCE_AFTER
    joined = np.concatenate(audio)
    pcm = (np.clip(resample(joined, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()
    step = int(24000 * CHUNK) * 2
    sent_at: list[float] = []  # wall time at which each chunk was sent
    items: dict[str, dict] = {}
    order: list[str] = []
    expect: list[int] = []  # the number of items once the last one is committed
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {
            "input_audio_transcription": {"language": "zh", "partials": partials}}}))  # fmt: skip

        async def read():
            async for message in ws:
                event, now = json.loads(message), time.monotonic()
                kind, item = event["type"], event.get("item_id")
                if kind == "input_audio_buffer.committed":
                    order.append(item)
                if kind == "input_audio_buffer.speech_started":
                    items.setdefault(item, {})["speech_start"] = (
                        event["audio_start_ms"] / 1000 + 0.3
                    )
                if kind == "input_audio_buffer.speech_stopped":
                    items.setdefault(item, {})["speech_end"] = event["audio_end_ms"] / 1000
                if kind.endswith("transcription.delta"):
                    items.setdefault(item, {}).setdefault("first_delta", now)
                if kind.endswith("transcription.partial") and event["transcript"]:
                    items.setdefault(item, {}).setdefault("first_partial", now)
                    items[item].setdefault("first_partial_text", event["transcript"])
                if kind.endswith("transcription.completed"):
                    items.setdefault(item, {}).update(done=now, text=event["transcript"])
                    if (
                        expect
                        and len(order) >= expect[0]
                        and all("done" in items.get(i, {}) for i in order)
                    ):
                        return
                if kind == "error":
                    raise RuntimeError(f"error event: {event['error']}")

        reader = asyncio.create_task(read())
        start = time.monotonic()
        for i in range(0, len(pcm), step):
            chunk = base64.b64encode(pcm[i : i + step]).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            sent_at.append(time.monotonic())
            await asyncio.sleep(max(0.0, start + len(sent_at) * CHUNK - time.monotonic()))
        expect.append(len(order) + 1)  # the item of this commit (the trailing silence)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await asyncio.wait_for(reader, 300)

    def first_text(item: dict) -> float:  # a partial, else a delta, else the completed text
        return min(item.get("first_partial", item["done"]), item.get("first_delta", item["done"]))

    def sent(second: float) -> float:  # when the chunk holding that second of audio left
        return sent_at[min(len(sent_at) - 1, int(second / CHUNK))]

    # the stream's live transcript: every item's, in order (the VAD may cut a sentence in
    # two at a pause); the latencies: per item, from the audio where the VAD heard speech
    turns[0]["text"] = "".join(items[i].get("text", "") for i in order)
    for turn in turns[1:]:
        turn["text"] = ""
    spoken = [items[i] for i in order if "speech_start" in items[i] and "done" in items[i]]
    turns[0]["latency"] = [
        (first_text(item) - sent(item["speech_start"]) if partials else None,
         item.get("first_delta", item["done"]) - sent(item["speech_start"]),
         item["done"] - sent(item["speech_end"]))
        for item in spoken if "speech_end" in item
    ]  # fmt: skip
    turns[0]["first_texts"] = [item.get("first_partial_text", "") for item in spoken]
    turns[0]["audio"] = joined
    return turns


async def whole(url: str, audio: np.ndarray, headers: dict) -> str:
    """The stream's audio posted in one request: the transcript to match."""
    import io
    import wave

    import httpx

    buffer = io.BytesIO()
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm.tobytes())
    async with httpx.AsyncClient(timeout=600) as http:
        r = await http.post(url + "/v1/audio/transcriptions", headers=headers,
                            files={"file": ("s.wav", buffer.getvalue(), "audio/wav")},
                            data={"language": "zh"})  # fmt: skip
        r.raise_for_status()
        return r.json()["text"]


def cer(references: list[str], hypotheses: list[str]) -> float:
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    return score([normalize_text(r) for r in references], [normalize_text(h) for h in hypotheses],
                 "cer")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--clips_per_stream", type=int, default=2)
    parser.add_argument("--keep_up", type=float, default=3.0,
                        help="a turn completed later than this after its speech: not real time")  # fmt: skip
    parser.add_argument("--url", default=None, help="an existing server; default: start one")
    parser.add_argument("--api_key", default=None)
    parser.add_argument("--model_path", default="embedded:whisper-base")
    parser.add_argument("--backend", default="ct2")
    parser.add_argument("--compute_type", default="int8")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max_queue", type=int, default=8)
    parser.add_argument("--language", default="zh")
    parser.add_argument("--partials", choices=["on", "off"], default="on",
                        help="ask for tentative text events (off: OpenAI's events only)")  # fmt: skip
    parser.add_argument("--show", action="store_true", help="print each turn's text and reference")
    args = parser.parse_args()
    clips = load_clips()
    process, url = None, args.url
    if url is None:
        process, url, log = start_server(args)
        print(f"server: {url}; log {log}")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    ws_url = url.replace("http://", "ws://") + "/v1/realtime"
    print("| streams | items | first partial p50 / p95 s | first committed p50 / p95 s | "
          "commit p50 / p95 s | CER live | CER whole | real time | server CPU s / stream s |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |")
    try:
        used = 0
        for streams in args.streams:
            groups = []
            for _ in range(streams):
                groups.append(
                    [clips[(used + k) % len(clips)] for k in range(args.clips_per_stream)]
                )
                used += args.clips_per_stream

            async def run_all(groups=groups):
                return await asyncio.gather(
                    *(one_stream(ws_url, g, headers, args.partials == "on") for g in groups)
                )

            cpu = cpu_seconds(process)
            results = asyncio.run(run_all())
            streamed = sum(r[0]["audio"].size / 16000 for r in results)
            cpu = (cpu_seconds(process) - cpu) / streamed  # server CPU s per second streamed
            wholes = [asyncio.run(whole(url, r[0]["audio"], headers)) for r in results]
            refs = ["".join(t["reference"] for t in r) for r in results]
            live = ["".join(t["text"] for t in r) for r in results]
            if args.show:
                for ref, text, w, r in zip(refs, live, wholes, results, strict=True):
                    print(f"    ref:   {ref}\n    live:  {text}\n    whole: {w}\n"
                          f"    first partials: {' / '.join(r[0]['first_texts'])}")  # fmt: skip
            latency = [row for r in results for row in r[0]["latency"]]
            partials, firsts, commits = ([row[k] for row in latency] for k in range(3))
            kept_up = bool(commits) and max(commits) <= args.keep_up
            shown = [p for p in partials if p is not None]  # None: partials not asked for
            shown = f"{percentile(shown, 50):.2f} / {percentile(shown, 95):.2f}" if shown else "-"
            print(f"| {streams} | {len(latency)} | {shown} | {percentile(firsts, 50):.2f} / "
                  f"{percentile(firsts, 95):.2f} | {percentile(commits, 50):.2f} / "
                  f"{percentile(commits, 95):.2f} | {cer(refs, live):.3f} | "
                  f"{cer(refs, wholes):.3f} | {'yes' if kept_up else 'no'} | {cpu:.3f} |", flush=True)  # fmt: skip
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
