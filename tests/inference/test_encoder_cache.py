"""transformers' fallback re-runs generate per temperature; the encoder must run once."""

from __future__ import annotations

import contextlib

import pytest
import torch
from finetune_data import tone

from whisper_finetune.inference.encoder_cache import reused_encoder
from whisper_finetune.inference.transcript import DecodeOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def transcriber(tiny_model_dir):
    from whisper_finetune.inference.loader import load_transcriber

    return load_transcriber(str(tiny_model_dir), "transformers", device="cpu")


def _count_encodings(model):
    calls = []
    hook = (
        model.get_encoder()
        .layers[0]
        .register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    )
    return calls, hook


def test_repeated_rows_are_encoded_once_and_give_the_same_outputs(transcriber):
    model = transcriber.model
    encoder = model.get_encoder()
    features = torch.randn(3, model.config.num_mel_bins, 2 * model.config.max_source_positions)
    with torch.inference_mode():
        expected = encoder(features).last_hidden_state
        calls, hook = _count_encodings(model)
        try:
            with reused_encoder(model):
                first = encoder(features).last_hidden_state
                again = encoder(features).last_hidden_state
                subset = encoder(features[[2, 0]]).last_hidden_state
                as_tuple = encoder(features[[1]], return_dict=False)[0]
                other = encoder(features + 1).last_hidden_state
            after = encoder(features).last_hidden_state
        finally:
            hook.remove()
    assert calls == [3, 3, 3]  # first, the changed input, and after the block: no reuse
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(again, expected)
    torch.testing.assert_close(subset, expected[[2, 0]])
    torch.testing.assert_close(as_tuple, expected[[1]])
    assert not torch.allclose(other, expected)
    torch.testing.assert_close(after, expected)
    assert "forward" not in encoder.__dict__  # the class's forward is back


def test_fallback_encodes_each_window_once_and_keeps_the_text(transcriber, monkeypatch):
    from whisper_finetune.inference import hf

    clips = [tone(2.0, 300.0, seed=1), tone(3.0, 500.0, seed=2)]
    # log-prob threshold 0: every window fails, so every temperature (6) is tried
    options = DecodeOptions(language="zh", logprob_threshold=0.0, vad_gate=False, max_new_tokens=8)
    assert len(options.temperatures) == 6
    calls, hook = _count_encodings(transcriber.model)
    try:
        reused = [t.text for t in transcriber.transcribe_batch(clips, options)]
        with_reuse = list(calls)
        calls.clear()
        monkeypatch.setattr(hf, "reused_encoder", lambda model: contextlib.nullcontext())
        plain = [t.text for t in transcriber.transcribe_batch(clips, options)]
    finally:
        hook.remove()
    # with reuse, one encoding per 30 s window decoded (the random model's output can make
    # transformers seek once within the clip: a second window); without, one per temperature
    # tried on each window, and twice for the no-speech check
    assert 1 <= len(with_reuse) <= 2 and set(with_reuse) == {2}
    assert len(calls) >= 6 * len(with_reuse)
    assert reused == plain
