"""The PyTorch Dataset (giblet_store.training.dataset) on a real store: a codes entry, a features entry, an fmri entry."""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from giblet_store import TrGrid, content_key, open_store
from giblet_store.codec.encodec import CodecParams
from giblet_store.errors import ParameterError
from giblet_store.features.codes import extract_codes
from giblet_store.fmri.ingest import FmriParams, ingest_fmri
from giblet_store.training.dataset import DatasetRequestError, StoreDataset, split_trs

TR = 0.5
N_TRS = 20
CHUNK = 4  # fmri chunk_trs: 5 units per subject


def features_entry(store, parent, n_trs=N_TRS, tr_s=TR, name="emb", seed=0, source=None):
    """An HRF-derived-style features entry (tr, frame, dim) float32 + (tr,) int16, written through store.write."""
    rng = np.random.default_rng(seed)
    ds = xr.Dataset({name: (("tr", "frame", "dim"), rng.standard_normal((n_trs, 3, 2)).astype(np.float32)),
                     "count": (("tr",), np.arange(n_trs, dtype=np.int16))},
                    coords={"tr": np.arange(n_trs), "tr_start_s": (("tr",), tr_s * np.arange(n_trs))})
    inputs = {"parent": parent.key, "seed": seed, "n_trs": n_trs, "tr_s": tr_s, "name": name}
    attrs = {"kind": "features", "key": content_key(inputs), "parent": parent.key, "parent_kind": parent.kind,
             "transform": "hrf", "transform_params": {"model": "spm"}, "variables": [name, "count"], "axis": "tr",
             "tr_s": tr_s, "onset_s": 0.0, "n_trs": n_trs, "hrf": "spm", "hrf_params": {"peak_delay_s": 6.0},
             "algorithm_version": 1, "inputs": inputs,
             "source_sha256": source or parent.attrs.get("source_sha256"), "source_name": "tone.wav"}
    return store.write(ds, attrs, {name: {"chunks": (7, 3, 2)}, "count": {"chunks": (7,)}})[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory, model_dir, tone_wav):
    """Store with codes (20 TRs of 0.5 s), a features entry, and fmri of 2 subjects x 20 TRs x 60 voxels."""
    root = tmp_path_factory.mktemp("torch")
    store = open_store(root / "store")
    codes = extract_codes(store, tone_wav, CodecParams(str(model_dir), 1.5), TrGrid(TR)).entry
    assert codes.attrs["n_trs"] == N_TRS
    feats = features_entry(store, codes)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(2):
        img = nib.Nifti1Image((100 + rng.standard_normal((5, 4, 3, N_TRS))).astype(np.float32), np.eye(4))
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((1.0, 1.0, 1.0, TR))
        paths.append(root / f"sub{i}.nii")
        nib.save(img, str(paths[-1]))
    fmri = ingest_fmri(store, paths, ["s0", "s1"], mask=np.ones((5, 4, 3), bool), stimulus=codes,
                       params=FmriParams(zscore_trs=(0, 12)), chunk_trs=CHUNK).entry
    return {"store": store, "codes": codes, "feats": feats, "fmri": fmri,
            "c": store.open(codes).load(), "f": store.open(feats).load(), "y": store.open(fmri)["fmri"].values}


def make(world, **kw):
    kw.setdefault("features", [(world["codes"], ["codes", "n_frames"]), world["feats"]])
    return StoreDataset(world["store"], world["fmri"].key, **kw)


def pairs(batches) -> list[tuple[int, int]]:
    return [(int(s), int(t)) for b in batches for s, t in zip(b["subject"], b["tr"])]


def check_values(world, b, window=None):
    s, t = b["subject"].numpy(), b["tr"].numpy()
    np.testing.assert_array_equal(b["fmri"].numpy(), world["y"][s, t])
    rows = t if window is None else t[:, None] + np.arange(-window, 1)
    np.testing.assert_array_equal(b["codes"].numpy(), world["c"]["codes"].values[rows])
    np.testing.assert_array_equal(b["n_frames"].numpy(), world["c"]["n_frames"].values[rows])
    np.testing.assert_array_equal(b["emb"].numpy(), world["f"]["emb"].values[rows])


