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

from ..errors import DatasetRequestError, ParameterError  # noqa: F401
from ..fmri.runs import run_table
from ..store.conventions import space_dim
from .censoring import censored_mask, n_uncensored
from .sample_runs import run_attrs, sample_ranges, split_trs, units as _run_units
from ..store.core import Entry, Store, open_store
from ..validate import int_in_range

__all__ = ["DatasetRequestError", "split_trs", "Feature", "SamplePlan", "plan_samples", "out_dtype", "TrReader"]

#: names every sample has; features cannot take them
RESERVED = ("fmri", "subject", "tr")



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
    tr_s : TR in seconds; n_voxels : voxels (or parcels, for a parcellated entry) per sample; chunk_trs : TRs per stored fmri chunk
    subjects : subject IDs served (sample ``subject`` indexes this)
    subject_index : (subject,) int64 positions of ``subjects`` in the fmri entry
    trs : (start, stop) requested (the span of the ranges given); sample_trs : the span of the TRs served
    window : previous TRs joined to each sample (never reaching into another run)
    features : output name -> Feature (of the first run; every run has the same names, shapes, dtypes)
    units : (unit, 3) int64 rows (fmri subject index, first TR, stop TR), one per stored chunk and run
    runs, run_offsets : the fmri entry's run IDs and their first global TRs (one run ``"1"`` at 0
        for an entry without runs); run_features : per run, output name -> Feature (its stimulus)
    ranges : the served (start, stop) global TR ranges, none crossing a run; has_runs : the entry
        was ingested with runs (samples then carry ``run``)
    censored : (served subject, tr) bool, the (subject, tr) samples left out (the entry's ``censored``),
        or None when none are (nothing censored, or ``include_censored=True``)
    space : the fmri entry's brain dim, ``voxel`` or ``parcel`` (a parcellated entry)
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
    runs: tuple[str, ...]
    run_offsets: np.ndarray
    run_features: tuple
    ranges: tuple
    has_runs: bool
    censored: np.ndarray | None = None
    space: str = "voxel"

    @property
    def n_samples(self) -> int:
        return n_uncensored(self.sample_index, len(self.subjects), self.censored)

    @property
    def sample_index(self) -> np.ndarray:
        """(tr,) int64 global TRs served, in order (the ranges one after the other)."""
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in self.ranges])

    def run_of(self, tr: int) -> int:
        """Position in :attr:`runs` of the run holding global TR ``tr``."""
        return int(np.searchsorted(self.run_offsets, tr, side="right") - 1)

    @property
    def feature_keys(self) -> list[str]:
        return sorted({f.key for feats in (self.run_features or (self.features,)) for f in feats.values()})


def plan_samples(store: Store | str, fmri: Entry | str, features: Any = None, *, subjects: Sequence[str] | None = None,
                 trs: tuple[int, int] | None = None, window: int = 0, include_censored: bool = False) -> SamplePlan:
    """Check a request against the store and plan its samples; see :class:`giblet_store.training.dataset.StoreDataset`.

    For an fmri entry with runs, ``trs`` may be a list of (start, stop) global TR ranges (as
    ``split_trs(runs=..., leave_out=...)`` makes them), a feature reference may be ``{run: entry}``
    (each run joined with its own stimulus), and no served range, window or unit crosses a run.
    The (subject, tr) samples the entry marks ``censored`` are left out unless ``include_censored``
    (a window may still reach back over a censored TR).

    Raises
    ------
    DatasetRequestError
        The fmri entry is not one, a feature variable is not per-TR or not on the fMRI's TR grid
        (TR, stimulus, onset), unknown or duplicate subjects or names, or a TR range that does not
        lie within the TRs that fmri and every feature share.
    """
    st = store if isinstance(store, Store) else open_store(store, mode="r")
    window = int_in_range("window", window, 0)
    fe = st.get(fmri)
    if fe.kind != "fmri":
        raise DatasetRequestError(f"entry {fe.key[:16]} is a {fe.kind!r} entry; give an fmri entry as fmri")
    fds = st.open(fe)
    all_subjects = [str(s) for s in fds["subject"].values]
    n_trs = int(fds.sizes["tr"])
    chunk_trs = int(fds["fmri"].encoding.get("chunks", (1, n_trs))[1])
    table = run_table(fe.attrs)
    run_features = _resolve_features(st, fe, features, table)
    index = _subject_index(fe, all_subjects, subjects)
    if "runs" in fe.attrs:
        commons = [min([int(r["n_trs"])] + [f.n_trs for f in feats.values()]) for r, feats in zip(table, run_features)]
        ranges = sample_ranges(fe.key, table, commons, trs, window)
        lo_hi = (ranges[0][0], ranges[-1][1]) if trs is None else _span(trs)
    else:
        lo_hi, ranges = _one_run_ranges(fe, n_trs, run_features[0], trs, window)
    return SamplePlan(
        url=st.url, fmri_key=fe.key, fmri_path=fe.path, tr_s=float(fe.attrs["tr_s"]),
        n_voxels=int(fds.sizes[space_dim(fds)]), chunk_trs=chunk_trs, subjects=tuple(index[1]), subject_index=index[0],
        trs=lo_hi, sample_trs=(ranges[0][0], ranges[-1][1]), window=window, features=run_features[0],
        units=_run_units(index[0], ranges, chunk_trs), runs=tuple(str(r["run"]) for r in table),
        run_offsets=np.array([int(r["tr_offset"]) for r in table], dtype=np.int64),
        run_features=tuple(run_features), ranges=tuple(ranges), has_runs="runs" in fe.attrs,
        censored=censored_mask(fds, index[0], include_censored), space=space_dim(fds),
    )


