"""The 48 kHz stereo model: normalised 1 s chunks with 1 % overlap, per-chunk scales, 2 channels.

A small random-weight model of that architecture (giblet_store.testing.STEREO_48KHZ: same chunking,
normalisation, channels, hop and codebooks; narrower layers) against the model's own whole-file
``EncodecModel.encode`` / ``decode``.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

from giblet_store import CodecParams, TrGrid, decode_entry, extract_codes
from giblet_store.audio.load import load_audio
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.errors import AudioError, ParameterError
from giblet_store.testing import STEREO_48KHZ, save_test_model, synth_audio, write_wav

SR = 48000


@pytest.fixture(scope="module")
def model48(tmp_path_factory):
    return save_test_model(tmp_path_factory.mktemp("encodec48") / "model", seed=1, fill_seconds=8.0, **STEREO_48KHZ)


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory):
    x = synth_audio(2.3, SR, seed=5, channels=2)
    x[1] *= 0.5  # the channels differ
    return write_wav(tmp_path_factory.mktemp("audio48") / "stereo48.wav", x, SR, subtype="FLOAT")


def _model_encode(model_dir, wav, bandwidth):
    """The model's own whole-file encode and decode of the samples the store encodes, on one intra-op thread
    (a chunk's scale is a mean whose last bit depends on the thread count; the store encodes on one)."""
    import torch

    from giblet_store.codec.encodec import load_codec, reproducible_torch
    from giblet_store.codec.torch_threads import one_intra_op_thread

    codec = load_codec(str(model_dir))
    audio, _ = load_audio(wav, SR, 2)
    with one_intra_op_thread(), reproducible_torch(), torch.inference_mode():
        enc = codec.model.encode(torch.from_numpy(audio)[None], bandwidth=bandwidth)
        dec = codec.model.decode(enc.audio_codes, enc.audio_scales, last_frame_pad_length=enc.last_frame_pad_length)
    n_last = enc.audio_codes.shape[-1] - enc.last_frame_pad_length
    codes = [c[0].numpy() for c in enc.audio_codes]
    codes[-1] = codes[-1][:, :n_last]
    return codes, np.array([float(s) for s in enc.audio_scales], np.float32), dec[0][0].numpy()


def _chunks_of(ds):
    """Per-chunk (codebook, frame) codes rebuilt from the stored frames."""
    n = ds.n_frames.values
    mask = np.arange(ds.sizes["frame"])[None, :] < n[:, None]
    codes = np.moveaxis(ds.codes.values, 1, 0)[:, mask]
    chunk, t = ds.frame_chunk.values[mask], ds.frame_time_s.values[mask]
    return [codes[:, chunk == k][:, np.argsort(t[chunk == k])] for k in range(ds.sizes["chunk"])]


def test_codes_and_scales_equal_the_models_own_encode(store, model48, stereo_wav):
    r = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=0.5))
    ds = r.entry.open()
    ref_codes, ref_scales, _ = _model_encode(model48, stereo_wav, 6.0)
    assert ds.sizes["chunk"] == len(ref_codes) == 3  # 2.3 s: chunks at 0, 0.99, 1.98 s
    for mine, ref in zip(_chunks_of(ds), ref_codes):
        np.testing.assert_array_equal(mine, ref)
    np.testing.assert_array_equal(ds.scales.values, ref_scales)
    assert ds.codes.dtype == np.int16 and ds.sizes["codebook"] == 4
    a = r.entry.attrs
    assert a["encoder"] == "model_chunks" and a["audio_channels"] == 2 and a["source_channels"] == 2
    assert a["chunk_stride_samples"] == 47520 and a["chunk_length_samples"] == 48000 and a["frame_rate"] == "150"
    assert a["frames_per_tr"] == "2500/33"  # 0.5 s x 150 frames per 0.99 s stride
    assert a["inputs"]["codec"]["chunking"] == {"chunk_length_s": 1.0, "overlap": 0.01, "normalize": True}
    assert a["inputs"]["codec"]["encoder"] == "model_chunks" and "context_s" not in a["inputs"]["codec"]


