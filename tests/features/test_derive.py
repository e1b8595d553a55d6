"""Derived entries: embeddings (RVQ dequantisation), HRF/FIR and resampling chains, lineage, bad requests."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from giblet_store import TrGrid, extract_codes, open_store
from giblet_store.cli import main
from giblet_store.codec.encodec import CodecParams
from giblet_store.features.derive import Embeddings, derive_key, lineage
from giblet_store.errors import EntryNotFoundError, ParameterError
from giblet_store.grid import from_tr
from giblet_store.features.hrf import Fir, Hrf, hrf_kernel
from giblet_store.features.resample import Resample, resample_array, resample_plan

HRF = Hrf("spm", length_s=8.0)  # 8 taps at TR 1 s: fits the 10-TR test stimulus


def _keys(store):
    return sorted(e.key for e in store.entries())


def _np_causal(x: np.ndarray, h: np.ndarray, axis: int = 0) -> np.ndarray:
    x = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    out = np.stack([np.convolve(flat[:, j], h)[:n] for j in range(flat.shape[1])], axis=1).reshape(x.shape)
    return np.moveaxis(out, 0, axis)


@pytest.fixture(scope="module")
def base(tmp_path_factory, model_dir, tone_wav):
    """A store with the 10 s tone's codes (1.5 kbps, TR 1 s) and their embeddings."""
    store = open_store(tmp_path_factory.mktemp("derive") / "store")
    codes = extract_codes(store, tone_wav, CodecParams(str(model_dir), 1.5), TrGrid(1.0)).entry
    emb = store.derive(codes, Embeddings(), model=str(model_dir))
    return store, codes, emb


@pytest.fixture
def copy_of_base(base, tmp_path):
    store, codes, emb = base
    shutil.copytree(store.root, tmp_path / "copy")
    s = open_store(tmp_path / "copy")
    return s, s.get(codes.key), s.get(emb.key)


# ------------------------------------------------------------------------------ embeddings
def test_dequantised_codes_equal_the_quantizers_own_output(base, codec, tone_wav):
    import torch

    from giblet_store.audio.load import load_audio
    from giblet_store.features.derive import _dequantise_block
    from giblet_store.grid import to_tr

    store, codes, emb = base
    # the clip through the model: encoder -> RVQ encode -> RVQ decode (what the decoder consumes)
    audio, _ = load_audio(tone_wav, codec.sample_rate_hz)
    with torch.inference_mode():
        own_codes = codec.model.quantizer.encode(codec.model.encoder(torch.from_numpy(audio)[None]), 1.5)
        own = codec.model.quantizer.decode(own_codes)[0].T.numpy()  # (frame, dim)
    own_codes = own_codes[:, 0].numpy()
    layout = TrGrid(1.0).layout(own_codes.shape[-1], codec.frame_rate)
    gridded = to_tr(own_codes, layout, fill=-1).astype(np.int16)  # (tr, codebook, frame), -1 tails
    spec = (codec.name, None, codec.device)
    ours = _dequantise_block(gridded, spec, 128)  # the block function the Dask graph runs
    real = from_tr(ours.transpose(0, 2, 1), layout.n_frames).T
    np.testing.assert_allclose(real, own, atol=1e-5, rtol=1e-5)
    # and the stored entry: its embeddings are the quantizer's decode of its own codes
    ds = emb.open()
    assert ds["embeddings"].dims == ("tr", "frame", "dim") and ds["embeddings"].dtype == np.float32
    stored_codes = from_tr(codes.open()["codes"].values, ds["n_frames"].values).astype(np.int64)
    with torch.inference_mode():
        decoded = codec.model.quantizer.decode(torch.from_numpy(stored_codes)[:, None])[0].T.numpy()
    stored = from_tr(ds["embeddings"].values.transpose(0, 2, 1), ds["n_frames"].values).T
    np.testing.assert_allclose(stored, decoded, atol=1e-5, rtol=1e-5)