def _span(trs) -> tuple[int, int]:
    from .sample_runs import requested_ranges

    pairs = requested_ranges(trs)
    return min(a for a, _ in pairs), max(b for _, b in pairs)


def _one_run_ranges(fe: Entry, n_trs: int, specs: dict, trs, window: int):
    """An entry without runs: ((start, stop) requested, [(start, stop) served])."""
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
    return (lo, hi), [sample_trs]


def _subject_index(fe: Entry, all_subjects: list[str], subjects) -> tuple[np.ndarray, list[str]]:
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
    return np.array([all_subjects.index(s) for s in subjects], dtype=np.int64), subjects


def _items(features) -> list[tuple[str | None, Any, list[str] | None]]:
    """(output name or None, entry reference (or {run: reference}), variable names or None) per spec."""
    if isinstance(features, Mapping):
        items = [(name, spec) for name, spec in features.items()]
    else:
        if isinstance(features, (str, Entry)) or (isinstance(features, tuple) and len(features) == 2
                                                        and isinstance(features[1], (str, list))):
            features = [features]
        items = [(None, spec) for spec in features]
    out = []
    for name, spec in items:
        if isinstance(spec, tuple):
            ref, names = spec
            out.append((name, ref, [names] if isinstance(names, str) else list(names)))
        else:
            out.append((name, spec, None))
    return out


def _run_ref(ref, rec: dict, n_runs: int):
    """The reference of one run: ``ref`` itself, or ``ref[run]`` for a {run: reference} mapping."""
    if not isinstance(ref, dict):
        return ref
    given = {str(k): v for k, v in ref.items()}
    if rec["run"] not in given:
        raise DatasetRequestError(f"the per-run features {sorted(given)} name no entry for run {rec['run']!r}; "
                                  f"give one per run of the fmri entry")
    return given[rec["run"]]


def _resolve_features(st: Store, fe: Entry, features, table: list[dict] | None = None) -> list[dict[str, Feature]]:
    """Per run, output name -> Feature for every requested variable, checked against that run's grid."""
    table = table or run_table(fe.attrs)
    if features is None:
        return [{} for _ in table]
    per_run: list[dict[str, Feature]] = []
    opened: dict[str, Any] = {}
    for rec in table:
        out: dict[str, Feature] = {}
        for name, ref, names in _items(features):
            entry = st.get(_run_ref(ref, rec, len(table)))
            if entry.key == fe.key:
                raise DatasetRequestError("the fmri entry cannot also be a feature; give stimulus entries as features")
            _check_grid(fe if len(table) == 1 else _RunView(fe, rec), entry)
            if entry.key not in opened:
                opened[entry.key] = st.open(entry)
            _add_variables(out, name, names, entry, opened[entry.key])
        per_run.append(out)
    _same_across_runs(per_run, table)
    return per_run


class _RunView(NamedTuple):
    """An fmri entry as one of its runs sees it (its onset and stimulus), for :func:`_check_grid`."""

    entry: Entry
    rec: dict

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def attrs(self) -> dict:
        return run_attrs(self.entry.attrs, self.rec)


def _add_variables(out: dict, name, names, entry: Entry, ds) -> None:
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
        out[out_name] = Feature(entry.key, entry.path, var, tuple(da.shape[1:]), np.dtype(da.dtype), int(da.shape[0]))


def _same_across_runs(per_run: list[dict[str, Feature]], table: list[dict]) -> None:
    first = per_run[0]
    for rec, feats in zip(table[1:], per_run[1:]):
        for n, f in feats.items():
            if (f.shape, f.dtype) != (first[n].shape, first[n].dtype):
                raise DatasetRequestError(
                    f"feature {n!r} is {f.shape} {f.dtype} per TR in run {rec['run']!r} but {first[n].shape} "
                    f"{first[n].dtype} in run {table[0]['run']!r}; every run's stimulus needs the same features")


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