# ------------------------------------------------------------------------------------ samples
def test_samples_join_codes_features_and_fmri(world):
    ds = make(world, shuffle=False)
    assert len(ds) == 2 * N_TRS and ds.subjects == ["s0", "s1"]
    samples = list(ds)
    assert len(samples) == len(ds)
    x = samples[7]
    assert x["codes"].dtype == torch.int64 and x["codes"].shape == (2, 38)  # (codebook, frame): 37.5 frames/TR
    assert x["n_frames"].dtype == torch.int64 and x["n_frames"].shape == ()
    assert x["fmri"].dtype == torch.float32 and x["fmri"].shape == (60,)
    assert x["emb"].dtype == torch.float32 and x["emb"].shape == (3, 2)
    assert x["count"].dtype == torch.int64
    batch = torch.utils.data.default_collate(samples)
    check_values(world, batch)
    assert {k: v[0] for k, v in ds.sample_shapes.items()} == {k: tuple(v.shape) for k, v in x.items()}
    assert ds.feature_keys == sorted([world["codes"].key, world["feats"].key])
    direct = ds[N_TRS + 3]  # canonical order: subject-major
    assert int(direct["subject"]) == 1 and int(direct["tr"]) == 3
    np.testing.assert_array_equal(direct["fmri"].numpy(), world["y"][1, 3])


def test_window_of_previous_trs(world):
    ds = make(world, window=3, batch_size=8, seed=2)
    batches = list(ds)
    got = pairs(batches)
    assert sorted(got) == [(s, t) for s in range(2) for t in range(3, N_TRS)]
    assert batches[0]["codes"].shape == (8, 4, 2, 38) and batches[0]["fmri"].shape == (8, 60)
    for b in batches:
        check_values(world, b, window=3)


