"""The embedded whisper-base cache is rebuilt when an earlier build made it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from whisper_finetune.staging import MARKER_FILE


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_FINETUNE_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "embedded" / "whisper-base"


def _build(folder):
    return json.loads((folder / MARKER_FILE).read_text())["build"]


def test_an_earlier_builds_ct2_folder_is_reassembled(home):
    from whisper_finetune.models.embedded import EMBEDDED_BUILD, embedded_ct2

    dst = embedded_ct2()
    assert dst == home / "ct2" and _build(dst) == EMBEDDED_BUILD
    size = (dst / "model.bin").stat().st_size
    (dst / MARKER_FILE).unlink()  # as build 1 left it: no marker
    (dst / "preprocessor_config.json").write_text("{}")
    assert embedded_ct2() == dst and _build(dst) == EMBEDDED_BUILD
    assert json.loads((dst / "preprocessor_config.json").read_text())["feature_size"] == 80
    assert (dst / "model.bin").stat().st_size == size
    assert sorted(p.name for p in home.iterdir()) == [".ct2.lock", "ct2"]  # nothing stale left


def test_two_processes_on_a_stale_cache_both_get_a_complete_folder(home):
    from whisper_finetune.models.embedded import EMBEDDED_BUILD, embedded_ct2

    dst = embedded_ct2()
    (dst / MARKER_FILE).write_text(json.dumps({"kind": "model", "build": 1}))
    code = (
        "from whisper_finetune.models.embedded import embedded_ct2; "
        "d = embedded_ct2(); print((d / 'model.bin').stat().st_size)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    sizes = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sizes[0] == sizes[1] == (dst / "model.bin").stat().st_size
    assert _build(dst) == EMBEDDED_BUILD


@pytest.mark.slow
def test_a_stale_transformers_cache_is_rebuilt_with_the_current_config(home):
    """Build 1 wrote WhisperConfig's English-only begin_suppress_tokens ([220, 50256]) and
    no suppress_tokens into config.json; a cache it left must not survive an upgrade."""
    from whisper_finetune.models.embedded import EMBEDDED_BUILD, embedded_transformers

    dst = embedded_transformers()
    config = json.loads((dst / "config.json").read_text())
    assert config["begin_suppress_tokens"] == [220, 50257] and config["suppress_tokens"]
    config.update(begin_suppress_tokens=[220, 50256], suppress_tokens=None)
    (dst / "config.json").write_text(json.dumps(config))
    (dst / MARKER_FILE).unlink()
    assert embedded_transformers() == dst and _build(dst) == EMBEDDED_BUILD
    config = json.loads((dst / "config.json").read_text())
    assert config["begin_suppress_tokens"] == [220, 50257] and config["suppress_tokens"]
