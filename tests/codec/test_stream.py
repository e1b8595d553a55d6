"""Exact streaming encode/decode (giblet_store.codec.stream): equality with the whole-file call, state, paths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from giblet_store import CodecParams, TrGrid, extract_codes, open_store
from giblet_store.audio.load import load_audio
from giblet_store.codec.encodec import reproducible_torch
from giblet_store.errors import ParameterError
from giblet_store.codec.stream import (STREAM_MIN_CHUNK_FRAMES, StreamDecoder, StreamEncoder, is_streamable,
                                 stream_decode, stream_encode, tie_report)
from giblet_store.testing import synth_audio, write_wav
from hypothesis_profiles import budget  # a test's example budget, scaled by the profile


def whole_file(codec, audio, bandwidth):
    """The reference: one ``EncodecModel.encode`` call on the whole signal -> (codebook, frame), (dim, frame)."""
    import torch

    with reproducible_torch(), torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]
        codes = codec.model.encode(x, bandwidth=bandwidth).audio_codes[0, 0].numpy()
        emb = codec.model.encoder(x)[0].numpy()
    return codes, emb


def assert_equal_or_ties(codec, emb, want, got, max_fraction=0.01):
    """Codes equal, or every differing frame an argmin tie (margin a few float32 roundings, tie_report)."""
    assert got.shape == want.shape
    r = tie_report(codec, emb, want, got)
    assert r["differing_frames"] <= max(1, max_fraction * r["frames"]), r  # a short file may hold one tie
    # measured: ties 1e-7 to 5e-7; lost context 2e-3 right after a cut, 1e-4 and more in the next frames
    assert r["max_margin"] is None or r["max_margin"] < 1e-5, r
    return r


def whole_decode(codec, codes):
    import torch

    with torch.inference_mode():
        q = codec.model.quantizer.decode(torch.from_numpy(codes.astype(np.int64))[:, None])
        return codec.model.decoder(q)[0].numpy()


def _whole_at(codec, emb, bw):
    """Whole-file codes at ``bw`` from the whole-file encoder output (what ``EncodecModel.encode`` does next)."""
    import torch

    with reproducible_torch(), torch.inference_mode():
        return codec.model.quantizer.encode(torch.from_numpy(emb)[None], bw)[:, 0].numpy()


@pytest.mark.parametrize("name", ["encodec_test_24k.wav", "arctic_a0007.wav"])
def test_stream_equals_whole_file_on_shared_recordings_at_every_bandwidth(codec, shared_data, name):
    audio, _ = load_audio(shared_data / name, codec.sample_rate_hz, codec.channels)
    want24, emb = whole_file(codec, audio, 24.0)
    got24 = stream_encode(codec, audio, 24.0, chunk_s=1.3)  # 98 frames per piece: many pieces
    report = tie_report(codec, emb, want24, got24)
    assert report["differing_frames"] == 0, report  # not even an argmin tie
    short = audio.shape[-1] < 5 * codec.sample_rate_hz
    for bw in codec.bandwidths:
        want = _whole_at(codec, emb, bw)
        assert want.shape == (codec.n_codebooks(bw), -(-audio.shape[-1] // codec.hop))
        # RVQ: a bandwidth's codes are the first codebooks of 24 kbps; the short file runs each bandwidth
        got = stream_encode(codec, audio, bw, chunk_s=0.7) if short else got24[: want.shape[0]]
        np.testing.assert_array_equal(got, want)
    assert len(np.unique(want24[0])) > 10  # real, varying codes (speech with pauses: few distinct)


@settings(budget(8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.one_of(st.integers(1, 3000), st.integers(3000, 24000)), chunk_frames=st.integers(8, 30),
       seed=st.integers(0, 3))
# a tie on the last (partial) frame, 1 of 28 frames at codebook 0: the exact distances to codewords 149
# (whole file) and 331 (stream, the exact nearest) differ by 1.06e-7 in terms of 0.21 (margin 4.9e-7);
# the whole file's 28-frame float32 distances are equal (argmax takes 149), one frame alone gives 331
@example(n=8855, chunk_frames=8, seed=1)
@example(n=6354, chunk_frames=12, seed=1)  # a tie mid-file (frame 15 of 20, margin 1.1e-7), found exploring
def test_stream_equals_whole_file_on_any_length(codec, n, chunk_frames, seed):
    audio = synth_audio(2.0, 24000, seed=seed)[:, :n]
    want, emb = whole_file(codec, audio, 3.0)
    got = stream_encode(codec, audio, 3.0, chunk_s=chunk_frames * codec.hop / codec.sample_rate_hz)
    assert_equal_or_ties(codec, emb, want, got)  # n need not be a multiple of the hop


def test_chunk_size_changes_at_most_argmin_ties(codec):
    audio = synth_audio(6.0, 24000, seed=9)[:, :-123]
    want, emb = whole_file(codec, audio, 6.0)
    ref = stream_encode(codec, audio, 6.0, chunk_s=100.0)  # one piece: the whole-file call itself
    np.testing.assert_array_equal(ref, want)
    # measured: one frame of 450 flips at codebooks 5-8 for one of these sizes (summation order)
    for chunk_s in (0.11, 0.5, 1.0, 2.37):
        assert_equal_or_ties(codec, emb, want, stream_encode(codec, audio, 6.0, chunk_s=chunk_s))


def test_state_is_reset_between_files(codec):
    hop = codec.hop
    a = synth_audio(2.0, 24000, seed=1)
    b = synth_audio(1.5, 24000, seed=2)
    fresh = stream_encode(codec, b, 1.5, chunk_s=0.5)
    enc = StreamEncoder(codec, 1.5)
    enc.feed(a[:, : 20 * hop], last=False)
    enc.feed(a[:, 20 * hop:], last=True)
    with pytest.raises(ParameterError, match="already ended.*reset"):
        enc.feed(b, last=True)
    enc.reset()
    got = np.concatenate([enc.feed(b[:, : 30 * hop], last=False), enc.feed(b[:, 30 * hop:], last=True)], axis=1)
    np.testing.assert_array_equal(got, fresh)
    # a stream left unfinished (no last piece) does not leak into the next encoder either
    StreamEncoder(codec, 1.5).feed(a[:, : 20 * hop], last=False)
    np.testing.assert_array_equal(stream_encode(codec, b, 1.5, chunk_s=0.5), fresh)


def test_pieces_must_be_whole_hops_and_the_first_long_enough(codec):
    enc = StreamEncoder(codec, 1.5)
    with pytest.raises(ParameterError, match=f"at least {STREAM_MIN_CHUNK_FRAMES} hops"):
        enc.feed(np.zeros((1, 2 * codec.hop), np.float32), last=False)
    with pytest.raises(ParameterError, match="whole hops \\(320 samples\\); got 3210 samples \\(10 past"):
        enc.feed(np.zeros((1, 10 * codec.hop + 10), np.float32), last=False)
    with pytest.raises(ParameterError, match="positive number of seconds"):
        stream_encode(codec, np.zeros((1, 1000), np.float32), 1.5, chunk_s=0)


def test_non_causal_models_are_refused_with_the_way_out():
    from transformers import EncodecConfig

    assert is_streamable(EncodecConfig()) is None  # the 24 kHz architecture
    assert "not causal" in is_streamable(EncodecConfig(use_causal_conv=False))
    assert "whole signal" in is_streamable(EncodecConfig(norm_type="time_group_norm"))
    with pytest.raises(ParameterError, match="encoder must be one of stream, chunked, got 'fast'"):
        CodecParams(encoder="fast")


def test_stream_decode_equals_whole_decode(codec):
    codes = stream_encode(codec, synth_audio(4.0, 24000, seed=4)[:, :-77], 6.0, chunk_s=1.0)
    want = whole_decode(codec, codes)
    for chunk_s in (0.11, 0.7, 100.0):
        got = stream_decode(codec, codes, chunk_s=chunk_s)
        assert got.shape == want.shape == (1, codes.shape[1] * codec.hop) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    dec = StreamDecoder(codec)
    dec.feed(codes[:, :10], last=False)
    dec.reset()  # a new stream after reset: the first piece again
    np.testing.assert_allclose(dec.feed(codes, last=True), want, rtol=0, atol=1e-5)


def test_extract_records_the_encoder_and_stream_keys_ignore_context(store, model_dir, tmp_path):
    wav = write_wav(tmp_path / "s.wav", synth_audio(4.3, 24000, seed=8), 24000)
    a = extract_codes(store, wav, CodecParams(str(model_dir), 1.5, chunk_s=1.0), TrGrid(1.5))
    assert a.created and a.entry.attrs["encoder"] == "stream"
    assert a.entry.attrs["inputs"]["codec"]["encoder"] == "stream"
    assert "context_s" not in a.entry.attrs["inputs"]["codec"]  # the stream encoder recomputes no context
    b = extract_codes(store, wav, CodecParams(str(model_dir), 1.5, chunk_s=1.0, context_s=0.5), TrGrid(1.5))
    assert not b.created and b.entry.key == a.entry.key
    c = extract_codes(store, wav, CodecParams(str(model_dir), 1.5, chunk_s=1.0, encoder="chunked"), TrGrid(1.5))
    assert c.created and c.entry.key != a.entry.key and c.entry.attrs["encoder"] == "chunked"
    from giblet_store.codec.encodec import load_codec
    from giblet_store.grid import from_tr

    audio, _ = load_audio(wav, 24000)
    model = load_codec(str(model_dir))
    want, emb = whole_file(model, audio, 1.5)
    ds = a.entry.open()
    assert_equal_or_ties(model, emb, want, from_tr(ds.codes.values, ds.n_frames.values))


def test_extraction_streams_pieces_of_at_most_5_s_and_the_key_records_the_piece(store, model_dir, tmp_path,
                                                                                 monkeypatch):
    """A piece's working set is ~20 MiB per second of audio: extraction caps pieces at 5 s (a 600 s
    file under 1 GiB peak). The key records the piece size actually used, not the chunk_s asked."""
    import giblet_store.codec.stream as stream

    from giblet_store.features.codes import codes_key_inputs
    from giblet_store.params import content_key

    pieces, real = [], stream.stream_encode
    monkeypatch.setattr(stream, "stream_encode", lambda c, a, bw, s, **kw: pieces.append(s) or real(c, a, bw, s, **kw))
    wav = write_wav(tmp_path / "s.wav", synth_audio(2.0, 24000, seed=9), 24000)
    a = extract_codes(store, wav, CodecParams(str(model_dir), 1.5), TrGrid(1.5))  # chunk_s default 10 s
    assert pieces == [stream.STREAM_PIECE_MAX_S] == [5.0]
    assert a.entry.attrs["inputs"]["codec"]["chunk_s"] == 5.0

    def key(**kw):
        return content_key(codes_key_inputs("0" * 64, CodecParams("m", 1.5, **kw), TrGrid(1.5), {"model_sha256": "x"}))

    assert key(chunk_s=10.0) == key(chunk_s=5.0) == key(chunk_s=30.0)  # the same 5 s pieces
    assert key(chunk_s=2.0) != key(chunk_s=5.0)  # smaller pieces are used as asked
    assert key(chunk_s=10.0, encoder="chunked") != key(chunk_s=5.0, encoder="chunked")  # chunks as asked


def test_decode_entry_streams_to_the_whole_decode(store, model_dir, codec, tmp_path):
    import soundfile as sf

    from giblet_store.features.codes import decode_entry, entry_stream

    wav = write_wav(tmp_path / "s.wav", synth_audio(3.1, 24000, seed=2), 24000)
    entry = extract_codes(store, wav, CodecParams(str(model_dir), 3.0), TrGrid(1.0)).entry
    out = decode_entry(store, entry, tmp_path / "out.wav", model=str(model_dir))
    got, sr = sf.read(str(out), dtype="float32", always_2d=True)
    stream, _ = entry_stream(store, entry)
    assert sr == 24000 and got.shape == (stream.shape[1] * 320, 1)
    np.testing.assert_allclose(got.T, whole_decode(codec, stream), rtol=0, atol=1e-5)
    assert not (tmp_path / "out.wav.tmp").exists()


def test_batch_stream_path_writes_the_same_entry_as_extract(model_dir, tmp_path):
    from giblet_store.batch.run import run_batch
    from giblet_store.batch.manifest import load_manifest

    write_wav(tmp_path / "a.wav", synth_audio(4.1, 24000, seed=1), 24000)  # ranged reads, piece by piece
    write_wav(tmp_path / "b.wav", synth_audio(3.3, 16000, seed=2), 16000)  # resampled by a load task
    m = {"model": str(model_dir), "bandwidths": [1.5], "trs": [1.5], "chunk_s": 1.0, "stimuli": ["a.wav", "b.wav"]}
    report = run_batch(load_manifest(m, base_dir=tmp_path), tmp_path / "batch", scheduler="local", workers=1,
                       progress=False, tr_chunk=2)
    assert report.counts["created"] == 2, report.items
    batch, ref = open_store(tmp_path / "batch"), open_store(tmp_path / "ref")
    for item, name in zip(report.items, ("a.wav", "b.wav")):
        r = extract_codes(ref, tmp_path / name, CodecParams(str(model_dir), 1.5, chunk_s=1.0), TrGrid(1.5))
        assert r.entry.key == item.key  # the same key: the same pieces, read from the file piece by piece
        got, want = batch.open(batch.get(item.key)), ref.open(r.entry)
        np.testing.assert_array_equal(got.codes.values, want.codes.values)
        np.testing.assert_array_equal(got.n_frames.values, want.n_frames.values)
        assert got.attrs["encoder"] == "stream"
