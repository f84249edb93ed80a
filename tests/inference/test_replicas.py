"""One-thread CTranslate2 replicas under faster-whisper's batched pipeline (inference/replicas.py)."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_finetune.inference.transcript import DecodeOptions


@pytest.fixture(scope="module")
def tiny_ct2_dir(tiny_model_dir, tmp_path_factory):
    from whisper_finetune.models.convert import convert_to_ct2

    return str(
        convert_to_ct2(tiny_model_dir, tmp_path_factory.mktemp("ct2") / "ct2", quantization="int8")
    )


def test_parts_cover_the_batch_in_order():
    from whisper_finetune.inference.replicas import _parts

    assert _parts(12, 2) == [(0, 6), (6, 12)]
    assert _parts(5, 2) == [(0, 2), (2, 5)]
    assert _parts(3, 8) == [(0, 1), (1, 2), (2, 3)]  # never an empty part
    assert _parts(1, 4) == [(0, 1)]


def test_split_encode_and_generate_equal_the_whole_batch_on_one_replica(tiny_ct2_dir):
    import ctranslate2

    from whisper_finetune.inference.replicas import ReplicaSplit

    rng = np.random.default_rng(0)
    features = rng.standard_normal((5, 80, 3000)).astype(np.float32)
    whole = ctranslate2.models.Whisper(tiny_ct2_dir, device="cpu", intra_threads=1)
    split = ReplicaSplit(
        ctranslate2.models.Whisper(tiny_ct2_dir, device="cpu", intra_threads=1, inter_threads=2),
        workers=2,
    )
    expected = np.asarray(whole.encode(ctranslate2.StorageView.from_array(features)))
    encoded = split.encode(ctranslate2.StorageView.from_array(features))
    np.testing.assert_allclose(np.asarray(encoded), expected, rtol=1e-5, atol=1e-5)

    prompts = [[50258, 50260, 50359]] * 5  # <|startoftranscript|><|zh|><|transcribe|>
    kwargs = {"beam_size": 1, "max_length": 12, "return_scores": True}
    expected = whole.generate(ctranslate2.StorageView.from_array(expected), prompts, **kwargs)
    got = split.generate(encoded, prompts, **kwargs)
    assert [r.sequences_ids for r in got] == [r.sequences_ids for r in expected]
    assert split.is_multilingual == whole.is_multilingual  # everything else passes through
    with pytest.raises(ValueError, match="workers"):
        ReplicaSplit(whole, 0)


def test_the_pipeline_runs_on_replicas_and_a_second_model_only_when_needed(tiny_ct2_dir):
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.replicas import ReplicaSplit

    one = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=1)
    assert one._batched_model() is one.model  # one thread: nothing to spread
    two = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=2)
    model = two._batched_model()
    assert model is not two.model and isinstance(model.model, ReplicaSplit)
    assert model.model.workers == 2 and two._batched_model() is model  # loaded once
    # a model loaded with several workers already has its replicas: no second model
    workers = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=1, num_workers=3)
    assert workers.replicas == 3 and workers._batched_model() is workers.model
    assert isinstance(workers.model.model, ReplicaSplit)
    with pytest.raises(ValueError, match="replicas"):
        CT2Transcriber(tiny_ct2_dir, device="cpu", replicas=0)
    # a lone window runs on the main model, all its threads on one job
    assert model.model._alone is two.model.model and model.model._model is not two.model.model


def test_a_lone_window_goes_to_the_model_with_all_the_threads():
    from whisper_finetune.inference.replicas import ReplicaSplit

    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def encode(self, features, to_cpu=False):
            calls.append((self.name, "encode", len(features)))
            return features

        def generate(self, features, prompts, **kwargs):
            calls.append((self.name, "generate", len(prompts)))
            return ["result"]

    split = ReplicaSplit(Recorder("replicas"), workers=2, alone=Recorder("alone"))
    one = np.zeros((1, 80, 3000), np.float32)
    split.encode(one)
    assert split.generate(one, [[50258]]) == ["result"]
    split.generate(one, [[50258]], asynchronous=True)  # a caller's own asynchronous call
    assert calls == [("alone", "encode", 1), ("alone", "generate", 1), ("replicas", "generate", 1)]


def test_long_audio_on_replicas_gives_the_text_of_one_replica(tiny_ct2_dir, zh_dev_speech):
    """The random model's babble is a strict check: any change in the encoder's or the
    decoder's arithmetic moves it. 70 s of real speech: long audio, several chunks."""
    from whisper_finetune.inference.ct2 import CT2Transcriber

    audio = zh_dev_speech(70).samples
    options = DecodeOptions(language="zh", max_new_tokens=8, vad_gate=False)
    one = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=2, replicas=1, progress=False)
    two = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=2, replicas=2, progress=False)
    assert one.long_audio_batch == 8 and two.long_audio_batch == 12
    expected = one.transcribe(audio, options)
    got = two.transcribe(audio, options)
    assert got.text and got.text == expected.text
    assert [(s.start, s.end) for s in got.segments] == [(s.start, s.end) for s in expected.segments]


def test_long_batched_audio_is_gated_by_the_pipelines_own_vad(tiny_ct2_dir, monkeypatch):
    """The batched pipeline decodes only what Silero VAD calls speech: the gate's second
    VAD pass over the whole audio is skipped there, and kept for short audio."""
    from whisper_finetune.inference import base
    from whisper_finetune.inference.ct2 import LONG_AUDIO_SECONDS, CT2Transcriber

    calls = []
    real = base.speech_regions
    monkeypatch.setattr(base, "speech_regions", lambda s: calls.append(s.size) or real(s))
    model = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=1, progress=False)
    options = DecodeOptions(language="zh", max_new_tokens=4)
    silence = np.zeros(int(LONG_AUDIO_SECONDS * 16000) + 16000, np.float32)
    assert model.transcribe(silence, options).text == ""  # no speech, nothing decoded
    assert calls == []
    assert model.transcribe(silence[: 10 * 16000], options).text == ""
    assert calls == [10 * 16000]


@pytest.mark.slow
def test_whisper_base_long_audio_on_replicas_keeps_its_text(zh_dev_speech):
    """The real model, 90 s of real Mandarin: the replicas change where the work runs,
    not what is decoded (benchmarks/long_audio.py times it)."""
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.models.resolve import resolve_model

    speech = zh_dev_speech(90)  # different recordings, none repeated
    path = resolve_model("embedded:whisper-base", "ct2")
    options = DecodeOptions(language="zh")
    one = CT2Transcriber(path, "cpu", "int8", cpu_threads=2, replicas=1, progress=False)
    two = CT2Transcriber(path, "cpu", "int8", cpu_threads=2, replicas=2, progress=False)
    expected = one.transcribe(speech.samples, options)
    got = two.transcribe(speech.samples, options)
    assert got.text == expected.text
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    cer = score([normalize_text(speech.reference)], [normalize_text(got.text)], "cer")
    assert cer <= 0.35, got.text  # all of it, not a part


def test_threads_share_one_replica_model(tiny_ct2_dir):
    """The server calls one transcriber from several threads: the replicas are loaded once
    and the model is wrapped once."""
    from concurrent.futures import ThreadPoolExecutor

    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.replicas import ReplicaSplit

    two = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=2)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: two._batched_model(), range(8)))
    assert all(m is models[0] for m in models)
    assert not isinstance(models[0].model._model, ReplicaSplit)  # wrapped once
