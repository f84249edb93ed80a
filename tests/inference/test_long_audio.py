"""Long audio on a CPU: CTranslate2 batches one long file by default (VAD chunks)."""

from __future__ import annotations

import numpy as np

from whisper_finetune.inference.transcript import DecodeOptions

# the VAD gate in front of every backend is off here: this test is about which decoder
# runs, and the gate would empty the sequential decoder's babble on silence too
OPTIONS = DecodeOptions(language="zh", max_new_tokens=4, vad_gate=False)


def test_a_long_file_on_cpu_goes_through_the_batched_pipeline(tiny_model_dir, tmp_path):
    from whisper_finetune.inference.ct2 import (
        BATCH_PER_REPLICA,
        LONG_AUDIO_BATCH,
        LONG_AUDIO_SECONDS,
        CT2Transcriber,
    )
    from whisper_finetune.models.convert import convert_to_ct2

    ct2_dir = str(convert_to_ct2(tiny_model_dir, tmp_path / "ct2", quantization="int8"))
    default = CT2Transcriber(ct2_dir, device="cpu", cpu_threads=2)
    sequential = CT2Transcriber(ct2_dir, device="cpu", long_audio_batch=1)
    # batches of BATCH_PER_REPLICA per one-thread replica, one replica per thread
    assert (default.replicas, default.batch_size) == (2, 1)
    assert default.long_audio_batch == max(LONG_AUDIO_BATCH, 2 * BATCH_PER_REPLICA)
    one = CT2Transcriber(ct2_dir, device="cpu", cpu_threads=1)
    assert (one.replicas, one.long_audio_batch) == (1, LONG_AUDIO_BATCH)
    many = CT2Transcriber(ct2_dir, device="cpu", cpu_threads=3)
    assert (many.replicas, many.long_audio_batch) == (3, 3 * BATCH_PER_REPLICA)
    # silence: the batched pipeline's VAD finds no speech and decodes nothing, while the
    # sequential decoder makes the random model babble in every 30 s window
    silence = np.zeros(int(LONG_AUDIO_SECONDS * 16000) + 16000, np.float32)
    assert default.transcribe(silence, OPTIONS).text == ""
    assert sequential.transcribe(silence, OPTIONS).text != ""
    # shorter audio, or conditioning on the previous text, stays sequential
    short = silence[: 40 * 16000]
    assert default.transcribe(short, OPTIONS).text == sequential.transcribe(short, OPTIONS).text
    conditioned = DecodeOptions(
        language="zh", max_new_tokens=4, condition_on_previous_text=True, vad_gate=False
    )
    assert default.transcribe(silence, conditioned).text != ""
