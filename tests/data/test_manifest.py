"""Reading, validating and writing data manifests (JSON list and JSON Lines)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from whisper_finetune.data.manifest import (
    ManifestError,
    Record,
    TimedText,
    iter_manifest,
    read_manifest,
    write_manifest,
)

FULL = {
    "audio": {"path": "clips/a.wav", "start_time": 1.0, "end_time": 3.5},
    "duration": 2.5,
    "sentence": "你好，世界",
    "language": "zh",
    "sentences": [
        {"start": 0.0, "end": 1.0, "text": "你好"},
        {"start": 1.0, "end": 2.5, "text": "世界"},
    ],
}
MINIMAL = {"audio": {"path": "b.flac"}, "sentence": "再见"}


def write_jsonl(path: Path, objects) -> Path:
    lines = [o if isinstance(o, str) else json.dumps(o, ensure_ascii=False) for o in objects]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check_full_and_minimal(records: list[Record], folder: Path) -> None:
    full, minimal = records
    assert full.audio_path == str(folder / "clips" / "a.wav")
    assert (full.start_time, full.end_time, full.duration) == (1.0, 3.5, 2.5)
    assert full.sentence == "你好，世界"
    assert full.language == "zh"
    assert full.sentences == (TimedText(0.0, 1.0, "你好"), TimedText(1.0, 2.5, "世界"))
    assert minimal.audio_path == str(folder / "b.flac")
    assert (minimal.start_time, minimal.end_time, minimal.duration) == (None, None, None)
    assert minimal.sentences == ()
    assert minimal.language is None


def test_reads_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [FULL, "", MINIMAL])  # blank lines skipped
    check_full_and_minimal(read_manifest(path), tmp_path)


def test_reads_json_list_whatever_the_extension(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps([FULL, MINIMAL], ensure_ascii=False, indent=2), encoding="utf-8")
    check_full_and_minimal(read_manifest(path), tmp_path)


def test_utf8_bom_and_crlf(tmp_path):
    path = tmp_path / "win.json"
    text = "\r\n".join(json.dumps(o, ensure_ascii=False) for o in (FULL, MINIMAL)) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    check_full_and_minimal(read_manifest(path), tmp_path)


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    sub = tmp_path / "data" / "lists"
    sub.mkdir(parents=True)
    absolute = str(tmp_path / "elsewhere" / "c.wav")
    path = write_jsonl(
        sub / "m.jsonl",
        [
            {"audio": {"path": "../audio/a.wav"}, "sentence": "一"},
            {"audio": {"path": absolute}, "sentence": "二"},
        ],
    )
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    relative, kept = read_manifest(path)
    assert relative.audio_path == str(tmp_path / "data" / "audio" / "a.wav")
    assert kept.audio_path == absolute


def test_iter_manifest_is_lazy_and_validates(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [MINIMAL, "{not json"])
    records = iter_manifest(path)
    assert next(records).sentence == "再见"
    with pytest.raises(ManifestError):
        next(records)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_manifest_round_trip(tmp_path):
    records = read_manifest(write_jsonl(tmp_path / "in.jsonl", [FULL, MINIMAL]))
    out = tmp_path / "out" / "copy.jsonl"
    assert write_manifest(records, out) == 2
    assert read_manifest(out) == records
    # paths are written relative to the manifest's own folder, text as UTF-8
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["audio"]["path"] == os.path.join("..", "clips", "a.wav")
    assert first["sentence"] == "你好，世界"
    assert not list(out.parent.glob("*.tmp"))


def test_prompt_field_parses_and_round_trips(tmp_path):
    """A record's own ``prompt`` (for prompt-conditioned training) is kept, not dropped."""
    records = read_manifest(
        write_jsonl(
            tmp_path / "in.jsonl",
            [
                {**FULL, "prompt": "会议记录：张三发言"},
                MINIMAL,
                {**MINIMAL, "prompt": None},
                {**MINIMAL, "prompt": "  "},  # blank: no prompt of its own
            ],
        )
    )
    assert [r.prompt for r in records] == ["会议记录：张三发言", None, None, None]
    out = tmp_path / "out" / "copy.jsonl"
    write_manifest(records, out)
    assert read_manifest(out) == records
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written[0]["prompt"] == "会议记录：张三发言"
    assert ["prompt" in w for w in written] == [True, False, False, False]
    # the prompt is part of a record's identity: records differing in it are not equal
    assert records[1] != dataclasses.replace(records[1], prompt="别的")


