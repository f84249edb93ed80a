"""Long audio's VAD chunks decoded one batch at a time (issue 27.10) against four batches
at a time (before): speed, text and how often the progress bar moves, side by side.

One batch per group lets the bar move after every batch; a group of four batches let a
batch's early-ending chunks be decoded again together with other groups' (fuller
batches). This measures what the finer progress costs: the 346 s recording of
``benchmarks/long_audio.py`` (the 40 real-zh-dev clips end to end), CTranslate2 int8
whisper-base, ``--language=zh``, the CPU defaults of ``infer`` (VAD chunks, the long-audio
batch), 2 threads. The rows alternate, ``--rounds`` times each; the fastest round is kept.

    nice -n 5 python benchmarks/chunk_groups.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import inspect
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _variant(batches_per_group: int):
    """``transcribe_chunked`` with ``batches_per_group`` batches decoded per group."""
    from whisper_finetune.inference import chunks

    source = inspect.getsource(chunks.transcribe_chunked)
    assert "group = batch_size" in source, "transcribe_chunked changed: update this benchmark"
    source = source.replace("group = batch_size", f"group = {batches_per_group} * batch_size")
    namespace = dict(vars(chunks))
    exec(compile(source, chunks.__file__, "exec"), namespace)  # noqa: S102 (our own source)
    return namespace["transcribe_chunked"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from contextlib import contextmanager

    from long_audio import errors_per_clip, recording

    from whisper_finetune.inference import chunks
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    rec = recording()
    transcriber = load_transcriber("embedded:whisper-base", "ct2", "cpu", "int8", cpu_threads=2)
    options = DecodeOptions(language="zh")
    batch = transcriber._batch_size(rec.audio, options)
    moves: dict[int, int] = {}

    def counting(group: int):
        @contextmanager
        def bar(duration, enabled=True):
            class Bar:
                n = 0.0

                def update(self, step):
                    self.n += step
                    moves[group] = moves.get(group, 0) + (step > 0)

            yield Bar()

        return bar

    rows = {group: _variant(group) for group in (1, 4)}
    best: dict[int, float] = {}
    texts: dict[int, str] = {}
    for _ in range(args.rounds):
        for group, run in rows.items():
            moves[group] = 0
            run.__globals__["progress_bar"] = counting(group)
            start = time.perf_counter()
            out = run(rec.audio, options, transcriber._unpadded, batch, True, transcriber.replicas)
            best[group] = min(best.get(group, float("inf")), time.perf_counter() - start)
            texts[group] = out.text
    print(
        f"{platform.processor() or platform.machine()}, {rec.seconds:.0f} s of audio, batch {batch}"
    )
    for group in rows:
        cer, _ = errors_per_clip(rec, texts[group])
        print(
            f"{group} batch(es) per group: {best[group]:6.1f} s (RTF {best[group] / rec.seconds:.3f}), "
            f"CER {cer:.4f}, progress moves {moves[group]}"
        )
    print(f"time ratio 1/4: {best[1] / best[4]:.3f}; same text: {texts[1] == texts[4]}")
    del chunks


if __name__ == "__main__":
    main()
