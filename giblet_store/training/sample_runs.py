"""Which TRs of which run a training request serves (:func:`giblet_store.training.samples.plan_samples`).

An fmri entry's runs lie one after the other along ``tr`` (:mod:`giblet_store.fmri.runs`); a sample never
crosses a run: its window of previous TRs stays inside its run, and its features come from its own
run's stimulus entry. :func:`sample_ranges` turns a request (``trs``: None, a ``(start, stop)`` pair
or a list of pairs, global TR indices as :func:`giblet_store.training.samples.split_trs` makes them) into the
served ``(start, stop)`` ranges, none crossing a run. :func:`split_trs` makes train/validation/test
ranges: contiguous with gaps, or leave-one-run-out.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DatasetRequestError, ParameterError
from ..fmri.runs import run_table
from ..store.core import Entry
from .censoring import entry_censored, trim_ranges, weighted_bounds

__all__ = ["split_trs", "requested_ranges", "sample_ranges", "units", "run_attrs"]


def split_trs(
    n_trs: int | None = None, fractions: Sequence[float] = (0.8, 0.1, 0.1), gap: int = 0, start: int = 0,
    names: Sequence[str] = ("train", "val", "test"), *, runs: Any = None, leave_out: str | Sequence[str] | None = None,
    val: str | None = None, fmri: Entry | None = None, include_censored: bool = False,
) -> dict:
    """Contiguous TR ranges for train/validation/test with ``gap`` TRs left out between them, or
    leave-one-run-out splits of an entry's runs.

    Leave a gap at least as long as the ``window`` plus the haemodynamic lag (~6 s / TR) so that no
    sample of one split sees the TRs of another.

    Parameters
    ----------
    n_trs : TRs available from ``start``
    fractions : shares of the TRs (after removing the gaps), one per name; 0 omits that split
    gap : TRs dropped between consecutive splits
    start : first usable TR
    runs : instead of ``n_trs``: an fmri entry with runs (or its ``runs`` attribute, or ``{run: n_trs}``
        in order); then ``leave_out`` (a run ID, or a list of them) is the test run(s), ``val``
        optionally the validation run, and every other run trains. Ranges are global TR indices (runs one after the other), as
        :class:`~giblet_store.training.dataset.StoreDataset` and :func:`~giblet_store.evaluate` take them.
    fmri : for a contiguous split, the fmri entry it is for (``n_trs`` defaults to its TRs)
    include_censored : with an fmri entry holding ``censored`` TRs (``fmri=`` or ``runs=`` an entry): False
        (the default) skips them: ``fractions`` are shares of the uncensored (subject, tr) samples, and no
        range starts or ends on a TR that every subject has censored (a run with nothing else is left
        out); True splits as if nothing were censored

    Returns
    -------
    dict name -> (start, stop), stop exclusive; with ``runs``: name -> list of (start, stop), one per run

    Examples
    --------
    >>> split_trs(100, (0.8, 0.1, 0.1), gap=5)
    {'train': (0, 72), 'val': (77, 86), 'test': (91, 100)}
    >>> split_trs(runs={"1": 946, "2": 1030}, leave_out="2")
    {'train': [(0, 946)], 'test': [(946, 1976)]}
    >>> split_trs(runs={"1": 10, "2": 10, "3": 10}, leave_out=["1", "3"])
    {'train': [(10, 20)], 'test': [(0, 10), (20, 30)]}
    """
    if runs is not None or leave_out is not None:
        out = _split_runs(runs, leave_out, val, n_trs)
        cens = entry_censored(runs, include_censored) if isinstance(runs, Entry) else None
        return out if cens is None else _trimmed(out, cens)
    cens = None if fmri is None else entry_censored(fmri, include_censored)
    if fmri is not None and n_trs is None:
        n_trs = int(fmri.open()["fmri"].shape[1])
    used, usable = _used_splits(n_trs, fractions, gap, start, names)
    if cens is not None:
        return _censored_split(fmri.key, cens, n_trs, start, used, gap)
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


def _used_splits(n_trs, fractions, gap: int, start: int, names) -> tuple[list[tuple[str, float]], int]:
    """The (name, fraction) of the splits that get TRs, and the TRs they share (gaps removed)."""
    fr = [float(f) for f in fractions]
    if len(fr) != len(names) or any(f < 0 for f in fr) or sum(fr) <= 0:
        raise ParameterError(f"fractions must be {len(names)} non-negative numbers with a positive sum, got {fractions!r}")
    if gap < 0 or start < 0:
        raise ParameterError(f"gap and start must be >= 0, got gap={gap}, start={start}")
    used = [(n, f) for n, f in zip(names, fr) if f > 0]
    usable = n_trs - gap * (len(used) - 1)
    if usable < len(used):
        raise ParameterError(f"{n_trs} TRs cannot hold {len(used)} split(s) with gap {gap}; use a smaller gap")
    return used, usable


def _censored_split(key: str, cens: np.ndarray, n_trs: int, start: int, used: list, gap: int) -> dict:
    """Contiguous splits sharing the uncensored (subject, tr) samples, trimmed of wholly censored TRs."""
    if start + n_trs > cens.shape[1]:
        raise ParameterError(f"TRs {start}:{start + n_trs} reach past the {cens.shape[1]} TRs of fmri entry "
                             f"{key[:16]}; give n_trs <= {cens.shape[1] - start}")
    bounds = weighted_bounds((~cens[:, : start + n_trs]).sum(axis=0), start, [f for _, f in used], gap)
    return _trimmed({n: [b] for (n, _), b in zip(used, bounds)}, cens, single=True)


def _trimmed(out: dict, cens: np.ndarray, single: bool = False) -> dict:
    """The splits without the TRs at their ends that every subject has censored."""
    empty = cens.all(axis=0)
    trimmed = {n: trim_ranges(r, empty) for n, r in out.items()}
    for n, r in trimmed.items():
        if not r:
            raise ParameterError(f"split {n!r} holds only TRs that every subject has censored ({out[n]}); give it a "
                                 "larger share or other runs, or include_censored=True")
    return {n: r[0] for n, r in trimmed.items()} if single else trimmed


def _split_runs(runs: Any, leave_out, val, n_trs) -> dict[str, list[tuple[int, int]]]:
    """Leave-one-run-out: ``{"train": [...], ("val": [...],) "test": [...]}`` of global TR ranges."""
    if n_trs is not None or runs is None or leave_out is None:
        raise ParameterError("a leave-one-run-out split takes runs= (an fmri entry with runs, or {run: n_trs}) and "
                             "leave_out= (the test run), and no n_trs")
    if isinstance(runs, Entry):
        runs = run_table(runs.attrs)
    if isinstance(runs, Mapping):
        lengths = [(str(r), int(n)) for r, n in runs.items()]
    else:
        lengths = [(str(r["run"]), int(r["n_trs"])) for r in runs]
    ids = [r for r, _ in lengths]
    test = _run_ids(leave_out)
    valid = [] if val is None else [str(val)]
    for what, rs in (("leave_out", test), ("val", valid)):
        for r in rs:
            if r not in ids:
                raise ParameterError(f"{what}={r!r} is not a run of this entry; its runs are {ids}")
    if not test or set(valid) & set(test) or not set(ids) - set(test) - set(valid):
        raise ParameterError(f"leave-one-run-out needs a training run besides the test (and validation) run(s); "
                             f"the runs are {ids}, leave_out={leave_out!r}, val={val!r}")
    out: dict[str, list[tuple[int, int]]] = {"train": []}
    if val is not None:
        out["val"] = []
    out["test"] = []
    pos = 0
    for r, n in lengths:
        name = "test" if r in test else "val" if val is not None and r == str(val) else "train"
        out[name].append((pos, pos + n))
        pos += n
    return out


def _run_ids(leave_out) -> list[str]:
    """``leave_out`` (a run ID or a list of them) as a list of distinct run IDs."""
    items = [leave_out] if isinstance(leave_out, (str, int)) else list(leave_out)
    out = [str(r) for r in items]
    if len(set(out)) != len(out):
        raise ParameterError(f"leave_out={leave_out!r} names a run twice; give each test run once")
    return out


def requested_ranges(trs: Any) -> list[tuple[int, int]] | None:
    """``trs`` as a list of (start, stop) pairs, None for every TR."""
    if trs is None:
        return None
    try:
        if len(trs) == 2 and all(np.ndim(x) == 0 for x in trs):
            pairs = [trs]
        else:
            pairs = list(trs)
        out = [(int(a), int(b)) for a, b in pairs]
    except (TypeError, ValueError):
        raise DatasetRequestError(f"trs must be a (start, stop) pair or a list of them, got {trs!r}") from None
    if not out:
        raise DatasetRequestError("trs is an empty list; give at least one (start, stop) range")
    return out


def _paired(table: list[dict], commons: Sequence[int]) -> str:
    return ", ".join(f"run {r['run']!r}: {r['tr_offset']}:{r['tr_offset'] + c}" for r, c in zip(table, commons))


def sample_ranges(fe_key: str, table: list[dict], commons: Sequence[int], trs, window: int) -> list[tuple[int, int]]:
    """The served global (start, stop) ranges, in order, none crossing a run.

    ``commons``: per run, the TRs (from its start) that the run and its features share.

    Raises
    ------
    DatasetRequestError
        A range outside the entry, reaching TRs of a run that its features do not cover, or no
        sample at all (ranges shorter than the window).
    """
    n_total = sum(int(r["n_trs"]) for r in table)
    wanted = requested_ranges(trs) or [(0, n_total)]
    out = []
    for a, b in wanted:
        if not 0 <= a < b <= n_total:
            raise DatasetRequestError(f"TR range {a}:{b} is not within the {n_total} TRs of fmri entry "
                                      f"{fe_key[:16]} ({_paired(table, [x['n_trs'] for x in table])})")
        for r, common in zip(table, commons):
            off = int(r["tr_offset"])
            hi_run = off + int(common)
            if trs is not None and max(a, hi_run) < min(b, off + int(r["n_trs"])):
                raise DatasetRequestError(
                    f"TR range {a}:{b} reaches TRs of run {r['run']!r} from {hi_run} on, which have no stimulus "
                    f"feature (the TRs that pair: {_paired(table, commons)}); keep ranges within those")
            lo, hi = max(a, off + window), min(b, hi_run)
            if lo < hi:
                out.append((lo, hi))
    if not out:
        raise DatasetRequestError(f"trs {trs!r} hold no sample with window={window} in any run (each run's first "
                                  f"sample needs {window} earlier TRs of its own run); widen the ranges or shrink "
                                  "the window")
    out = sorted(set(out))
    for (a0, b0), (a1, b1) in zip(out, out[1:]):
        if a1 < b0:
            raise DatasetRequestError(f"TR ranges {a0}:{b0} and {a1}:{b1} overlap; a TR would be served twice")
    return out


def units(subject_index: np.ndarray, ranges: Sequence[tuple[int, int]], chunk_trs: int) -> np.ndarray:
    """(unit, 3) int64 rows (fmri subject index, first TR, stop TR), one per stored chunk and run."""
    rows = []
    for s in subject_index:
        for lo, hi in ranges:
            for a in range((lo // chunk_trs) * chunk_trs, hi, chunk_trs):
                if max(a, lo) < min(a + chunk_trs, hi):
                    rows.append((s, max(a, lo), min(a + chunk_trs, hi)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def run_attrs(fa: dict, rec: dict) -> dict:
    """The fmri attributes as one run sees them (its onset and stimulus) for the feature grid check."""
    out = {"tr_s": fa["tr_s"], "onset_s": rec.get("onset_s", fa.get("onset_s", 0.0))}
    for name in ("stimulus_key", "stimulus_sha256", "stimulus_name"):
        if rec.get(name) is not None:
            out[name] = rec[name]
    return out
