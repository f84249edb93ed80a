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


def test_a_quiet_cut_lies_in_the_pause_on_silero_s_window_grid():
    from whisper_finetune.inference.chunks import SEARCH_SECONDS, VAD_WINDOW, quiet_cut

    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 60 * 16000).astype(np.float32)
    pause = slice(37 * 16000, 37 * 16000 + 9600)  # 0.6 s of silence, 7 s after 30 s
    audio[pause] = 0.0
    cut = quiet_cut(audio, 30 * 16000)
    assert cut % VAD_WINDOW == 0 and pause.start <= cut < pause.stop
    # no pause within reach: the cut still lands on the grid, within reach
    loud = rng.normal(0, 0.1, 60 * 16000).astype(np.float32)
    cut = quiet_cut(loud, 30 * 16000 + 100)
    assert cut % VAD_WINDOW == 0 and abs(cut - 30 * 16000) <= SEARCH_SECONDS * 16000


def test_vad_in_parts_side_by_side_finds_the_spans_of_one_pass(real_speech, monkeypatch):
    """150 s of real speech: Silero in two parts (two threads) against one pass. The
    parts differ only in the model state at the cut: same spans within 0.1 s, same
    chunks."""
    import faster_whisper.vad as fv
    from faster_whisper.vad import collect_chunks

    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.inference.chunks import speech_spans

    clips = [load_audio(r.audio_path) for r in read_manifest(real_speech)]
    pause = np.zeros(8000, np.float32)
    audio = np.concatenate([piece for c in clips * 4 for piece in (c, pause)])[: 150 * 16000]
    one = speech_spans(audio, 1)
    lengths = []
    real = fv.get_speech_timestamps
    monkeypatch.setattr(
        fv, "get_speech_timestamps", lambda a, *x, **k: lengths.append(a.size) or real(a, *x, **k)
    )
    parts = speech_spans(audio, 2)
    assert len(lengths) == 2 and sum(lengths) == audio.size  # two parts, all of it
    assert len(one) > 20 and len(parts) == len(one)
    for a, b in zip(one, parts, strict=True):
        assert abs(a["start"] - b["start"]) < 1600 and abs(a["end"] - b["end"]) < 1600
    assert sum(a != b for a, b in zip(one, parts, strict=True)) <= 2
    chunks_one, _ = collect_chunks(audio, one, max_duration=30)
    chunks_parts, _ = collect_chunks(audio, parts, max_duration=30)
    assert len(chunks_parts) == len(chunks_one)
    # too short to split: one pass, whatever the threads
    assert speech_spans(audio[: 100 * 16000], 4) == speech_spans(audio[: 100 * 16000], 1)


def test_a_full_chunk_is_cut_at_its_longest_pause_not_at_the_limit():
    """faster-whisper's collect_chunks cuts where the next span does not fit, at a
    breath inside a sentence as readily as between sentences; join_spans cuts at the
    chunk's longest pause past half the limit, and keeps the chunks within it."""
    from faster_whisper.vad import collect_chunks

    from whisper_finetune.inference.chunks import join_spans

    sr = 16000
    audio = np.arange(100 * sr, dtype=np.float32)
    # sentences of 6 s split by 0.2 s breaths, 1 s between sentences (times in seconds)
    seconds = [(0, 6), (6.2, 12), (13, 19), (19.2, 25), (26, 28), (28.2, 34), (35, 39)]
    spans = [{"start": int(a * sr), "end": int(b * sr)} for a, b in seconds]
    theirs, _ = collect_chunks(audio, spans, max_duration=30)
    ours, offsets = join_spans(audio, spans, 30)
    assert [round(c.size / sr, 1) for c in theirs] == [25.6, 9.8]  # cut at the 0.2 s breath
    assert [round(c.size / sr, 1) for c in ours] == [23.6, 11.8]  # cut at the 1 s pause
    assert np.array_equal(np.concatenate(ours), np.concatenate(theirs))  # the same speech
    assert offsets == [0.0, ours[0].size / sr]
    assert all(c.size <= 30 * sr for c in join_spans(audio, spans, 12)[0])


def test_holes_are_the_speech_a_transcript_skipped():
    from whisper_finetune.inference.chunks import TAIL_SECONDS, holes
    from whisper_finetune.inference.transcript import Segment, Transcript

    sr = 16000

    def transcript(*times):
        return Transcript.from_segments([Segment(a, b, "字") for a, b in times], "zh", 28.0)

    # a jump over 8 s of speech inside the chunk (seen with whisper-base), and an early end
    assert holes(transcript((0, 5.8), (5.8, 12.1), (20.1, 26.4)), 28 * sr) == [
        (int(12.1 * sr), int(20.1 * sr))
    ]
    assert holes(transcript((0, 5.0)), 28 * sr) == [(5 * sr, 28 * sr)]
    gap = TAIL_SECONDS - 0.5  # short gaps are pauses Whisper leaves out of its segments
    assert holes(transcript((0, 10), (10 + gap, 27.5)), 28 * sr) == []
    assert holes(transcript(), 28 * sr) == []
