"""The samples of a training request: (subject, tr) pairs of an fmri entry joined with per-TR features.

Torch-free. :func:`plan_samples` checks a request against the store before anything is read (an fmri
entry; feature variables whose first dim is ``tr`` on the fMRI's TR grid; subjects; a TR range inside
the TRs that every entry shares; a window of previous TRs) and returns a :class:`SamplePlan`: the
subjects, the sample TRs, the feature variables and the **units** (one stored fmri chunk each: one
subject x ``chunk_trs`` TRs x every voxel) that a loader reads. :func:`split_trs` makes train /
validation / test TR ranges with gaps. :class:`TrReader` serves TR rows of a per-TR variable,
decoding each chunk once per process: the stimulus is shared by every subject, never copied.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from .errors import DatasetRequestError, ParameterError  # noqa: F401
from .store import Entry, Store, open_store

__all__ = ["DatasetRequestError", "split_trs", "Feature", "SamplePlan", "plan_samples", "out_dtype", "TrReader"]

#: names every sample has; features cannot take them
RESERVED = ("fmri", "subject", "tr")



def split_trs(
    n_trs: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), gap: int = 0, start: int = 0,
    names: Sequence[str] = ("train", "val", "test"),
) -> dict[str, tuple[int, int]]:
    """Contiguous TR ranges for train/validation/test with ``gap`` TRs left out between them.

    Leave a gap at least as long as the ``window`` plus the haemodynamic lag (~6 s / TR) so that no
    sample of one split sees the TRs of another.

    Parameters
    ----------
    n_trs : TRs available from ``start``
    fractions : shares of the TRs (after removing the gaps), one per name; 0 omits that split
    gap : TRs dropped between consecutive splits
    start : first usable TR

    Returns
    -------
    dict name -> (start, stop), stop exclusive

    Examples
    --------
    >>> split_trs(100, (0.8, 0.1, 0.1), gap=5)
    {'train': (0, 72), 'val': (77, 86), 'test': (91, 100)}
    """
    fr = [float(f) for f in fractions]
    if len(fr) != len(names) or any(f < 0 for f in fr) or sum(fr) <= 0:
        raise ParameterError(f"fractions must be {len(names)} non-negative numbers with a positive sum, got {fractions!r}")
    if gap < 0 or start < 0:
        raise ParameterError(f"gap and start must be >= 0, got gap={gap}, start={start}")
    used = [(n, f) for n, f in zip(names, fr) if f > 0]
    usable = n_trs - gap * (len(used) - 1)
    if usable < len(used):
        raise ParameterError(f"{n_trs} TRs cannot hold {len(used)} split(s) with gap {gap}; use a smaller gap")
    total = sum(f for _, f in used)
    out, pos, acc = {}, start, 0.0
    for i, (name, f) in enumerate(used):
        acc += f
        stop = start + usable + gap * i if i == len(used) - 1 else start + round(usable * acc / total) + gap * i
        if stop <= pos:
            raise ParameterError(f"split {name!r} gets no TR from {n_trs} TRs; give it a larger fraction")
        out[name] = (pos, stop)
        pos = stop + gap
    return out


class Feature(NamedTuple):
    """One joined variable: where it is stored and what one TR of it looks like."""

    key: str
    path: str
    var: str
    shape: tuple[int, ...]  # per TR
    dtype: np.dtype  # stored
    n_trs: int


def out_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a stored feature is served as: integers int64, floats float32, bools bool."""
    if dtype.kind in "iu":
        return np.dtype(np.int64)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype.kind == "b":
        return np.dtype(bool)
    raise DatasetRequestError(f"a feature of dtype {dtype} cannot become a tensor; give numeric variables")