def test_every_frame_on_the_grid_at_its_own_time(store, model48, stereo_wav):
    grid = TrGrid(tr_s=0.7, onset_s=0)
    ds = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=3), grid).entry.open()
    n = ds.n_frames.values
    assert int(n.sum()) == int(ds.chunk_frames.values.sum()) == 150 + 150 + 48  # no frame lost (last chunk: 15360 samples)
    assert ds.sizes["codebook"] == 2  # 3 kbps -> 2 codebooks, from the model
    mask = np.arange(ds.sizes["frame"])[None, :] < n[:, None]
    assert (ds.codes.values.transpose(0, 2, 1)[~mask] == -1).all()
    assert np.isnan(ds.frame_time_s.values[~mask]).all() and (ds.frame_chunk.values[~mask] == -1).all()
    t, k = ds.frame_time_s.values, ds.frame_chunk.values
    for tr in range(ds.sizes["tr"]):
        for f in range(n[tr]):
            exact = Fraction(int(k[tr, f]) * 47520 + 320 * round((t[tr, f] * SR - k[tr, f] * 47520) / 320), SR)
            assert t[tr, f] == float(exact)
            assert exact // Fraction(7, 10) == tr  # the TR its own start time falls in
    flat = t[mask]
    assert (np.diff(flat) >= 0).all()  # time order within and across TRs
    np.testing.assert_array_equal(ds.chunk_start_s.values, [0.0, 0.99, 1.98])


def test_decode_whole_and_tr_range_equals_the_models_decode(store, model48, stereo_wav, tmp_path):
    r = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=12), TrGrid(tr_s=0.5))
    _, _, ref = _model_encode(model48, stereo_wav, 12.0)
    whole, sr = sf.read(decode_entry(store, r.entry, tmp_path / "whole.wav"), dtype="float32", always_2d=True)
    assert sr == SR and whole.shape == (ref.shape[1], 2)
    np.testing.assert_allclose(whole.T, ref, atol=1e-5)
    ds = r.entry.open()
    part, _ = sf.read(decode_entry(store, r.entry, tmp_path / "part.wav", trs="1:3"), dtype="float32", always_2d=True)
    t = ds.frame_time_s.values[1:3]
    lo, hi = round(np.nanmin(t) * SR), round(np.nanmax(t) * SR) + 320
    assert part.shape == (hi - lo, 2)
    np.testing.assert_allclose(part.T, ref[:, lo:hi], atol=1e-5)


def test_mono_into_the_stereo_model_is_duplicated_with_a_warning(store, model48, tmp_path):
    mono = write_wav(tmp_path / "mono.wav", synth_audio(1.2, SR, seed=2), SR, subtype="FLOAT")
    with pytest.warns(ChannelsMixedWarning, match="is mono and the model takes stereo: the channel is encoded on both"):
        r = extract_codes(store, mono, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=1.0))
    assert r.entry.attrs["source_channels"] == 1
    dup = write_wav(tmp_path / "dup.wav", np.repeat(synth_audio(1.2, SR, seed=2), 2, axis=0), SR, subtype="FLOAT")
    same = extract_codes(store, dup, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=1.0))
    np.testing.assert_array_equal(r.entry.open().codes.values, same.entry.open().codes.values)


def test_more_than_two_channels_into_the_stereo_model_is_refused(store, model48, tmp_path):
    six = write_wav(tmp_path / "six.wav", np.tile(synth_audio(0.5, SR, seed=2), (6, 1)), SR)
    with pytest.raises(AudioError, match="has 6 channels; a stereo model takes 1 or 2. Mix it down to stereo"):
        extract_codes(store, six, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=1.0))
    assert store.find(kind="codes") == []


def test_stereo_into_the_mono_model_is_averaged_with_a_warning(store, model_dir, tmp_path):
    wav = write_wav(tmp_path / "st.wav", synth_audio(1.0, 24000, seed=3, channels=2), 24000)
    with pytest.warns(ChannelsMixedWarning, match="has 2 channels and the model takes mono: their mean is encoded"):
        r = extract_codes(store, wav, CodecParams(model=str(model_dir), bandwidth_kbps=6), TrGrid(tr_s=1.0))
    assert r.entry.attrs["source_channels"] == 2


def _tree(path):
    return sorted((str(p.relative_to(path)), p.read_bytes()) for p in path.rglob("*") if p.is_file())


def test_entry_decoded_with_the_other_architecture_is_refused(store, model48, model_dir, stereo_wav, tmp_path):
    from giblet_store.cli import main

    r = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=1.0))
    with pytest.raises(ParameterError, match="was made by a model of another architecture .48000 Hz, 2 channel"):
        decode_entry(store, r.entry, tmp_path / "x.wav", model=str(model_dir))
    mono = write_wav(tmp_path / "m24.wav", synth_audio(1.0, 24000, seed=3), 24000)
    r24 = extract_codes(store, mono, CodecParams(model=str(model_dir), bandwidth_kbps=6), TrGrid(tr_s=1.0))
    before = _tree(tmp_path / "store")
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        rc = main(["decode", str(tmp_path / "store"), r24.entry.key, "-o", str(tmp_path / "y.wav"),
                   "--model", str(model48)])
    assert rc == 2 and "24000 Hz, 1 channel(s), one stream" in err.getvalue() and "Traceback" not in err.getvalue()
    assert _tree(tmp_path / "store") == before
    assert not (tmp_path / "y.wav").exists()


