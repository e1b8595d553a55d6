"""StoreDataset and split_trs skip an fmri entry's censored (scrubbed) TRs by default (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest

import giblet_store as gs
from giblet_store.errors import ParameterError
from giblet_store.testing import make_bids


@pytest.fixture(scope="module")
def scrubbed(tmp_path_factory):
    """A BIDS study ingested with scrubbing: 2 subjects x 2 runs x 40 TRs, censored at different TRs."""
    root = tmp_path_factory.mktemp("censored")
    study = make_bids(root / "ds")
    st = gs.open_store(root / "st")
    fe = gs.ingest_bids(st, study.root, "movie", derivatives="fmriprep",
                        clean=gs.CleanParams(confounds=("motion", "scrub"), motion="basic")).entry
    cens = st.open(fe)["censored"].values
    assert cens.any() and (cens[0] != cens[1]).any() and not cens.all(axis=0)[:10].all()
    return st, fe, cens


def _served(ds) -> list[tuple[int, int]]:
    out = []
    for b in ds:
        out += list(zip(np.atleast_1d(b["subject"].numpy()).tolist(), np.atleast_1d(b["tr"].numpy()).tolist()))
    return out


@pytest.mark.parametrize("batch_size", [None, 7])
def test_censored_trs_never_reach_a_batch_unless_included(scrubbed, batch_size):
    from giblet_store.training.dataset import StoreDataset

    st, fe, cens = scrubbed
    y = st.open(fe)["fmri"].values
    ds = StoreDataset(st, fe, batch_size=batch_size, chunks_in_memory=1, io_threads=0, seed=3)
    got = _served(ds)
    want = {(s, t) for s in range(2) for t in range(80) if not cens[s, t]}
    assert len(got) == len(set(got)) == len(ds) == len(want) and set(got) == want
    assert not any(cens[s, t] for s, t in got)
    every = StoreDataset(st, fe, batch_size=batch_size, chunks_in_memory=1, io_threads=0, include_censored=True)
    got_all = _served(every)
    assert len(every) == 160 and set(got_all) == {(s, t) for s in range(2) for t in range(80)}
    assert sum(cens[s, t] for s, t in got_all) == int(cens.sum())
    if batch_size is None:  # canonical indexing skips them too, and each sample is its own (subject, tr)
        canon = [(int(ds[i]["subject"]), int(ds[i]["tr"])) for i in range(len(ds))]
        assert canon == sorted(want)
        sample = ds[len(ds) - 1]
        np.testing.assert_array_equal(sample["fmri"].numpy(), y[int(sample["subject"]), int(sample["tr"])])


def test_split_trs_shares_uncensored_samples_and_trims_wholly_censored_trs(scrubbed):
    st, fe, cens = scrubbed
    plain = gs.split_trs(80, gap=2)
    assert gs.split_trs(fmri=fe, gap=2, include_censored=True) == plain
    split = gs.split_trs(fmri=fe, gap=2)
    assert split != plain
    live = (~cens).sum(axis=0)
    total = sum(int(live[a:b].sum()) for a, b in split.values())
    for (name, (a, b)), share in zip(split.items(), (0.8, 0.1, 0.1)):
        assert live[a] > 0 and live[b - 1] > 0  # no range starts or ends on a TR every subject censored
        assert abs(int(live[a:b].sum()) / total - share) < 0.05, name
    (a0, b0), (a1, _), (a2, _) = split.values()
    assert a0 == 0 and a1 >= b0 + 2  # the gaps stay
    runs = gs.split_trs(runs=fe, leave_out="2")
    assert gs.split_trs(runs=fe, leave_out="2", include_censored=True) == {"train": [(0, 40)], "test": [(40, 80)]}
    empty = np.flatnonzero(cens.all(axis=0))
    assert runs["test"][0][1] == 40 + int(np.flatnonzero(~cens.all(axis=0)[40:])[-1]) + 1 and empty.max() == 79


def test_split_trs_refuses_a_split_of_only_censored_trs(scrubbed, tmp_path):
    st, fe, cens = scrubbed
    assert cens.all(axis=0)[-5:].all()
    with pytest.raises(ParameterError, match="every subject has censored"):
        gs.split_trs(fmri=fe, n_trs=5, start=75, fractions=(1,), names=("test",))
    with pytest.raises(ParameterError, match="reach past the 80 TRs"):
        gs.split_trs(fmri=fe, n_trs=81)
