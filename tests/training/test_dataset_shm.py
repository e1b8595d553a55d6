"""DataLoader workers hand a group's batches over in one shared-memory buffer (giblet_store.training.dataset)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from giblet_store import open_store
from giblet_store.fmri.ingest import ingest_fmri
from giblet_store.training.dataset import StoreDataset


@pytest.fixture(scope="module")
def fmri_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("shm")
    img = nib.Nifti1Image((100 + np.random.default_rng(0).standard_normal((3, 3, 2, 40))).astype(np.float32), np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((1.0, 1.0, 1.0, 1.0))
    nib.save(img, str(root / "s.nii"))
    store = open_store(root / "store")
    fmri = ingest_fmri(store, [root / "s.nii"], ["s"], mask=np.ones((3, 3, 2), bool), chunk_trs=4).entry
    return store, fmri, store.open(fmri)["fmri"].values


def test_worker_batches_of_a_group_share_one_shared_buffer(fmri_store):
    store, fmri, y = fmri_store
    ds = StoreDataset(store, fmri.key, batch_size=3, chunks_in_memory=4, seed=1)  # groups of 16 samples
    batches = list(ds.loader(num_workers=1, multiprocessing_context="fork"))
    assert sum(len(b["tr"]) for b in batches) == 40
    for b in batches:  # the values are the stored ones
        np.testing.assert_array_equal(b["fmri"].numpy(), y[b["subject"].numpy(), b["tr"].numpy()])
    ptr = [b["fmri"].untyped_storage().data_ptr() for b in batches]
    assert all(b[k].untyped_storage().data_ptr() == p for b, p in zip(batches, ptr) for k in b)  # one buffer a batch
    assert len(set(ptr[:5])) == 1  # batches 0-4 (samples 0-14) all come from group 0's one segment
    assert len(set(ptr)) < len(ptr)


def test_main_process_batches_are_plain_and_separate(fmri_store):
    store, fmri, y = fmri_store
    ds = StoreDataset(store, fmri.key, batch_size=3, chunks_in_memory=4, seed=1)
    batches = list(ds.loader(num_workers=0))
    assert not batches[0]["fmri"].is_shared()
    np.testing.assert_array_equal(np.concatenate([b["fmri"].numpy() for b in batches]),
                                  y[np.concatenate([b["subject"].numpy() for b in batches]),
                                    np.concatenate([b["tr"].numpy() for b in batches])])