class TrReader:
    """Rows ``a:b`` of a per-TR zarr array, whole chunks decoded once and kept (LRU, byte budget).

    An array that fits the budget (codes of a whole movie: ~36 MB at 6 kbps for 20,000 TRs) is read
    in one call on first use, so zarr decodes its chunks in parallel.
    """

    def __init__(self, arr, budget: int):
        self.arr = arr
        self.c = int(arr.chunks[0])
        self.budget = budget
        self.whole = int(arr.nbytes) <= budget
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.lock = threading.Lock()

    def _chunk(self, ci: int) -> np.ndarray:
        got = self.cache.get(ci)
        if got is not None:
            self.cache.move_to_end(ci)
            return got
        if self.whole:
            full = np.asarray(self.arr[:])
            for k in range(-(-full.shape[0] // self.c)):
                self.cache[k] = full[k * self.c : (k + 1) * self.c]
            self.nbytes = full.nbytes
            return self.cache[ci]
        got = np.asarray(self.arr[ci * self.c : (ci + 1) * self.c])
        self.cache[ci] = got
        self.nbytes += got.nbytes
        while self.nbytes > self.budget and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.nbytes -= old.nbytes
        return got

    def rows(self, a: int, b: int) -> np.ndarray:
        with self.lock:
            parts = []
            for ci in range(a // self.c, (b - 1) // self.c + 1):
                lo = ci * self.c
                parts.append(self._chunk(ci)[max(a, lo) - lo : min(b, lo + self.c) - lo])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


@dataclass(frozen=True, eq=False)
class SamplePlan:
    """What a loader serves: checked against the store by :func:`plan_samples`.

    Attributes
    ----------
    url : the store's URL (reopened in each worker process)
    fmri_key, fmri_path : the fmri entry
    tr_s : TR in seconds; n_voxels : voxels per sample; chunk_trs : TRs per stored fmri chunk
    subjects : subject IDs served (sample ``subject`` indexes this)
    subject_index : (subject,) int64 positions of ``subjects`` in the fmri entry
    trs : (start, stop) requested; sample_trs : (max(start, window), stop), the TRs served
    window : previous TRs joined to each sample
    features : output name -> Feature
    units : (unit, 3) int64 rows (fmri subject index, first TR, stop TR), one per stored chunk
    """

    url: str
    fmri_key: str
    fmri_path: str
    tr_s: float
    n_voxels: int
    chunk_trs: int
    subjects: tuple[str, ...]
    subject_index: np.ndarray
    trs: tuple[int, int]
    sample_trs: tuple[int, int]
    window: int
    features: dict
    units: np.ndarray

    @property
    def n_samples(self) -> int:
        return len(self.subjects) * (self.sample_trs[1] - self.sample_trs[0])

    @property
    def feature_keys(self) -> list[str]:
        return sorted({f.key for f in self.features.values()})


def plan_samples(store: Store | str, fmri: Entry | str, features: Any = None, *, subjects: Sequence[str] | None = None,
                 trs: tuple[int, int] | None = None, window: int = 0) -> SamplePlan:
    """Check a request against the store and plan its samples; see :class:`giblet_store.torch.StoreDataset`.

    Raises
    ------
    DatasetRequestError
        The fmri entry is not one, a feature variable is not per-TR or not on the fMRI's TR grid
        (TR, stimulus, onset), unknown or duplicate subjects or names, or a TR range that does not
        lie within the TRs that fmri and every feature share.
    """
    st = store if isinstance(store, Store) else open_store(store, mode="r")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ParameterError(f"window must be an integer >= 0, got {window!r}")
    window = int(window)
    fe = st.get(fmri)
    if fe.kind != "fmri":
        raise DatasetRequestError(f"entry {fe.key[:16]} is a {fe.kind!r} entry; give an fmri entry as fmri")
    fds = st.open(fe)
    all_subjects = [str(s) for s in fds["subject"].values]
    n_trs = int(fds.sizes["tr"])
    chunk_trs = int(fds["fmri"].encoding.get("chunks", (1, n_trs))[1])
    specs = _resolve_features(st, fe, features)
    common = min([n_trs] + [f.n_trs for f in specs.values()])
    if trs is None:
        lo, hi = 0, common
    else:
        try:
            lo, hi = (int(x) for x in trs)
        except (TypeError, ValueError):
            raise DatasetRequestError(f"trs must be a (start, stop) pair, got {trs!r}") from None
        if not 0 <= lo < hi <= common:
            raise DatasetRequestError(
                f"TR range {lo}:{hi} is not within the TRs 0:{common} that fmri entry {fe.key[:16]} "
                f"({n_trs} TRs) and the features share; give 0 <= start < stop <= {common}"
            )
    sample_trs = (max(lo, window), hi)
    if sample_trs[0] >= hi:
        raise DatasetRequestError(
            f"TR range {lo}:{hi} holds no sample with window={window} (the first sample needs TR >= {window}); "
            "widen the range or shrink the window"
        )
    if subjects is None:
        subjects = all_subjects
    else:
        subjects = [subjects] if isinstance(subjects, str) else [str(s) for s in subjects]
        unknown = [s for s in subjects if s not in all_subjects]
        if unknown or not subjects or len(set(subjects)) != len(subjects):
            raise DatasetRequestError(
                f"subjects {subjects!r}: " + (f"{unknown} not in fmri entry {fe.key[:16]}" if unknown else
                                              "empty or repeated") + f"; it holds {all_subjects}"
            )
    index = np.array([all_subjects.index(s) for s in subjects], dtype=np.int64)
    return SamplePlan(
        url=st.url, fmri_key=fe.key, fmri_path=fe.path, tr_s=float(fe.attrs["tr_s"]),
        n_voxels=int(fds.sizes["voxel"]), chunk_trs=chunk_trs, subjects=tuple(subjects), subject_index=index,
        trs=(lo, hi), sample_trs=sample_trs, window=window, features=specs,
        units=_units(index, sample_trs, chunk_trs),
    )


def _resolve_features(st: Store, fe: Entry, features) -> dict[str, Feature]:
    """Output name -> Feature for every requested variable, checked against the fMRI's grid."""
    if features is None:
        return {}
    if isinstance(features, Mapping):
        items = [(name, spec) for name, spec in features.items()]
    else:
        if isinstance(features, (str, Entry)) or (isinstance(features, tuple) and len(features) == 2
                                                  and isinstance(features[1], (str, list))):
            features = [features]
        items = [(None, spec) for spec in features]
    out: dict[str, Feature] = {}
    opened: dict[str, Any] = {}
    for name, spec in items:
        if isinstance(spec, tuple):
            ref, names = spec
            names = [names] if isinstance(names, str) else list(names)
        else:
            ref, names = spec, None
        entry = st.get(ref)
        if entry.key == fe.key:
            raise DatasetRequestError("the fmri entry cannot also be a feature; give stimulus entries as features")
        _check_grid(fe, entry)
        if entry.key not in opened:
            opened[entry.key] = st.open(entry)
        ds = opened[entry.key]
        per_tr = [v for v, da in ds.data_vars.items() if da.dims and da.dims[0] == "tr"]
        if names is None:
            names = per_tr
            if not names:
                raise DatasetRequestError(f"entry {entry.key[:16]} ({entry.kind}) has no variable with tr first")
        for var in names:
            if var not in ds.data_vars:
                raise DatasetRequestError(
                    f"entry {entry.key[:16]} ({entry.kind}) has no variable {var!r}; it has {sorted(ds.data_vars)}")
            if var not in per_tr:
                raise DatasetRequestError(
                    f"variable {var!r} of entry {entry.key[:16]} has dims {ds[var].dims}; a feature needs tr first")
            out_name = name if (name is not None and len(names) == 1) else var
            if out_name in out or out_name in RESERVED:
                raise DatasetRequestError(
                    f"two features (or a feature and {RESERVED}) are named {out_name!r}; name them with a "
                    "mapping, e.g. features={'codes_6k': (key, 'codes'), ...}")
            da = ds[var]
            out_dtype(np.dtype(da.dtype))  # refuses non-numeric variables
            out[out_name] = Feature(entry.key, entry.path, var, tuple(da.shape[1:]), np.dtype(da.dtype),
                                     int(da.shape[0]))
    return out


def _check_grid(fe: Entry, entry: Entry) -> None:
    """A feature entry must be on the fMRI's TR grid (TR; stimulus and onset when the fMRI names one)."""
    fa, ea = fe.attrs, entry.attrs
    tr = ea.get("tr_s")
    if tr is not None and abs(float(tr) - float(fa["tr_s"])) > 1e-6 * float(fa["tr_s"]):
        raise DatasetRequestError(
            f"TR mismatch: feature entry {entry.key[:16]} ({entry.kind}) is on a {tr:g} s grid, fmri entry "
            f"{fe.key[:16]} on {fa['tr_s']:g} s; extract the stimulus on the fMRI's TR")
    if fa.get("stimulus_key"):  # the fMRI was paired with a stimulus at ingest: hold features to it
        src, mine = ea.get("source_sha256"), fa.get("stimulus_sha256")
        if src and mine and src != mine:
            raise DatasetRequestError(
                f"feature entry {entry.key[:16]} comes from stimulus {ea.get('source_name', src[:12])!r}, but "
                f"fmri entry {fe.key[:16]} was recorded with {fa.get('stimulus_name') or mine[:12]!r}")
        on = ea.get("onset_s")
        if on is not None and abs(float(on) - float(fa.get("onset_s", 0.0))) > 1e-9:
            raise DatasetRequestError(
                f"feature entry {entry.key[:16]} has onset_s={on} but the fMRI's TR 0 is at stimulus time "
                f"{fa.get('onset_s')} s; extract the stimulus with the same onset")


def _units(subject_index: np.ndarray, sample_trs: tuple[int, int], chunk_trs: int) -> np.ndarray:
    """(unit, 3) int64 rows (fmri subject index, first TR, stop TR), one per stored chunk."""
    lo, hi = sample_trs
    rows = []
    for s in subject_index:
        for a in range((lo // chunk_trs) * chunk_trs, hi, chunk_trs):
            rows.append((s, max(a, lo), min(a + chunk_trs, hi)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)