def test_embedding_layout_mean_and_attributes(base):
    store, codes, emb = base
    ds = emb.open()
    e, n = ds["embeddings"].values, ds["n_frames"].values
    tail = np.arange(ds.sizes["frame"])[None, :] >= n[:, None]
    assert np.isnan(e[tail]).all() and np.isfinite(e[~tail]).all()
    np.testing.assert_allclose(ds["embedding_mean"].values, np.nanmean(e, axis=1), atol=1e-5)
    a = emb.attrs
    assert a["parent"] == codes.key and a["parent_kind"] == "codes" and a["transform"] == "embeddings"
    assert a["embedding_dim"] == ds.sizes["dim"] == 128 and a["model_sha256"] == codes.attrs["model_sha256"]
    assert a["inputs"]["parent"] == codes.key and a["hrf"] == "none"


def test_second_derive_is_a_cache_hit_and_lineage_walks_to_the_source(base, model_dir):
    store, codes, emb = base
    before = _keys(store)
    again = store.derive(codes.key[:12], Embeddings(), model=str(model_dir))
    assert again == emb and _keys(store) == before
    assert derive_key(store, codes, Embeddings(), model=str(model_dir)) == emb.key
    assert [e.key for e in store.lineage(emb)] == [emb.key, codes.key]
    assert lineage(store, codes) == [codes]


def test_embeddings_need_codes_and_the_right_model(base):
    store, codes, emb = base
    before = _keys(store)
    with pytest.raises(ParameterError, match="local model.*give that directory"):
        store.derive(codes, Embeddings())
    with pytest.raises(ParameterError, match="dequantise codes; entry .* 'embeddings'"):
        store.derive(emb, Embeddings(), model="x")
    assert _keys(store) == before


# ------------------------------------------------------------------------------ HRF / FIR chains
def test_chain_embeddings_hrf_resample_equals_the_in_memory_computation(base):
    store, codes, emb = base
    conv = store.derive(emb, HRF)
    res = store.derive(conv, Resample(2.0))
    mean = emb.open()["embedding_mean"].values
    kernel = hrf_kernel(HRF, 1.0)
    expected_conv = _np_causal(mean, kernel)
    np.testing.assert_allclose(conv.open()["embedding_mean"].values, expected_conv, atol=1e-5)
    plan = resample_plan(10, 1.0, 0.0, Resample(2.0), integer=False)
    np.testing.assert_allclose(res.open()["embedding_mean"].values,
                               resample_array(expected_conv.astype(np.float32), plan), atol=1e-5)
    assert [e.kind for e in store.lineage(res)] == ["features", "features", "embeddings", "codes"]
    a = res.attrs
    assert a["hrf"] == "spm" and a["hrf_params"] == HRF.to_dict()  # inherited through resampling
    assert (a["tr_s"], a["n_trs"], a["parent"]) == (2.0, 5, conv.key)
    assert conv.attrs["variables"] == ["embedding_mean"] and conv.attrs["axis"] == "tr"
    np.testing.assert_allclose(conv.attrs["hrf_kernel"], kernel)
    # the module's store holds other tests' HRF entries (other variables): select this chain's by its own
    wanted = {"hrf_params.length_s": 8.0, "tr_s": 1.0, "parent": emb.key, "variables": ["embedding_mean"]}
    assert store.find(kind="features", **wanted) == [conv]


def test_fir_adds_a_delay_dimension(base):
    store, codes, emb = base
    fir = store.derive(emb, Fir((0, 2)))
    ds = fir.open()
    assert ds["embedding_mean"].dims == ("tr", "delay", "dim") and list(ds["delay"].values) == [0, 2]
    mean = emb.open()["embedding_mean"].values
    np.testing.assert_allclose(ds["embedding_mean"].values[2:, 1], mean[:-2])
    assert fir.attrs["hrf"] == "fir" and fir.attrs["hrf_params"] == {"delays": [0, 2]}