def test_every_sample_once_per_epoch_in_full_batches(world):
    for bs, drop in [(3, False), (7, False), (64, False), (7, True)]:
        ds = make(world, batch_size=bs, drop_last=drop, chunks_in_memory=2, seed=5)
        batches = list(ds)
        got = pairs(batches)
        assert len(got) == len(set(got))
        sizes = [len(b["tr"]) for b in batches]
        assert all(n == bs for n in sizes[:-1])
        if drop:
            assert len(got) == (len(ds) // bs) * bs
        else:
            assert sorted(got) == [(s, t) for s in range(2) for t in range(N_TRS)]


def test_shuffle_is_deterministic_for_a_seed_and_changes_with_epoch(world):
    a = pairs(make(world, batch_size=5, seed=11))
    b = pairs(make(world, batch_size=5, seed=11))
    c = pairs(make(world, batch_size=5, seed=12))
    assert a == b and a != c
    ds = make(world, batch_size=5, seed=11)
    ds.set_epoch(1)
    assert pairs(ds) != a
    assert a != sorted(a)  # shuffled, across subjects and chunks
    first = set(a[:10])
    assert len({s for s, _ in first}) == 2 or len({t // CHUNK for _, t in first}) > 1


def test_reads_whole_chunks_once_per_epoch(world, monkeypatch):
    ds = make(world, batch_size=4, chunks_in_memory=3, io_threads=0)
    state = ds._state()
    reads = []

    class Spy:
        def __init__(self, arr):
            self.arr = arr

        def __getitem__(self, idx):
            reads.append(idx)
            return self.arr[idx]

    state["fmri"] = Spy(state["fmri"])
    list(ds)
    units = ds.units_for()
    assert len(reads) == len(units) == 2 * (N_TRS // CHUNK)
    assert sorted((int(i[0]), i[1].start, i[1].stop) for i in reads) == sorted(map(tuple, units.tolist()))
    codes_reader = state["readers"]["codes"]
    assert len(codes_reader.cache) == 1  # the stimulus is decoded once and shared by both subjects


def test_subjects_and_tr_range(world):
    ds = make(world, subjects=["s1"], trs=(4, 12), batch_size=3, window=2)
    got = pairs(ds)
    assert sorted(got) == [(0, t) for t in range(4, 12)]  # subject index into ds.subjects == ["s1"]
    b = next(iter(ds))
    np.testing.assert_array_equal(b["fmri"].numpy(), world["y"][1, b["tr"].numpy()])


def test_explicit_names_for_features(world):
    ds = make(world, features={"c": (world["codes"], "codes"), "e": (world["feats"], "emb")}, batch_size=4)
    b = next(iter(ds))
    assert set(b) == {"c", "e", "fmri", "subject", "tr"}
    np.testing.assert_array_equal(b["c"].numpy(), world["c"]["codes"].values[b["tr"].numpy()])


def test_derived_embeddings_and_hrf_features(world, model_dir):
    """Entries made by store.derive (RVQ embeddings, causal HRF) join like any per-TR entry."""
    from giblet_store.features.derive import Embeddings
    from giblet_store.features.hrf import Hrf

    store = world["store"]
    emb = store.derive(world["codes"], Embeddings(), model=str(model_dir))
    conv = store.derive(emb, Hrf("spm", length_s=8.0))
    ds = make(world, features={"mean": (emb, "embedding_mean"), "hrf": (conv, "embedding_mean"),
                               "frames": (emb, "embeddings")}, batch_size=16, window=1)
    b = next(iter(ds))
    rows = b["tr"].numpy()[:, None] + np.arange(-1, 1)
    e, h = store.open(emb).load(), store.open(conv).load()
    np.testing.assert_array_equal(b["mean"].numpy(), e["embedding_mean"].values[rows])
    np.testing.assert_array_equal(b["hrf"].numpy(), h["embedding_mean"].values[rows])
    np.testing.assert_array_equal(b["frames"].numpy(), e["embeddings"].values[rows])  # NaN tails kept
    assert b["frames"].dtype == torch.float32 and b["frames"].shape[:2] == (16, 2)
    assert set(ds.feature_keys) == {emb.key, conv.key}


# ------------------------------------------------------------------------------------ DataLoader
@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_fork_workers_read_different_chunks(world, workers):
    ds = make(world, batch_size=3, seed=3)
    loader = ds.loader(num_workers=workers, multiprocessing_context="fork" if workers else None)
    batches = list(loader)
    got = pairs(batches)
    assert sorted(got) == [(s, t) for s in range(2) for t in range(N_TRS)]
    for b in batches:
        check_values(world, b)
    if workers:
        # in-order DataLoader: batch i comes from worker i % 2 (while both have batches); each worker's
        # samples come only from the units sharded to it
        owned = []
        for w in range(workers):
            owned.append({(int(s), t) for s, a, e in ds.units_for(w, workers) for t in range(a, e)})
        assert not owned[0] & owned[1]
        per_worker = [[], []]
        for i, b in enumerate(batches[: 2 * min(len(batches) // 2, 5)]):
            per_worker[i % 2].extend(pairs([b]))
        pos = {name: i for i, name in enumerate(ds.subjects)}
        for w in range(2):
            assert {(pos[ds.subjects[s]], t) for s, t in per_worker[w]} <= owned[w]


def test_dataloader_spawn_and_pickle(world):
    ds = make(world, batch_size=8, seed=4)
    list(ds)  # opens the store in this process; pickling must drop it
    clone = pickle.loads(pickle.dumps(ds))
    assert "_st" not in clone.__dict__ and pairs(clone) == pairs(ds)
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    got = pairs(loader)
    assert sorted(got) == [(s, t) for s in range(2) for t in range(N_TRS)]


def test_window_zero_keeps_a_window_axis_of_one(world):
    """window=k gives features a leading axis of k + 1, for k = 0 too (issue 20 item 6); None: no axis."""
    for batch_size in (5, None):
        ds = make(world, window=0, batch_size=batch_size, shuffle=False)
        x = next(iter(ds))
        lead = () if batch_size is None else (5,)
        assert x["codes"].shape == lead + (1, 2, 38) and x["emb"].shape == lead + (1, 3, 2)
        assert x["n_frames"].shape == lead + (1,) and x["fmri"].shape == lead + (60,)
        assert ds.sample_shapes["codes"] == ((1, 2, 38), torch.int64) and len(ds) == 2 * N_TRS
        one = make(world, window=1, batch_size=batch_size, shuffle=False)
        assert next(iter(one))["emb"].ndim == x["emb"].ndim  # the same rank at window 0 and 1
    b = next(iter(make(world, window=0, batch_size=7, seed=3)))
    check_values(world, b, window=0)
    plain = make(world, shuffle=False)  # the default: one TR, no window axis
    assert plain.window is None and next(iter(plain))["codes"].shape == (2, 38)


def test_repr_says_what_the_dataset_serves_and_dir_lists_the_lazy_names(world):
    """issue 20 item 15: a repr for StoreDataset; dir(gs) lists the names imported on first use."""
    import giblet_store as gs

    text = repr(make(world, window=1, batch_size=4))
    for part in (f"<StoreDataset fmri {world['fmri'].key[:12]}", "subjects ['s0', 's1']", f"{2 * (N_TRS - 1)} samples",
                 f"TRs 1:{N_TRS}", "60 voxels", "window=1", "batch_size=4", "shuffle=True",
                 "codes (2, 2, 38) int64", "emb (2, 3, 2) float32"):
        assert part in text, (part, text)
    assert "window=None" in repr(make(world, features=None)) and "features: none" in repr(make(world, features=None))
    names = dir(gs)
    assert {"StoreDataset", "run_batch", "compare_codecs", "CompareReport", "open_store"} <= set(names)
    assert set(gs.__all__) <= set(names)


def test_per_sample_mode_with_dataloader_batching(world):
    ds = make(world, window=1)
    loader = DataLoader(ds, batch_size=6, num_workers=0)
    batches = list(loader)
    assert batches[0]["codes"].shape == (6, 2, 2, 38)
    assert sorted(pairs(batches)) == [(s, t) for s in range(2) for t in range(1, N_TRS)]


def test_rank_sharding_partitions_units(world):
    a = pairs(make(world, batch_size=4, rank=0, world_size=2))
    b = pairs(make(world, batch_size=4, rank=1, world_size=2))
    assert not set(a) & set(b) and len(a) + len(b) == 2 * N_TRS


# ------------------------------------------------------------------------------------ bad requests
def test_requests_that_do_not_overlap(world):
    store = world["store"]
    before = [e.key for e in store.entries()]
    with pytest.raises(DatasetRequestError, match=r"\['s9'\] not in fmri entry"):
        make(world, subjects=["s0", "s9"])
    with pytest.raises(DatasetRequestError, match="not within the TRs 0:20"):
        make(world, trs=(10, 25))
    with pytest.raises(DatasetRequestError, match="not within"):
        make(world, trs=(12, 8))
    with pytest.raises(DatasetRequestError, match="no sample with window=6"):
        make(world, trs=(0, 5), window=6)
    with pytest.raises(DatasetRequestError, match="no variable 'mel'"):
        make(world, features=(world["codes"], "mel"))
    with pytest.raises(DatasetRequestError, match="named 'codes'"):
        make(world, features=[world["codes"], (world["codes"], "codes")])
    with pytest.raises(DatasetRequestError, match="give an fmri entry"):
        StoreDataset(store, world["codes"].key, world["feats"])
    with pytest.raises(DatasetRequestError, match="fmri entry cannot also be a feature"):
        make(world, features=world["fmri"])
    with pytest.raises(ParameterError, match="window"):
        make(world, window=-1)
    # a feature entry on another TR grid, or from another stimulus
    other_tr = features_entry(store, world["codes"], tr_s=1.0, seed=1)
    with pytest.raises(DatasetRequestError, match="TR mismatch.*1 s grid"):
        make(world, features=other_tr)
    other_movie = features_entry(store, world["codes"], seed=2, source="f" * 64)
    with pytest.raises(DatasetRequestError, match="comes from stimulus"):
        make(world, features=other_movie)
    short = features_entry(store, world["codes"], n_trs=10, seed=3)
    assert make(world, features=short).trs == (0, 10)  # the shared TRs
    with pytest.raises(DatasetRequestError, match="0:10"):
        make(world, features=short, trs=(0, 15))
    assert set(before) <= {e.key for e in store.entries()}
    for e in (other_tr, other_movie, short):
        store.delete(e)
    assert [e.key for e in store.entries()] == before


# ------------------------------------------------------------------------------------ splits
def test_split_trs_gaps_and_coverage():
    s = split_trs(100, (0.8, 0.1, 0.1), gap=5)
    assert s == {"train": (0, 72), "val": (77, 86), "test": (91, 100)}
    for n in (40, 57, 946, 1976):
        for gap in (0, 3, 6):
            sp = split_trs(n, (0.7, 0.15, 0.15), gap=gap)
            ranges = list(sp.values())
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            for (a0, b0), (a1, b1) in zip(ranges, ranges[1:]):
                assert a0 < b0 and a1 - b0 == gap and a1 < b1
    assert split_trs(20, (0.6, 0, 0.4), gap=2) == {"train": (0, 11), "test": (13, 20)}
    with pytest.raises(ParameterError):
        split_trs(5, (0.8, 0.1, 0.1), gap=3)


# ------------------------------------------------------------------------------------ DataLoader conventions
@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batch_size_is_the_documented_path(world, workers):
    from torch.utils.data import DataLoader

    ds = make(world, seed=5)  # serves samples; the DataLoader batches
    dl = DataLoader(ds, batch_size=8, num_workers=workers, multiprocessing_context="fork" if workers else None)
    batches = list(dl)
    assert batches[0]["fmri"].shape == (8, 60) and batches[0]["codes"].shape == (8, 2, 38)
    assert sorted(pairs(batches)) == [(s, t) for s in range(2) for t in range(N_TRS)]
    for b in batches:
        check_values(world, b)


def test_batching_twice_is_refused_not_nested(world):
    from torch.utils.data import DataLoader

    from giblet_store.errors import ParameterError

    ds = make(world, batch_size=3)
    with pytest.raises(ParameterError, match=r"already serves batches of 3 .* DataLoader\(ds, batch_size=None\)"):
        next(iter(DataLoader(ds, batch_size=2)))
    with pytest.raises(ParameterError, match="already serves batches of 3"):
        ds.loader(batch_size=2)
    b = next(iter(DataLoader(ds, batch_size=None)))
    assert b["fmri"].shape == (3, 60)


def test_loader_has_an_explicit_signature(world):
    import inspect

    params = inspect.signature(StoreDataset.loader).parameters
    assert {"batch_size", "num_workers", "pin_memory", "prefetch_factor", "persistent_workers"} <= set(params)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    dl = make(world).loader(batch_size=5)
    assert dl.batch_size == 5 and dl.pin_memory == torch.cuda.is_available()
    assert next(iter(dl))["fmri"].shape == (5, 60)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_pin_memory(world):
    from torch.utils.data import DataLoader

    for dl in (DataLoader(make(world), batch_size=4, pin_memory=True), make(world, batch_size=4).loader(pin_memory=True)):
        b = next(iter(dl))
        assert all(v.is_pinned() for v in b.values())