def test_round_trip_keeps_unicode_line_separators(tmp_path):
    # json.dumps(ensure_ascii=False) leaves U+2028 / U+0085 raw inside strings; they
    # must not split a JSON Lines record.
    record = Record(audio_path=str(tmp_path / "a.wav"), sentence="第一句\u2028第二句\x85完")
    path = tmp_path / "sep.jsonl"
    write_manifest([record], path)
    assert read_manifest(path) == [record]


def test_round_trip_through_a_symlinked_folder(tmp_path):
    real = tmp_path / "real" / "deep"
    real.mkdir(parents=True)
    link = tmp_path / "link"
    try:
        link.symlink_to(real, target_is_directory=True)
    except OSError:
        pytest.skip("symlinks are not supported here")
    record = Record(audio_path=str(link / "a.wav"), sentence="你好")
    write_manifest([record], link / "m.jsonl")
    (back,) = read_manifest(link / "m.jsonl")
    assert os.path.realpath(back.audio_path) == os.path.realpath(record.audio_path)


def test_write_manifest_leaves_no_partial_file(tmp_path):
    def records():
        yield Record(audio_path=str(tmp_path / "a.wav"), sentence="一")
        raise RuntimeError("source failed")

    out = tmp_path / "m.jsonl"
    with pytest.raises(RuntimeError):
        write_manifest(records(), out)
    assert list(tmp_path.iterdir()) == []


BAD_LINES = [
    # (second line of the manifest, field expected in the message)
    ("{not json", "invalid JSON"),
    ('["a list"]', "object"),
    ('{"sentence": "你好"}', "audio"),
    ('{"audio": {}, "sentence": "你好"}', "audio.path"),
    ('{"audio": {"path": ""}, "sentence": "你好"}', "audio.path"),
    ('{"audio": {"path": 3}, "sentence": "你好"}', "audio.path"),
    ('{"audio": {"path": "a.wav"}}', "sentence"),
    ('{"audio": {"path": "a.wav"}, "sentence": 42}', "sentence"),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "duration": -1.5}', "duration"),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "duration": "long"}', "duration"),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "duration": NaN}', "duration"),
    ('{"audio": {"path": "a.wav", "start_time": -1}, "sentence": "x"}', "start_time"),
    ('{"audio": {"path": "a.wav", "start_time": 3, "end_time": 2}, "sentence": "x"}', "end_time"),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "sentences": "oops"}', "sentences"),
    (
        '{"audio": {"path": "a.wav"}, "sentence": "x", "sentences": [{"start": 2.0, "end": 1.0, "text": "x"}]}',
        "end",
    ),
    (
        '{"audio": {"path": "a.wav"}, "sentence": "x", "sentences": [{"start": 0, "text": "x"}]}',
        "end",
    ),
    (
        '{"audio": {"path": "a.wav"}, "sentence": "x", "sentences": [{"start": 0, "end": 1, "text": 5}]}',
        "text",
    ),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "language": 7}', "language"),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "prompt": 3}', "prompt"),
    ('{"audio": {"path": "a.wav"}, "sentence": "x", "prompt": ["上一句"]}', "prompt"),
]


@pytest.mark.parametrize("line, field", BAD_LINES, ids=[field for _, field in BAD_LINES])
def test_bad_lines_name_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "broken_manifest.jsonl"
    path.write_text(json.dumps(MINIMAL) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ManifestError) as excinfo:
        read_manifest(path)
    message = str(excinfo.value)
    assert "broken_manifest.jsonl" in message
    assert ":2" in message
    assert field in message


def test_bad_item_in_a_json_list_names_its_position(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(
        json.dumps([MINIMAL, {"audio": {"path": "a.wav"}, "sentence": None}]), encoding="utf-8"
    )
    with pytest.raises(ManifestError, match=r"list\.json: item 2: field 'sentence'"):
        read_manifest(path)


def test_invalid_json_list_names_the_line(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(
        '[\n  {"audio": {"path": "a.wav"}, "sentence": "x"},\n  {oops}\n]\n', encoding="utf-8"
    )
    with pytest.raises(ManifestError, match=r"list\.json:3: invalid JSON"):
        read_manifest(path)