def test_hrf_on_codes_points_to_embeddings_unless_reference_is_asked_for(base):
    store, codes, emb = base
    before = _keys(store)
    with pytest.raises(ParameterError, match="Embeddings"):
        store.derive(codes, HRF)
    with pytest.raises(ParameterError, match="FIR delays of integer codes"):
        store.derive(codes, Fir((1, 2)), reference_codes=True)
    assert _keys(store) == before
    with pytest.warns(UserWarning, match="reference project's way"):
        ref = store.derive(codes, HRF, reference_codes=True)
    src = codes.open()
    got = ref.open()["codes"].values
    n = src["n_frames"].values
    expected = np.clip(np.rint(_np_causal(src["codes"].values, hrf_kernel(HRF, 1.0))), 0, 1023)
    tail = np.arange(src.sizes["frame"])[None, :] >= n[:, None]  # (tr, frame)
    assert got.dtype == np.int16 and np.all(got.transpose(0, 2, 1)[tail] == -1)
    np.testing.assert_array_equal(got.transpose(0, 2, 1)[~tail], expected.transpose(0, 2, 1)[~tail])


def test_resampling_codes_copies_whole_rows(base):
    store, codes, emb = base
    out = store.derive(codes, Resample(2.0))
    src, ds = codes.open(), out.open()
    assert out.attrs["resample"]["methods"] == {"codes": "previous", "n_frames": "previous"}
    for j in range(ds.sizes["tr"]):
        np.testing.assert_array_equal(ds["codes"].values[j], src["codes"].values[2 * j])
        assert ds["n_frames"].values[j] == src["n_frames"].values[2 * j]
    with pytest.raises(ParameterError, match="category indices"):
        store.derive(codes, Resample(2.0, method="linear"))


@pytest.mark.parametrize(
    "transform,kwargs,error,match",
    [
        (Hrf("spm"), {}, ParameterError, "kernel is 32 TRs .* has 10 TRs"),
        (Fir((1, 10)), {}, ParameterError, "not shorter than entry"),
        (HRF, {"variables": ["nope"]}, ParameterError, "no data variable 'nope'"),
        (HRF, {"variables": ["embeddings"]}, None, None),
        (HRF, {"axis": "time"}, ParameterError, "axis 'time' is not a dimension"),
        (HRF, {"reference_codes": True}, ParameterError, "applies to integer codes"),
        (HRF, {"colour": "red"}, ParameterError, "unknown option"),
        (HRF, {"model": "x"}, ParameterError, "Embeddings only"),
        ("spm", {}, ParameterError, "give Embeddings"),
    ],
)
def test_bad_requests_write_nothing(base, transform, kwargs, error, match):
    store, codes, emb = base
    before = _keys(store)
    if error is None:  # frame-level variables can be named explicitly: NaN tails propagate, by request
        assert store.derive(emb, transform, **kwargs).attrs["variables"] == kwargs["variables"]
        return
    with pytest.raises(error, match=match):
        store.derive(emb, transform, **kwargs)
    assert _keys(store) == before


def test_convolving_twice_is_refused(base):
    store, codes, emb = base
    conv = store.derive(emb, HRF)
    with pytest.raises(ParameterError, match="already HRF-convolved"):
        store.derive(conv, Hrf("glover", length_s=8.0))


# ------------------------------------------------------------------------------ missing / deleted
def test_unknown_key_and_deleted_parent(copy_of_base):
    store, codes, emb = copy_of_base
    with pytest.raises(EntryNotFoundError, match="no complete entry"):
        store.derive("abcdef0123", HRF)
    conv = store.derive(emb, HRF)
    store.delete(emb)
    before = _keys(store)
    with pytest.raises(EntryNotFoundError, match="no longer in"):
        store.derive(emb, HRF)  # a stale Entry: even the cached child is not served
    with pytest.raises(EntryNotFoundError, match="names parent .*deleted"):
        store.lineage(conv)
    assert _keys(store) == before
    assert store.derive(conv, Resample(2.0)).attrs["parent"] == conv.key  # the child itself is complete


