"""Word-timestamp error at sentence boundaries, before and after ``alignment-heads``.

For each model given: a copy is converted to CTranslate2 (float32); the error (mean
|predicted - known| of every sentence's start and end, in seconds) is measured on the
held-out half of the timed records with the model's current alignment heads, through
transformers (our DTW, as openai-whisper's) and through CTranslate2's ``align`` (what
faster-whisper's ``word_timestamps`` uses); then the heads are chosen on the other half
(:func:`whisper_finetune.evaluation.heads.update_alignment_heads`, forced), written into
both forms, and the error measured again on the same held-out half. The timed records'
sentence spans are known from packing (``prepare pack``): a window's sentences are the
packed clips, whose spans include each clip's own leading and trailing silence;
``--trim`` shrinks each span to where the audio has speech energy first.

    python benchmarks/alignment_heads.py --data packed.jsonl --models embedded:whisper-base \\
        models/base-zh --output docs/alignment-heads.json

whisper.cpp is not measured: pywhispercpp does not expose the DTW parameters.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from whisper_finetune.demo.demo import cpu_model


def trimmed_manifest(data: str, out: Path, max_records: int) -> str:
    """The timed records with each sentence span shrunk to where its audio has speech
    energy (20 ms frames above 1/20 of the span's loudest frame's RMS, about -26 dB): a
    packed clip's span includes the clip's own leading and trailing silence."""
    from dataclasses import replace

    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
    from whisper_finetune.data.manifest import TimedText, write_manifest
    from whisper_finetune.evaluation.heads import timed_records

    hop = SAMPLE_RATE // 50
    records = []
    for record in timed_records(data, max_records):
        wave = load_audio(record.audio_path, record.start_time, record.end_time)
        spans = []
        for s in record.sentences:
            a, b = int(s.start * SAMPLE_RATE), min(int(s.end * SAMPLE_RATE), wave.size)
            frames = wave[a : a + (b - a) // hop * hop].reshape(-1, hop)
            rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
            loud = np.flatnonzero(rms > rms.max() / 20)
            start = s.start + loud[0] * hop / SAMPLE_RATE
            end = s.start + (loud[-1] + 1) * hop / SAMPLE_RATE
            spans.append(TimedText(round(start, 2), round(end, 2), s.text))
        records.append(replace(record, sentences=tuple(spans)))
    write_manifest(records, out)
    return str(out)


def measure(model: str, data: str, max_records: int, work: Path) -> dict:
    from whisper_finetune.evaluation.alignment import boundary_mae, ct2_boundary_mae
    from whisper_finetune.evaluation.heads import timed_records, update_alignment_heads
    from whisper_finetune.models.convert import convert_to_ct2
    from whisper_finetune.models.modelcard import read_facts, write_converted_facts
    from whisper_finetune.models.resolve import resolve_model

    src = Path(resolve_model(model))
    copy = work / "model"
    shutil.copytree(src, copy)
    ct2 = convert_to_ct2(copy, work / "ct2", quantization="float32", verify=False)
    records = timed_records(data, max_records)
    check = records[1::2]
    language = read_facts(copy).language or "zh"
    row: dict = {"model": model, "records_choose": len(records[0::2]), "records_check": len(check)}
    start = time.perf_counter()
    row["heads_before"] = [list(h) for h in read_facts(copy).alignment_heads or []]
    row["mae_s_transformers_before"] = boundary_mae(copy, check, language=language, parts=True)
    row["mae_s_ct2_before"] = ct2_boundary_mae(ct2, check, language=language, parts=True)
    choice = update_alignment_heads(
        copy, data, language=language, max_records=max_records, force=True
    )
    write_converted_facts(ct2, choice.heads)
    row["heads_after"] = [list(h) for h in choice.heads]
    row["would_write"] = choice.better
    row["mae_s_transformers_after"] = boundary_mae(copy, check, language=language, parts=True)
    row["mae_s_ct2_after"] = ct2_boundary_mae(ct2, check, language=language, parts=True)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="manifest with timed sentences")
    parser.add_argument("--models", nargs="+", default=["embedded:whisper-base"])
    parser.add_argument("--max_records", type=int, default=16)
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument(
        "--trim", action="store_true", help="shrink each sentence span to its speech energy"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    rows = []
    keep = tempfile.TemporaryDirectory()
    source = args.data
    if args.trim:
        args.data = trimmed_manifest(args.data, Path(keep.name) / "trimmed.jsonl", args.max_records)
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(model, args.data, args.max_records, Path(tmp)))
        r = rows[-1]
        print(
            f"{model}: sentence starts, transformers "
            f"{r['mae_s_transformers_before']['start']:.3f} -> "
            f"{r['mae_s_transformers_after']['start']:.3f} s, ct2 "
            f"{r['mae_s_ct2_before']['start']:.3f} -> {r['mae_s_ct2_after']['start']:.3f} s "
            f"({r['records_check']} held-out windows)",
            flush=True,
        )
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {platform.system()} {platform.machine()}",
        "command": "python " + " ".join(sys.argv),
        "data": source,
        "trimmed_to_speech": args.trim,
        "rows": rows,
    }
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
