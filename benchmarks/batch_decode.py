"""How much a CTranslate2 batch saves on this machine, and where its time goes.

Decodes N copies of one clip (default ``test.wav``) in one ``transcribe_batch`` call, for
each N, side by side in one process (the server's decode of N concurrent requests,
without HTTP), and prints wall seconds per clip, audio seconds per second, the ratio to
N = 1, and the encoder's share of the wall time (faster-whisper's ``encode`` timed).
On a CPU the encoder (a whole 30 s window per clip, whatever the clip's length) grows
with the batch; only the decoder's steps are shared.

Usage::

    python benchmarks/batch_decode.py --sizes 1 2 4 8 --repeats 3
"""

from __future__ import annotations

import argparse
import time

from whisper_finetune import assets
from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
from whisper_finetune.inference.loader import load_transcriber
from whisper_finetune.inference.transcript import DecodeOptions


class EncodeClock:
    """Wall seconds spent in faster-whisper's ``WhisperModel.encode`` while installed."""

    def __init__(self) -> None:
        from faster_whisper.transcribe import WhisperModel

        self.seconds = 0.0
        self._cls, self._encode = WhisperModel, WhisperModel.encode

        def timed(model, features):
            start = time.perf_counter()
            try:
                return self._encode(model, features)
            finally:
                self.seconds += time.perf_counter() - start

        WhisperModel.encode = timed

    def close(self) -> None:
        self._cls.encode = self._encode


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", default=str(assets.test_wav()))
    parser.add_argument("--model_path", default="embedded:whisper-base")
    parser.add_argument("--compute_type", default="int8")
    parser.add_argument("--language", default="zh")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per size (best kept)")
    args = parser.parse_args(argv)
    clip = load_audio(args.audio)
    seconds = clip.size / SAMPLE_RATE
    transcriber = load_transcriber(args.model_path, "ct2", compute_type=args.compute_type)
    options = DecodeOptions(language=args.language)
    transcriber.transcribe_batch([clip, clip], options, batch_size=2)  # warm up both paths
    clock, rows = EncodeClock(), []
    try:
        for n in args.sizes:
            best = None
            for _ in range(args.repeats):
                clock.seconds = 0.0
                start = time.perf_counter()
                transcriber.transcribe_batch([clip] * n, options, batch_size=n)
                wall = time.perf_counter() - start
                if best is None or wall < best[0]:
                    best = (wall, clock.seconds)
            wall, encode = best
            rows.append({"clips": n, "wall_s": wall, "encode_s": encode,
                         "audio_s_per_s": n * seconds / wall})  # fmt: skip
    finally:
        clock.close()
    one = rows[0]["audio_s_per_s"]
    print(f"{seconds:.2f} s clip, ct2 {args.compute_type}, greedy, {args.language}")
    print(
        f"{'clips':>5} {'wall s':>7} {'s/clip':>7} {'audio s/s':>9} {'vs first':>8} {'encoder':>7}"
    )
    for r in rows:
        print(
            f"{r['clips']:>5} {r['wall_s']:>7.2f} {r['wall_s'] / r['clips']:>7.3f} "
            f"{r['audio_s_per_s']:>9.1f} {r['audio_s_per_s'] / one:>7.2f}x "
            f"{r['encode_s'] / r['wall_s']:>7.0%}"
        )
    return rows


if __name__ == "__main__":
    main()
