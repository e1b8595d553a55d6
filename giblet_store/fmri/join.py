"""Notebook one-liners: open an entry by key, and join stimulus features with fMRI on stimulus time.

``xr.merge([codes, fmri])`` pads the shorter one with NaN and turns int16 codes into float32 without
a word, and pairs TR 3 of one grid with TR 3 of another even when the grids differ. :func:`join`
instead checks that both entries sit on the same TR grid (length and onset), keeps only the TRs both
have (warning which ones pair), and keeps every dtype.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..store.conventions import pairing_warning, same_grid
from ..errors import ParameterError
from ..store.core import Entry, Store, open_store

__all__ = ["open_dataset", "join"]


def open_dataset(store: "Store | str | os.PathLike", key: "Entry | str", **xarray_kwargs):
    """The entry ``key`` (a key, key prefix or :class:`Entry`) of ``store`` as an xarray Dataset.

    ``store`` is a :class:`Store` or a path/URL (opened read-only); ``xarray_kwargs`` go to
    :func:`xarray.open_zarr` (``chunks=None`` for no Dask).

    Examples
    --------
    >>> ds = gs.open_dataset("my_store", "3fa2c1")          # doctest: +SKIP
    """
    if not isinstance(store, Store):
        store = open_store(store, mode="r")
    return store.open(key, **xarray_kwargs)


def _as_dataset(x: Any, store: Store | None):
    if isinstance(x, Entry):
        return x.open()
    if isinstance(x, str):
        if store is None:
            raise ParameterError(f"join got the key {x!r} but no store; pass store=... or Entry objects")
        return store.open(x)
    if hasattr(x, "data_vars") and hasattr(x, "attrs"):
        return x
    raise ParameterError(f"join takes entries, keys or xarray Datasets, got {type(x).__name__}")


def _one_run(ds):
    """An entry of several runs (along ``tr``) is refused: a stimulus pairs with one run. One run
    (:func:`~giblet_store.fmri.runs.select_run`) is joined on its own TRs (``tr_in_run``)."""
    if "run" not in ds.coords or "tr_in_run" not in ds.coords:
        return ds
    ids = list(dict.fromkeys(str(r) for r in ds["run"].values))
    if len(ids) > 1:
        raise ParameterError(
            f"{ds.attrs.get('kind', 'the')} entry {str(ds.attrs.get('key', ''))[:16]} holds {len(ids)} runs {ids} "
            "one after another along tr, and a stimulus pairs with one run; join one run at a time: "
            f"gs.join(features_of_that_run, gs.select_run(ds, {ids[0]!r}))")
    return ds.assign_coords(tr=("tr", np.asarray(ds["tr_in_run"].values, dtype=np.int64)))


def join(*items: Any, store: Store | None = None):
    """Stimulus features and fMRI (or predictions) side by side on one ``tr`` axis.

    Parameters
    ----------
    *items : Entry, key (with ``store=``) or xarray.Dataset of giblet entries
        Per-TR entries (codes, mel, embeddings, features, fmri, predictions) on one TR grid.
    store : Store, optional
        Where keys are looked up.

    Returns
    -------
    xarray.Dataset
        Every variable of every item, restricted to the TRs all items have, each with its own dtype
        (int16 codes stay int16); coordinates ``tr`` and ``tr_start_s`` (s, indexed).

    Raises
    ------
    ParameterError
        Items on different TR grids (TR length or onset), without a ``tr`` axis, with
        variables of the same name (select variables first: ``ds[["codes"]]``), or an fmri-side
        entry of several runs (join one run, ``gs.select_run(ds, run)``, with that run's features).

    Warns
    -----
    UserWarning
        When the items have different numbers of TRs: only the shared range pairs.
    """
    import xarray as xr

    if len(items) < 2:
        raise ParameterError(f"join needs two or more entries (e.g. gs.join(codes, fmri)), got {len(items)}")
    dss = [_one_run(_as_dataset(x, store)) for x in items]
    _check_joinable(dss)
    trs = [np.asarray(ds["tr"].values) for ds in dss]
    common = trs[0]
    for t in trs[1:]:
        common = np.intersect1d(common, t)
    first = dss[0].attrs
    _warn_lengths(dss, trs, float(first["tr_s"]))
    parts = []
    for ds in dss:
        ds = ds.sel(tr=common)
        drop = [c for c in ("tr_start_s",) if c in ds.coords]
        parts.append(ds.drop_vars(drop) if parts else ds)
    out = xr.merge(parts, join="exact", combine_attrs="drop")
    out.attrs = {"joined": [ds.attrs.get("key") for ds in dss], "tr_s": first["tr_s"],
                 "onset_s": first.get("onset_s", 0.0)}
    return out


def _check_joinable(dss: list) -> None:
    """Every dataset has a ``tr`` axis and ``tr_s``, all on the first one's TR grid, no variable twice."""
    for ds in dss:
        if "tr" not in ds.dims or "tr_s" not in ds.attrs:
            raise ParameterError(f"cannot join a {ds.attrs.get('kind', 'dataset')!r} without a `tr` axis and a "
                                 "tr_s attribute (evaluation entries have no time axis)")
    first = dss[0].attrs
    for ds in dss[1:]:
        if not same_grid(first, ds.attrs):
            raise ParameterError(
                f"TR grids differ: {first.get('kind')} has TR {first['tr_s']:g} s from {first.get('onset_s', 0):g} s, "
                f"{ds.attrs.get('kind')} has TR {ds.attrs['tr_s']:g} s from {ds.attrs.get('onset_s', 0):g} s; "
                "derive one onto the other's grid first (gs.Resample(tr_s=..., onset_s=...))")
    names = [set(ds.data_vars) for ds in dss]
    clash = sorted(set.intersection(*names)) if len(names) == 2 else sorted(
        {n for i, a in enumerate(names) for b in names[i + 1:] for n in a & b})
    if clash:
        raise ParameterError(f"variables {clash} appear in more than one item; select variables first "
                             f"(e.g. ds[[...]]) or rename them (ds.rename({{'{clash[0]}': ...}}))")


_BOLD_KINDS = ("fmri", "predictions")


def _warn_lengths(dss, trs, tr_s: float) -> None:
    stim = [len(t) for ds, t in zip(dss, trs) if ds.attrs.get("kind") not in _BOLD_KINDS]
    bold = [len(t) for ds, t in zip(dss, trs) if ds.attrs.get("kind") in _BOLD_KINDS]
    if stim and bold and len(set(stim + bold)) > 1:
        pairing_warning(min(stim), min(bold), tr_s)
    elif len(set(stim + bold)) > 1:
        lengths = stim + bold
        pairing_warning(min(lengths), max(lengths), tr_s, what="shorter entry")