def test_model_chunks_encoder_needs_a_chunked_model(store, model_dir, tone_wav):
    with pytest.raises(ParameterError, match="encoder 'model_chunks' needs a model that encodes in its own chunks"):
        extract_codes(store, tone_wav, CodecParams(model=str(model_dir), encoder="model_chunks"), TrGrid(1.0))


def test_slots_hold_the_densest_tr():
    from giblet_store.codec.normalised import ModelChunking

    ch = ModelChunking(SR, 48000, 47520, 320, True)
    n = 20 * SR
    pos = np.sort(np.concatenate([s + 320 * np.arange(f) for s, f in zip(ch.starts(n), ch.chunk_frames(n))]))
    for tr_s in (0.1, 0.5, 0.99, 1.0, 1.5, 2.0, 3.3):
        w = int(round(tr_s * SR))
        densest = int((np.searchsorted(pos, pos + w, side="left") - np.arange(len(pos))).max())
        assert densest <= ch.slots(tr_s) <= densest + 12


def test_ecdc_export_import_round_trip_is_bit_exact(store, model48, stereo_wav, tmp_path):
    import json
    import struct

    from giblet_store.codec.ecdc import unpack_codes
    from giblet_store.features.exchange import export_codes, import_codes

    r = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=0.5))
    out = export_codes(store, r.entry, tmp_path / "a.ecdc")
    raw = out.read_bytes()
    magic, version, size = struct.unpack("!4sBI", raw[:9])
    meta = json.loads(raw[9 : 9 + size])
    assert (magic, version) == (b"ECDC", 0)
    assert meta == {"m": "encodec_48khz", "al": 110400, "nc": 4, "lm": False}
    ref_codes, ref_scales, _ = _model_encode(model48, stereo_wav, 6.0)
    at = 9 + size  # segment 0: its scale (big-endian float32), then 150 frames x 4 codebooks x 10 bits
    assert struct.unpack("!f", raw[at : at + 4])[0] == ref_scales[0]
    np.testing.assert_array_equal(unpack_codes(raw[at + 4 : at + 4 + 750], 10, 4, 150), ref_codes[0])
    assert len(raw) == at + 2 * (4 + 750) + 4 + 240  # last segment: 15360 samples = 48 frames
    imp = import_codes(store, out, model=str(model48), grid=TrGrid(tr_s=0.5))
    assert imp.created and imp.entry.attrs["imported_from"]["format"] == "ecdc"
    a, b = r.entry.open(), imp.entry.open()
    for name in ("codes", "n_frames", "frame_time_s", "frame_chunk", "scales", "chunk_frames"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert export_codes(store, imp.entry, tmp_path / "b.ecdc").read_bytes() == raw
    with pytest.raises(ParameterError, match="which only a whole-file .ecdc holds; export it with --format ecdc"):
        export_codes(store, r.entry, tmp_path / "a.npy")
    with pytest.raises(ParameterError, match="and no --trs"):
        export_codes(store, r.entry, tmp_path / "c.ecdc", trs="0:2")


def test_frames_cut_by_the_grid_are_counted_and_their_chunk_decodes_from_the_rest(store, model48, stereo_wav, tmp_path):
    from giblet_store import DecodeIncompleteWarning

    with pytest.warns(UserWarning, match="75 frame.s. precede TR 0 and 0 follow the last TR"):
        r = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=3), TrGrid(0.5, onset_s=0.5))
    assert r.entry.attrs["frames_before_grid"] == 75 and r.entry.attrs["frames_after_grid"] == 0
    assert int(r.entry.open().n_frames.values.sum()) == 348 - 75
    _, _, ref = _model_encode(model48, stereo_wav, 3.0)
    with pytest.warns(DecodeIncompleteWarning, match=r"chunk\(s\) \[0\] have frames outside the TR grid"):
        part, _ = sf.read(decode_entry(store, r.entry, tmp_path / "p.wav", trs="0:3"), dtype="float32", always_2d=True)
    assert part.shape[0] == 72000  # TRs 0:3 = stimulus 0.5..2.0 s
    np.testing.assert_allclose(part[24000:].T, ref[:, 48000:96000], atol=1e-5)  # past chunk 0: the model's samples


