"""Manifests at scale: lazy records equal eager ones, the validation cache is written by
``prepare validate``, reused by training and dropped when the manifest changes; and the
inputs that used to pass silently (empty manifests, non-UTF-8 text, a tokenizer that does
not load, a truncated WAV) are errors or reported problems."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from finetune_data import tone

from whisper_finetune.cli import main
from whisper_finetune.data import records as records_module  # where prepare_records decodes
from whisper_finetune.data.audio import SAMPLE_RATE, write_wav
from whisper_finetune.data.checkcache import CheckCache, cache_path
from whisper_finetune.data.dataset import LabelBuilder, prepare_records
from whisper_finetune.data.manifest import (
    Manifest,
    ManifestError,
    parse_record,
    read_manifest,
)
from whisper_finetune.data.recipes.validate import ValidateConfig, validate_manifest

N_FILES = 40  # enough for validate to start two worker processes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 short wavs; a manifest with whole files, slices, a blank line and CRLF endings."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(N_FILES):
        write_wav(folder / "audio" / f"c{i}.wav", tone(1.0 + (i % 5) * 0.25, 200 + 10 * i, i))
    lines = []
    for i in range(N_FILES):
        rec = {"audio": {"path": f"audio/c{i}.wav"}, "sentence": f"第{i}句", "language": "zh"}
        rec["duration"] = 1.0 + (i % 5) * 0.25
        if i % 3 == 0:
            rec["audio"].update(start_time=0.25, end_time=0.95)
            rec["duration"] = 0.7
        lines.append(json.dumps(rec, ensure_ascii=False))
    lines.insert(7, "   ")  # a blank line: line numbers must still be the file's
    text = "\r\n".join(lines[:20]) + "\r\n" + "\n".join(lines[20:]) + "\n"
    path = folder / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # with a BOM
    return path


def _eager(path: Path) -> list:
    """The records as the previous, eager reader built them."""
    text = path.read_text(encoding="utf-8-sig")
    out = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            out.append(parse_record(json.loads(line), f"{path}:{lineno}", path.parent))
    return out


def test_lazy_records_equal_eager_ones(corpus):
    eager = _eager(corpus)
    lazy = read_manifest(corpus)
    assert isinstance(lazy, Manifest)
    assert len(lazy) == len(eager) == N_FILES
    assert lazy == eager and list(lazy) == eager
    assert [r.origin for r in lazy] == [r.origin for r in eager]  # line numbers kept
    assert lazy[7].origin.endswith(":9")  # after the blank line 8
    assert lazy[-1] == eager[-1] and lazy[5:9] == eager[5:9]
    picked = lazy.select([3, 30, 3])
    assert list(picked) == [eager[3], eager[30], eager[3]]
    again = pickle.loads(pickle.dumps(lazy[10:]))  # what a DataLoader worker receives
    assert list(again) == eager[10:]
    # a few bytes per record: offsets, lengths and the line numbers (there is a blank line)
    assert lazy.nbytes() <= 20 * len(lazy)
    assert len(pickle.dumps(lazy)) < 40 * len(lazy) + 1000


@pytest.fixture(scope="module")
def labels(tiny_model_dir):
    from transformers import WhisperTokenizerFast

    return LabelBuilder(WhisperTokenizerFast.from_pretrained(tiny_model_dir))


def _copy(corpus: Path, folder: Path) -> Path:
    """The corpus manifest beside the audio, under a new name (a cache of its own)."""
    path = corpus.parent / f"{folder.name}.jsonl"
    path.write_bytes(corpus.read_bytes())
    cache_path(path).unlink(missing_ok=True)
    return path


def test_validate_writes_the_cache_and_training_reuses_it(corpus, labels, tmp_path, monkeypatch):
    manifest = _copy(corpus, tmp_path)
    decoded, _ = prepare_records(read_manifest(manifest), labels)  # no cache: decodes
    one = validate_manifest(ValidateConfig(manifest=str(manifest), workers=1))
    assert one.ok and one.records == N_FILES
    assert cache_path(manifest).is_file()
    two = validate_manifest(ValidateConfig(manifest=str(manifest), workers=2))
    assert two.problems == one.problems
    cache = CheckCache.load(manifest)
    assert len(cache) == N_FILES and cache.decoded and cache.malformed == 0

    def no_decoding(*args, **kwargs):
        raise AssertionError("prepare_records decoded audio despite a valid cache")

    monkeypatch.setattr(records_module, "load_audio", no_decoding)
    records = read_manifest(manifest)
    kept, report = prepare_records(records, labels, min_duration=1.1)
    # the same durations as decoding: the 0.70 s slices and the 1.00 s files are too short
    too_short = {s.origin for s in report.skipped if s.reason == "too_short"}
    expected = {r.origin for r in records if r.duration < 1.1}
    assert len(expected) == 14 + 5  # i % 3 == 0, and i % 5 == 0 among the rest
    assert too_short == expected and report.kept == N_FILES - len(expected)
    assert isinstance(kept, Manifest)  # still lazy: a view of the kept lines
    all_kept, _ = prepare_records(records, labels)
    assert list(all_kept) == list(decoded)


def test_a_header_only_check_keeps_a_decoded_cache(corpus, tmp_path):
    manifest = _copy(corpus, tmp_path)
    validate_manifest(ValidateConfig(manifest=str(manifest), workers=1))
    validate_manifest(ValidateConfig(manifest=str(manifest), workers=1, decode=False))
    assert CheckCache.load(manifest).decoded


def test_a_changed_manifest_does_not_use_the_cache(corpus, labels, tmp_path, monkeypatch):
    manifest = _copy(corpus, tmp_path)
    validate_manifest(ValidateConfig(manifest=str(manifest), workers=1))
    assert CheckCache.load(manifest) is not None
    # same size, other content: line 2 now points at another (shorter) file
    text = manifest.read_text(encoding="utf-8-sig").replace("c1.wav", "c5.wav", 1)
    manifest.write_text(text, encoding="utf-8")
    assert CheckCache.load(manifest) is None
    calls = []
    real = records_module.load_audio
    monkeypatch.setattr(records_module, "load_audio", lambda *a, **k: calls.append(a) or real(*a))
    prepare_records(read_manifest(manifest), labels)
    assert calls  # decoded again


def test_the_cache_records_bad_audio_and_training_reports_it(tmp_path, labels):
    write_wav(tmp_path / "ok.wav", tone(1.5, 300))
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"audio": {"path": "ok.wav"}, "sentence": "好"},
        {"audio": {"path": "bad.wav"}, "sentence": "坏"},
        {"audio": {"path": "ok.wav", "start_time": 4.0, "end_time": 5.0}, "sentence": "外"},
    ]
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert not validate_manifest(ValidateConfig(manifest=str(manifest), workers=1)).ok
    kept, report = prepare_records(read_manifest(manifest), labels, skip_bad=True)
    assert len(kept) == 1
    assert [(s.origin.rsplit(":", 1)[1], s.reason) for s in report.skipped] == [
        ("2", "bad_audio"),
        ("3", "bad_audio"),
    ]
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: .*does not decode"):
        prepare_records(read_manifest(manifest), labels)


# ------------------------------------------------------------ issue 10: items 4, 5, 7, 11


@pytest.mark.parametrize("content", ["", "\n\n   \n", "[]"], ids=["empty", "blank", "list"])
def test_an_empty_manifest_is_an_error(tmp_path, content, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=r"empty\.jsonl: the manifest holds no records"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="no records"):
        validate_manifest(ValidateConfig(manifest=str(path)))
    assert main(["prepare", "validate", str(path)]) == 1
    out = capsys.readouterr()
    assert "OK" not in out.out and "no records" in out.err
    # evaluate reads the manifest before it loads any model
    assert main(["evaluate", f"--test_data={path}", "--model_path=/nowhere"]) == 1
    assert "no records" in capsys.readouterr().err


def test_finetune_on_an_empty_manifest_is_an_error(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    code = main(
        [
            "finetune",
            f"--base_model={tiny_model_dir}",
            f"--train_data={path}",
            f"--output_dir={tmp_path / 'out'}",
            "--max_steps=1",
            "--report_to",
            "none",
        ]
    )
    assert code == 1
    assert "no records" in capsys.readouterr().err


def test_a_manifest_that_is_not_utf8_names_the_file_and_line(tmp_path):
    good = json.dumps({"audio": {"path": "a.wav"}, "sentence": "你好"}, ensure_ascii=False)
    bad = good.replace("你好", "再见")
    path = tmp_path / "gbk.jsonl"
    path.write_bytes((good + "\n\n").encode("utf-8") + bad.encode("gbk") + b"\n")
    with pytest.raises(ManifestError, match=r"gbk\.jsonl:3: not UTF-8 text \(byte 0x"):
        read_manifest(path)
    listed = tmp_path / "gbk.json"
    listed.write_bytes(b"[\n" + good.encode() + b",\n" + bad.encode("gbk") + b"\n]\n")
    with pytest.raises(ManifestError, match=r"gbk\.json:3: not UTF-8"):
        read_manifest(listed)
    result = validate_manifest(ValidateConfig(manifest=str(path), cache=False))
    assert [(p.line, p.field) for p in result.problems if "UTF-8" in p.message] == [(3, "record")]


def test_validate_with_a_tokenizer_that_does_not_load_is_an_error(tmp_path, capsys):
    write_wav(tmp_path / "a.wav", tone(1.0, 300))
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"audio": {"path": "a.wav"}, "sentence": "你" * 300}) + "\n", encoding="utf-8"
    )
    no_tokenizer = tmp_path / "model"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="cannot load the tokenizer"):
        validate_manifest(ValidateConfig(manifest=str(path), tokenizer=str(no_tokenizer)))
    assert main(["prepare", "validate", str(path), f"--tokenizer={no_tokenizer}"]) == 1
    captured = capsys.readouterr()
    assert "OK" not in captured.out and "cannot load the tokenizer" in captured.err


def test_validate_reports_a_truncated_wav(tmp_path):
    whole = write_wav(tmp_path / "whole.wav", np.full(round(8.4 * SAMPLE_RATE), 0.1, np.float32))
    (tmp_path / "short.wav").write_bytes(whole.read_bytes()[: 44 + round(3.1 * SAMPLE_RATE) * 2])
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"audio": {"path": "short.wav"}, "sentence": "你好", "duration": 3.1}) + "\n",
        encoding="utf-8",
    )
    result = validate_manifest(ValidateConfig(manifest=str(path)))
    (problem,) = result.problems
    assert (problem.line, problem.field) == (1, "audio.path")
    assert "truncated" in problem.message and "8.40 s" in problem.message
    assert "3.10 s" in problem.message
