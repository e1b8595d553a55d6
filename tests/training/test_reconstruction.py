"""Reconstruction entries: predicted stimulus features on the target's grid, with provenance (giblet_store.training.reconstruction)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import giblet_store as gs
from giblet_store import ReconstructionError, write_reconstruction
from recon_helpers import build_store


def snapshot(store) -> tuple:
    root = Path(store.root)
    return tuple(sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")))


@pytest.fixture(scope="module")
def env(tmp_path_factory, model_dir, tone_wav):
    return build_store(tmp_path_factory.mktemp("recon") / "store", model_dir, tone_wav)


def _prov(env):
    return dict(fmri=env["fmri"], model_name="Ridge(fmri->emb)", checkpoint=env["ckpt"],
                training_params={"alpha": 10.0, "train_trs": [0, 3]})


def test_embeddings_reconstruction_sits_on_the_target_grid(env):
    store, emb = env["store"], env["emb"]
    true = store.open(emb)["embeddings"].values  # (tr, frame, dim), NaN tails
    pred = np.nan_to_num(true[1:4]) + 0.5  # garbage in the tails must not survive
    entry, created = write_reconstruction(store, pred, emb, trs=(1, 4), **_prov(env))
    assert created and entry.kind == "reconstruction" and entry.attrs["feature"] == "embeddings"
    a = entry.attrs
    assert a["parent"] == [env["fmri"].key, emb.key] and a["target_key"] == emb.key
    assert a["checkpoint_sha256"] == hashlib.sha256(env["ckpt"].read_bytes()).hexdigest()
    assert a["subjects"] == ["sub-01"] and a["tr_range"] == [1, 4] and a["n_trs"] == 3
    assert a["training_params"] == {"alpha": 10.0, "train_trs": [0, 3]}
    assert a["model_sha256"] == emb.attrs["model_sha256"] and a["embedding_dim"] == true.shape[2]
    ds = store.open(entry)
    np.testing.assert_array_equal(ds["tr"].values, [1, 2, 3])
    np.testing.assert_array_equal(ds["n_frames"].values, store.open(emb)["n_frames"].values[1:4])
    np.testing.assert_array_equal(np.isnan(ds["embeddings"].values), np.isnan(true[1:4]))
    np.testing.assert_allclose(ds["embeddings"].values, true[1:4] + 0.5)
    keys = [e.key for e in store.lineage(entry)]
    assert keys[:3] == [entry.key, env["fmri"].key, emb.key] and env["codes"].key in keys
    again, created = write_reconstruction(store, pred, emb, trs=[1, 2, 3], **_prov(env))
    assert not created and again == entry


def test_codes_mean_and_mel_reconstructions(env):
    store = env["store"]
    codes = store.open(env["codes"])["codes"].values
    e, _ = write_reconstruction(store, np.where(codes < 0, 7, codes).astype(np.int64), env["codes"], **_prov(env))
    ds = store.open(e)
    np.testing.assert_array_equal(ds["codes"].values, codes)  # the -1 tails come from the target's n_frames
    assert ds["codes"].dtype == np.int16 and e.attrs["n_codebooks"] == 2
    mean = store.open(env["emb"])["embedding_mean"].values
    m, _ = write_reconstruction(store, mean, env["emb"], **_prov(env))
    assert m.attrs["feature"] == "embedding_mean" and store.open(m)["embedding_mean"].dims == ("tr", "dim")
    mel = store.open(env["mel"])["mel"].values
    r, _ = write_reconstruction(store, mel, env["mel"], **_prov(env))
    assert r.attrs["feature"] == "mel" and r.attrs["mel_params"] == env["mel"].attrs["mel_params"]
    np.testing.assert_array_equal(store.open(r)["mel_hz"].values, store.open(env["mel"])["mel_hz"].values)
    assert {x.key for x in store.find(kind="reconstruction", target_key=env["mel"].key)} == {r.key}


@pytest.mark.parametrize("case, match", [
    ("codebooks", "codebook count is 3"),
    ("dim", "embedding dim is"),
    ("grid", "frame slots per TR"),
    ("kind", "sits on a embeddings entry"),
    ("float codes", "must be integer"),
    ("range", "outside \\[0, 1023\\]"),
    ("trs", "within the target's 0:5"),
    ("nan", "NaN/inf"),
    ("checkpoint", "checkpoint"),
    ("fmri", "give the fmri entry"),
    ("subject", "are not distinct subjects"),
])
def test_mismatches_are_refused_and_nothing_is_written(env, case, match):
    store = env["store"]
    codes = store.open(env["codes"])["codes"].values.astype(np.int64)
    emb = np.nan_to_num(store.open(env["emb"])["embeddings"].values)
    kw = _prov(env)
    target, values = env["codes"], codes
    if case == "codebooks":
        values = np.concatenate([codes, codes[:, :1]], axis=1)
    elif case == "dim":
        target, values = env["emb"], emb[..., :-1]
    elif case == "grid":
        target, values = env["emb"], emb[:, :-1]
    elif case == "kind":
        values, kw["feature"] = emb, "embeddings"
    elif case == "float codes":
        values = codes.astype(np.float32)
    elif case == "range":
        values = codes + 1
    elif case == "trs":
        values, kw["trs"] = codes[:2], (4, 6)
    elif case == "nan":
        target, values = env["emb"], np.where(np.arange(emb.shape[1])[None, :, None] == 3, np.nan, emb)
    elif case == "checkpoint":
        kw.pop("checkpoint")
    elif case == "fmri":
        kw["fmri"] = env["mel"]
    elif case == "subject":
        kw["subjects"] = ["sub-99"]
    before = snapshot(store)
    with pytest.raises(ReconstructionError, match=match):
        write_reconstruction(store, values, target, **kw)
    assert snapshot(store) == before


def test_fmri_on_another_tr_is_refused(tmp_path, model_dir, tone_wav):
    store = gs.open_store(tmp_path / "s")
    codes = gs.extract_codes(store, tone_wav, gs.CodecParams(str(model_dir), 1.5), gs.TrGrid(1.0)).entry
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri
    from recon_helpers import FUNCTIONAL

    fmri = ingest_fmri(store, [FUNCTIONAL], ["sub-01"], params=FmriParams(n_trs=5)).entry
    c = store.open(codes)["codes"].values
    with pytest.raises(ReconstructionError, match="has TR 2.0 s but the target .* has TR 1.0 s"):
        write_reconstruction(store, c, codes, fmri=fmri, model_name="m", checkpoint_sha256="a" * 64)