def test_a_bare_stream_is_not_decoded_with_the_stereo_model(model48):
    from giblet_store.codec.encodec import decode_stream, load_codec

    with pytest.raises(ParameterError, match="one code stream without its chunks' scales cannot be decoded"):
        decode_stream(load_codec(str(model48)), np.zeros((2, 10), np.int64))


def test_cli_extract_and_decode_a_stereo_entry(model48, stereo_wav, tmp_path):
    import json

    from giblet_store.cli import main

    st = tmp_path / "cli-store"
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(["extract", str(stereo_wav), "--store", str(st), "--model", str(model48), "--bandwidth", "3",
                     "--tr", "1.0", "--json", "--no-progress"]) == 0
    (entry,) = json.loads(out.getvalue())["entries"]
    assert entry["attrs"]["encoder"] == "model_chunks" and entry["attrs"]["n_codebooks"] == 2
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["decode", str(st), entry["key"][:12], "-o", str(tmp_path / "o.wav"), "--trs", "1:2"]) == 0
    audio, sr = sf.read(str(tmp_path / "o.wav"), always_2d=True)
    assert sr == SR and audio.shape == (96000 - 48160, 2)  # first frame of TR 1 (chunk 1, j=2) to the end of its last


def test_codes_and_scales_do_not_depend_on_the_callers_thread_count(model48):
    """issue 22: chunks are encoded side by side in threads, each on one intra-op thread; the scales (a mean
    whose last bit torch rounds by thread count: 11 of 61 differ between 1 and 2 threads on a 60 s file)
    are the model's own on one thread, whatever the caller's count, so extract and batch workers agree."""
    import torch

    from giblet_store.codec.encodec import load_codec
    from giblet_store.codec.normalised import encode_chunks

    codec = load_codec(str(model48))
    x = synth_audio(20.0, SR, seed=9, channels=2)
    x[1] *= 0.6
    saved = torch.get_num_threads()
    try:
        runs = []
        for n in (2, 1):
            torch.set_num_threads(n)
            runs.append(list(encode_chunks(codec, x, 3.0)))
    finally:
        torch.set_num_threads(saved)
    for (ca, sa), (cb, sb) in zip(*runs):
        np.testing.assert_array_equal(ca, cb)
        assert sa == sb
    torch.set_num_threads(1)
    try:
        want = []
        for s in range(0, x.shape[1], 47520):  # as EncodecModel._encode_frame, on one thread
            t = torch.tensor(x[:, s: s + 48000])[None]
            want.append(np.float32(((torch.sum(t, 1, keepdim=True) / 2).pow(2).mean(dim=-1).sqrt() + 1e-8).item()))
    finally:
        torch.set_num_threads(saved)
    assert [s for _, s in runs[0]] == want and len(want) == 21


def test_decode_equals_the_models_decode_bit_for_bit_at_any_thread_count(store, model48, stereo_wav, tmp_path):
    """issue 22, item 4 (decode speed): chunks are decoded side by side, each on one intra-op thread, with oneDNN
    off (as encoding); the samples equal the model's own EncodecModel.decode with oneDNN off bit for bit, on
    one thread or on two (with oneDNN on, torch's defaults, the model's own decode changes in the last bits
    with the thread count)."""
    import torch

    from giblet_store.codec.encodec import load_codec, reproducible_torch

    r = extract_codes(store, stereo_wav, CodecParams(model=str(model48), bandwidth_kbps=6), TrGrid(tr_s=0.5))
    _, _, ref = _model_encode(model48, stereo_wav, 6.0)  # one intra-op thread, oneDNN off
    codec = load_codec(str(model48))
    chunks = _chunks_of(r.entry.open())
    width = chunks[0].shape[1]
    codes = torch.from_numpy(np.stack([np.pad(c.astype(np.int64), ((0, 0), (0, width - c.shape[1])))
                                       for c in chunks]))[:, None]
    scales = [torch.tensor([[float(s)]]) for s in r.entry.open().scales.values]
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with reproducible_torch(), torch.inference_mode():
            two = codec.model.decode(codes, scales, last_frame_pad_length=width - chunks[-1].shape[1])[0][0].numpy()
        np.testing.assert_array_equal(two, ref)  # the model's decode, oneDNN off: the same bits on 1 and 2 threads
        for n in (2, 1):
            torch.set_num_threads(n)
            got, _ = sf.read(decode_entry(store, r.entry, tmp_path / f"w{n}.wav"), dtype="float32", always_2d=True)
            np.testing.assert_array_equal(got.T, ref)
    finally:
        torch.set_num_threads(saved)