# ------------------------------------------------------------------------------ other kinds
def test_fmri_needs_an_explicit_axis(store):
    import nibabel.testing

    from giblet_store.fmri.ingest import ingest_fmri

    fmri = ingest_fmri(store, [os.path.join(nibabel.testing.data_path, "functional.nii")], ["s1"]).entry
    before = _keys(store)
    with pytest.raises(ParameterError, match="fmri entry.*axis='tr'"):
        store.derive(fmri, Hrf("glover", length_s=20.0))
    assert _keys(store) == before
    out = store.derive(fmri, Hrf("glover", length_s=20.0), axis="tr")
    src, ds = fmri.open(), out.open()
    assert ds["fmri"].dims == ("subject", "tr", "voxel") and "mask" in ds
    np.testing.assert_allclose(ds["fmri"].values, _np_causal(src["fmri"].values, hrf_kernel(Hrf("glover", length_s=20.0), 2.0), axis=1),
                               atol=1e-3, rtol=1e-6)


def test_hrf_on_mel_uses_the_per_tr_mean(store, tone_wav):
    from giblet_store.features.mel import MelParams, extract_mel

    mel = extract_mel(store, tone_wav, MelParams(n_fft=512, hop=256, n_mels=32), TrGrid(1.0)).entry
    out = store.derive(mel, HRF)
    assert out.attrs["variables"] == ["mel_mean"] and list(out.open().data_vars) == ["mel_mean"]


# ------------------------------------------------------------------------------ CLI
def test_cli_derive(copy_of_base, model_dir, capsys):
    store, codes, emb = copy_of_base
    url = store.url
    assert main(["derive", url, codes.key[:12], "--embeddings", "--model", str(model_dir)]) == 0
    assert "cached" in capsys.readouterr().out
    assert main(["derive", url, emb.key[:12], "--hrf", "fir:1,2,3"]) == 0
    assert "created" in capsys.readouterr().out
    before = _keys(store)
    assert main(["derive", url, codes.key[:12], "--hrf", "spm", "--hrf-length", "8"]) == 2
    assert "Derive embeddings first" in capsys.readouterr().err
    assert main(["derive", url, emb.key[:12], "--hrf", "hrf2000"]) == 2
    assert "unknown HRF model 'hrf2000'" in capsys.readouterr().err
    assert main(["derive", url, emb.key[:12], "--hrf", "fir:1,2.5"]) == 2
    assert "whole-TR delays" in capsys.readouterr().err
    assert main(["derive", url, "0123456789", "--hrf", "spm"]) == 2
    assert "no complete entry" in capsys.readouterr().err
    assert _keys(store) == before
    assert main(["derive", url, codes.key[:12], "--hrf", "spm", "--hrf-length", "8", "--reference-codes"]) == 0
    assert "warning" in capsys.readouterr().err


def test_resampling_drops_the_parents_frame_grid_and_records_the_source_grid(base):
    """The frame grid of 1 s TRs (frames_per_tr 75, frames before/after it) does not describe 2 s TRs."""
    store, codes, emb = base
    assert "frames_per_tr" in codes.attrs
    conv = store.derive(emb, HRF)
    assert "frames_per_tr" in conv.attrs  # same grid after HRF: still true of the child
    res = store.derive(conv, Resample(2.0))
    for name in ("frames_per_tr", "frames_before_grid", "frames_after_grid"):
        assert name not in res.attrs, name
    assert res.attrs["source_grid"] == {"tr_s": 1.0, "onset_s": 0.0, "n_trs": 10}
    per_prev = store.derive(codes, Resample(2.0, method="previous"))
    assert "frames_per_tr" not in per_prev.attrs and per_prev.attrs["tr_s"] == 2.0
