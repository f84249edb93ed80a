"""Dataset recipes (AISHELL-1, WenetSpeech, folder) and the manifest validator.

Every corpus is built inside the test in its real layout: tiny, offline, fast.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisper_finetune.cli import main
from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
from whisper_finetune.data.manifest import read_manifest
from whisper_finetune.data.recipes import aishell, md5sum
from whisper_finetune.data.recipes.aishell import (
    DATA_MD5,
    AishellConfig,
    DownloadError,
    download,
    prepare_aishell,
)
from whisper_finetune.data.recipes.folder import FolderConfig, prepare_folder
from whisper_finetune.data.recipes.validate import ValidateConfig, validate_manifest
from whisper_finetune.data.recipes.wenetspeech import WenetSpeechConfig, prepare_wenetspeech


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05).astype(np.float32)  # never zero


def write_tone(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds), SAMPLE_RATE, subtype="PCM_16")
    return path


# --------------------------------------------------------------------------- AISHELL-1

AISHELL_WAVS = {  # speaker archive -> (split, utterance id, seconds)
    "S0002": [
        ("train", "BAC009S0002W0122", 1.0),
        ("train", "BAC009S0002W0123", 1.5),
        ("train", "BAC009S0002W0124", 0.5),
    ],  # W0124 has no transcript line
    "S0724": [("dev", "BAC009S0724W0121", 0.75)],
    "S0764": [("test", "BAC009S0764W0121", 1.25)],
}
TRANSCRIPT = (
    "BAC009S0002W0122 而对 楼市 成交 抑制 作用 最大 的 限购\n"
    "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
    "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
    "BAC009S0764W0121 广州 女 大学生 登山 失联 四 天\n"
    "BAC009S0999W0001 这 条 没有 音频\n"
)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def aishell_tgz(tmp_path) -> Path:
    """data_aishell.tgz: data_aishell/wav/SXXXX.tar.gz (nested) plus the transcript."""
    archive = tmp_path / "download" / "data_aishell.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as outer:
        for speaker, utts in AISHELL_WAVS.items():
            inner_buf = io.BytesIO()
            with tarfile.open(fileobj=inner_buf, mode="w:gz") as inner:
                for split, utt, seconds in utts:
                    wav = io.BytesIO()
                    sf.write(wav, tone(seconds), SAMPLE_RATE, format="WAV", subtype="PCM_16")
                    _add_bytes(inner, f"{split}/{speaker}/{utt}.wav", wav.getvalue())
            _add_bytes(outer, f"data_aishell/wav/{speaker}.tar.gz", inner_buf.getvalue())
        _add_bytes(
            outer, "data_aishell/transcript/aishell_transcript_v0.8.txt", TRANSCRIPT.encode()
        )
    return archive


def _aishell_config(tmp_path: Path, archive: Path, **kw) -> AishellConfig:
    return AishellConfig(
        target_dir=str(tmp_path / "audio"),
        filepath=str(archive),
        annotation_text=str(tmp_path / "manifests"),
        md5=md5sum(archive),
        **kw,
    )


def test_aishell_manifests_from_local_archive(tmp_path, aishell_tgz):
    result = prepare_aishell(_aishell_config(tmp_path, aishell_tgz))

    assert result.utterances == {"train": 2, "dev": 1, "test": 1}
    assert result.untranscribed == {"train": 1, "dev": 0, "test": 0}
    assert result.unused_transcripts == 1
    train = read_manifest(result.manifests["train"])
    assert [Path(r.audio_path).name for r in train] == [
        "BAC009S0002W0122.wav",
        "BAC009S0002W0123.wav",
    ]
    assert train[0].sentence == "而对楼市成交抑制作用最大的限购"  # spaces removed
    assert [r.duration for r in train] == [1.0, 1.5]
    assert train[0].language == "zh"
    assert train[0].sentences[0].end == 1.0
    (test,) = read_manifest(result.manifests["test"])
    assert test.sentence == "广州女大学生登山失联四天" and test.duration == 1.25
    wav_dir = tmp_path / "audio" / "data_aishell" / "wav"
    assert (wav_dir / "train" / "S0002" / "BAC009S0002W0122.wav").is_file()
    assert not list(wav_dir.glob("*.tar.gz"))  # per-speaker archives removed once extracted
    assert aishell_tgz.is_file()  # the user's archive is never deleted


def test_aishell_rerun_skips_finished_steps(tmp_path, aishell_tgz, monkeypatch):
    config = _aishell_config(tmp_path, aishell_tgz)
    first = prepare_aishell(config)
    mtime = Path(first.manifests["train"]).stat().st_mtime_ns

    def no_extract(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(aishell, "extract_tar", no_extract)
    monkeypatch.setattr(aishell, "check_md5", no_extract)
    again = prepare_aishell(config)
    assert again.skipped == ("extract", "speaker archives", "manifests")
    assert again.utterances == first.utterances and again.untranscribed == first.untranscribed
    assert Path(first.manifests["train"]).stat().st_mtime_ns == mtime

    redone = prepare_aishell(dataclasses.replace(config, overwrite=True))
    assert "manifests" not in redone.skipped and redone.utterances == first.utterances


def test_aishell_md5_mismatch(tmp_path, aishell_tgz):
    config = AishellConfig(
        target_dir=str(tmp_path / "audio"), filepath=str(aishell_tgz), md5=DATA_MD5
    )
    with pytest.raises(ValueError, match="MD5 mismatch"):
        prepare_aishell(config)
    assert not (tmp_path / "audio" / "data_aishell").exists()


def test_aishell_offline_download_fails_fast(tmp_path):
    config = AishellConfig(
        target_dir=str(tmp_path), url="http://127.0.0.1:9/data_aishell.tgz", timeout=3
    )
    started = time.monotonic()
    with pytest.raises(DownloadError, match="--filepath"):
        prepare_aishell(config)
    assert time.monotonic() - started < 5


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        body = self.payload[start:]
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_resumes_a_partial_file(tmp_path):
    payload = bytes(range(256)) * 400
    _RangeHandler.payload, _RangeHandler.ranges = payload, []
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "data_aishell.tgz"
        (tmp_path / "data_aishell.tgz.part").write_bytes(payload[:1000])
        url = f"http://127.0.0.1:{server.server_port}/data_aishell.tgz"
        import hashlib

        download(url, dest, hashlib.md5(payload).hexdigest(), timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert _RangeHandler.ranges == ["bytes=1000-"]
    assert dest.read_bytes() == payload and not (tmp_path / "data_aishell.tgz.part").exists()


def test_cli_prepare_aishell(tmp_path, aishell_tgz, capsys):
    code = main(
        [
            "prepare",
            "aishell",
            f"--filepath={aishell_tgz}",
            f"--target_dir={tmp_path / 'audio'}",
            f"--annotation_text={tmp_path / 'm'}",
            "--md5=none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "train: 2 records" in out and "wavs without transcript (left out): train 1" in out
    assert (tmp_path / "m" / "dev.jsonl").is_file()


# ------------------------------------------------------------------------- WenetSpeech

TRAIN = ["{L}", "{M}"]
WENET_SEGMENTS = [  # (begin, end, text, confidence, subsets)
    (0.5, 5.0, "第一句", 1.0, TRAIN),
    (5.5, 9.0, "低置信", 0.5, TRAIN),  # dropped: its span must be silenced
    (9.5, 14.0, "第二句", 1.0, TRAIN),
    (14.2, 20.0, "第三句", 1.0, TRAIN),
    (20.5, 33.0, "第四句", 1.0, TRAIN),  # would make the first sample 32.5 s
    (33.2, 40.0, "第五句", 1.0, TRAIN),
    (41.0, 73.0, "太长了", 1.0, TRAIN),  # 32 s alone: left out
]


@pytest.fixture()
def wenet(tmp_path) -> Path:
    root = tmp_path / "wenet"
    write_tone(root / "audio" / "train" / "long.wav", 80.0)
    write_tone(root / "audio" / "test" / "net.wav", 10.0)

    def seg(i, b, e, text, conf, subsets):
        return {
            "sid": f"S{i}",
            "begin_time": b,
            "end_time": e,
            "text": text,
            "confidence": conf,
            "subsets": subsets,
        }

    meta = {
        "audios": [
            {
                "aid": "Y0001",
                "path": "audio/train/long.wav",
                "duration": 80.0,
                "segments": [seg(i, *s) for i, s in enumerate(WENET_SEGMENTS)],
            },
            {
                "aid": "T0001",
                "path": "audio/test/net.wav",
                "duration": 10.0,
                "segments": [seg(0, 1.0, 4.0, "测试一下", 1.0, ["{TEST_NET}"])],
            },
            {
                "aid": "Y0002",
                "path": "audio/train/gone.wav",
                "duration": 5.0,
                "segments": [seg(0, 0.0, 2.0, "没有文件", 1.0, TRAIN)],
            },
        ]
    }
    (root / "WenetSpeech.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return root


def test_wenetspeech_packs_and_silences_gaps(wenet, tmp_path):
    out = tmp_path / "out"
    result = prepare_wenetspeech(
        WenetSpeechConfig(
            metadata=str(wenet / "WenetSpeech.json"), target_dir=str(out), subset=("L", "TEST_NET")
        )
    )

    assert result.samples == {"train": 2, "test_net": 1}
    assert (result.low_confidence, result.too_long, result.silenced, result.missing_audio) == (
        1,
        1,
        1,
        1,
    )
    first, second = read_manifest(result.manifests["train"])
    assert all(r.duration <= 30 for r in (first, second))

    # the first sample spans the dropped segment: written anew, with that gap zeroed
    assert first.start_time is None and Path(first.audio_path).parent == out / "silenced" / "train"
    assert first.sentence == "第一句第二句第三句" and first.duration == 19.5
    assert [(s.start, s.end) for s in first.sentences] == [(0.0, 4.5), (9.0, 13.5), (13.7, 19.5)]
    audio = load_audio(first.audio_path)
    assert len(audio) == round(19.5 * SAMPLE_RATE)

    def level(a, b):
        return float(np.abs(audio[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)]).max())

    assert level(4.5, 9.0) == 0.0  # 5.0-9.5 s in the long file: silenced
    assert level(1.0, 4.4) > 0.01 and level(9.1, 13.5) > 0.01
    assert level(13.55, 13.65) > 0.01  # a short pause without a dropped segment: kept

    # the second sample has no unlabelled gap: it points into the long file
    assert Path(second.audio_path).name == "long.wav"
    assert (second.start_time, second.end_time, second.duration) == (20.5, 40.0, 19.5)
    assert [(s.start, s.end, s.text) for s in second.sentences] == [
        (0.0, 12.5, "第四句"),
        (12.7, 19.5, "第五句"),
    ]

    (net,) = read_manifest(result.manifests["test_net"])
    assert (net.start_time, net.end_time, net.sentence) == (1.0, 4.0, "测试一下")


def test_wenetspeech_split_policy_writes_no_audio(wenet, tmp_path):
    out = tmp_path / "out"
    result = prepare_wenetspeech(
        WenetSpeechConfig(
            metadata=str(wenet / "WenetSpeech.json"),
            target_dir=str(out),
            subset=("M",),
            gap_policy="split",
        )
    )
    samples = read_manifest(result.manifests["train"])
    assert [r.sentence for r in samples] == ["第一句", "第二句第三句第四句", "第五句"]
    assert all(r.start_time is not None for r in samples) and not (out / "silenced").exists()
    assert samples[1].sentences[0].start == 0.0 and samples[1].start_time == 9.5


def test_wenetspeech_rejects_two_training_subsets(wenet, tmp_path):
    with pytest.raises(ValueError, match="one training subset"):
        prepare_wenetspeech(
            WenetSpeechConfig(
                metadata=str(wenet / "WenetSpeech.json"),
                target_dir=str(tmp_path),
                subset=("L", "M"),
            )
        )


# ------------------------------------------------------------------------------ folder


def test_folder_metadata_csv_split_is_deterministic(tmp_path):
    root = tmp_path / "mine"
    rows = ["file_name,text"]
    for i in range(20):
        name = f"clips/{i:02d}.wav" if i % 2 else f"{i:02d}.flac"
        write_tone(root / name, 0.5 + i / 20)
        rows.append(f"{name},第{i}句话")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    def run(seed, out):
        cfg = FolderConfig(
            input_dir=str(root), target_dir=str(tmp_path / out), test_ratio=0.1, seed=seed
        )
        r = prepare_folder(cfg)
        return r, [Path(x.audio_path).name for x in read_manifest(r.manifests["test"])]

    result, test_a = run(1, "a")
    assert result.utterances == {"train": 18, "test": 2} and not result.problems
    assert run(1, "b")[1] == test_a
    assert any(run(seed, f"c{seed}")[1] != test_a for seed in range(2, 6))
    train = read_manifest(result.manifests["train"])
    by_name = {Path(r.audio_path).name: r for r in train + read_manifest(result.manifests["test"])}
    assert by_name["03.wav"].sentence == "第3句话" and by_name["03.wav"].duration == 0.65


def test_folder_metadata_mismatch_is_an_error(tmp_path):
    root = tmp_path / "mine"
    write_tone(root / "a.wav", 1.0)
    write_tone(root / "stray.wav", 1.0)
    (root / "metadata.csv").write_text(
        "file_name,sentence\na.wav,你好\nmissing.wav,再见\n", encoding="utf-8"
    )
    with pytest.raises(ValueError) as err:
        prepare_folder(FolderConfig(input_dir=str(root)))
    assert "missing.wav" in str(err.value) and "stray.wav" in str(err.value)
    assert "--skip_problems" in str(err.value)

    result = prepare_folder(FolderConfig(input_dir=str(root), skip_problems=True))
    assert result.problems == {
        "audio without transcript": ("stray.wav",),
        "transcript without audio": ("missing.wav",),
    }
    assert result.utterances == {"train": 1, "test": 0}


def test_folder_txt_sidecars(tmp_path):
    root = tmp_path / "mine"
    for name, text in (("a.wav", "第一句"), ("sub/b.flac", "第二句\n")):
        write_tone(root / name, 1.0)
        (root / name).with_suffix(".txt").write_text(text, encoding="utf-8")
    result = prepare_folder(FolderConfig(input_dir=str(root), test_ratio=0.5))
    records = read_manifest(result.manifests["train"]) + read_manifest(result.manifests["test"])
    assert sorted(r.sentence for r in records) == ["第一句", "第二句"]
    assert result.utterances == {"train": 1, "test": 1}

    write_tone(root / "c.wav", 1.0)
    (root / "orphan.txt").write_text("没有音频", encoding="utf-8")
    (root / "empty.wav").write_bytes(b"")
    (root / "empty.txt").write_text("空", encoding="utf-8")
    with pytest.raises(ValueError) as err:  # the first run's manifests are in root now
        prepare_folder(FolderConfig(input_dir=str(root), overwrite=True))
    message = str(err.value)
    assert "audio without transcript (1): c.wav" in message
    assert "transcript without audio (1): orphan.txt" in message
    assert "unreadable audio (1): empty.wav" in message


# ---------------------------------------------------------------------------- validate


@pytest.fixture()
def manifests(tmp_path) -> dict[str, Path]:
    audio = tmp_path / "audio"
    write_tone(audio / "good.wav", 2.0)
    write_tone(audio / "long.wav", 31.0)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")

    def line(path, sentence="你好", duration=2.0, **audio_fields):
        rec = {"audio": {"path": f"audio/{path}", **audio_fields}, "sentence": sentence}
        if duration is not None:
            rec["duration"] = duration
        return json.dumps(rec, ensure_ascii=False)

    clean = [line("good.wav"), line("good.wav", duration=1.0, start_time=0.5, end_time=1.5)]
    faulty = [
        line("good.wav"),  # 1: fine
        line("missing.wav"),  # 2
        line("corrupt.wav"),  # 3
        line("good.wav", duration=5.0),  # 4
        line("long.wav", duration=31.0),  # 5
        line("good.wav", sentence="而对楼市成交抑制作用最大的限购" * 30),  # 6
        line("good.wav", duration=4.5, start_time=0.5, end_time=5.0),  # 7
        json.dumps({"audio": {"path": "audio/good.wav"}, "duration": 2.0}),  # 8: no sentence
    ]
    paths = {"clean": tmp_path / "clean.jsonl", "faulty": tmp_path / "faulty.jsonl"}
    paths["clean"].write_text("\n".join(clean) + "\n", encoding="utf-8")
    paths["faulty"].write_text("\n".join(faulty) + "\n", encoding="utf-8")
    return paths


def test_validate_clean_manifest(manifests, capsys):
    assert validate_manifest(ValidateConfig(manifest=str(manifests["clean"]))).ok
    assert main(["prepare", "validate", str(manifests["clean"])]) == 0
    assert "2 records, OK" in capsys.readouterr().out


def test_validate_reports_each_fault_with_its_line(manifests, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["prepare", "validate", str(manifests["faulty"]), f"--report={report}"])
    out = capsys.readouterr().out
    assert code == 1
    found = {
        (p["line"], p["field"]) for p in json.loads(report.read_text(encoding="utf-8"))["problems"]
    }
    assert found == {
        (2, "audio.path"),
        (3, "audio.path"),
        (4, "duration"),
        (5, "duration"),
        (6, "sentence"),
        (7, "audio.end_time"),
        (8, "record"),
    }
    name = manifests["faulty"]
    assert f"{name}:2: audio.path: file not found" in out
    assert f"{name}:3: audio.path: does not decode" in out
    assert f"{name}:4: duration: 5.00 s in the manifest but the audio lasts 2.00 s" in out
    assert f"{name}:5: duration: 31.00 s exceeds 30 s" in out
    assert f"{name}:6: sentence: label needs 1355 tokens (upper-bound estimate" in out
    assert f"{name}:7: audio.end_time: 5.00 s is beyond the end of the file (2.00 s)" in out
    assert f"{name}:8: record: field 'sentence' must be a string" in out
    assert "8 records, 7 problem(s)" in out


def test_validate_counts_tokens_with_the_whisper_tokenizer(tmp_path):
    write_tone(tmp_path / "a.wav", 1.0)
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"audio": {"path": "a.wav"}, "sentence": "你" * 300, "duration": 1.0},
        {
            "audio": {"path": "a.wav"},
            "sentence": "而对楼市成交抑制作用最大的限购" * 30,
            "duration": 1.0,
        },
    ]
    manifest.write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8"
    )

    estimated = validate_manifest(ValidateConfig(manifest=str(manifest)))
    assert [p.line for p in estimated.problems] == [1, 2]  # 905 and 1355 by the bound
    exact = validate_manifest(
        ValidateConfig(manifest=str(manifest), tokenizer="embedded:whisper-base")
    )
    assert exact.token_counter == "tokenizer:embedded:whisper-base"
    assert [(p.line, p.message) for p in exact.problems] == [
        (2, "label needs 515 tokens, more than Whisper's 448-token decoder limit")
    ]


def test_cli_prepare_wenetspeech_and_folder(wenet, tmp_path, capsys):
    meta = wenet / "WenetSpeech.json"
    out = tmp_path / "w"
    assert (
        main(
            [
                "prepare",
                "wenetspeech",
                f"--metadata={meta}",
                f"--target_dir={out}",
                "--subset",
                "M",
                "DEV",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "train: 2 records" in printed and "low confidence dropped: 1" in printed
    assert (out / "dev.jsonl").read_text(encoding="utf-8") == ""  # no DEV segments here

    root = tmp_path / "mine"
    write_tone(root / "a.wav", 1.0)
    (root / "a.txt").write_text("你好", encoding="utf-8")
    assert main(["prepare", "folder", f"--input_dir={root}", "--test_ratio=0", "--seed=3"]) == 0
    assert "train: 1 records" in capsys.readouterr().out
    assert main(["prepare", "folder", f"--input_dir={tmp_path / 'nowhere'}"]) == 1
