"""What a derive plan is, and how a transform finds the time axis, TR grid and variables of its parent.

:func:`giblet_store.features.derive.derive` asks a planner (one per transform: embeddings, HRF/FIR,
resampling, quantising) for a :class:`Plan` before anything is computed: the derived kind, the
options that change the bytes (hashed into the key), and a ``build`` that makes the lazy Dataset.
The helpers here are the checks every planner shares, so each rule is worded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import ParameterError

if TYPE_CHECKING:
    from ..store.entry import Entry

__all__ = ["Plan", "time_axis", "tr_grid", "select_variables", "with_tr_start", "carried"]


@dataclass
class Plan:
    """A derived entry before it is computed.

    Attributes
    ----------
    kind : the derived entry's kind (``features``, ``embeddings``, ``reconstruction``)
    options : what besides the transform's parameters changes the bytes (hashed into the key)
    build : () -> (lazy xarray.Dataset, attributes the child adds)
    dropped : parent attributes that do not hold for the child (e.g. the frame grid after resampling)
    """

    kind: str
    options: dict
    build: Callable[[], tuple[Any, dict]]
    dropped: frozenset = frozenset()


def time_axis(parent: "Entry", ds, axis: str | None) -> str:
    """The dimension to transform along: ``axis``, or ``tr`` (fmri entries must say it)."""
    if axis is None:
        if parent.kind == "fmri":
            raise ParameterError(
                f"entry {parent.key[:16]} is an fmri entry, dims {list(ds.dims)}: its time axis is not "
                "the first; give the axis explicitly (axis='tr', CLI --axis tr). Note fMRI is already "
                "haemodynamic: HRF-convolving it is rarely what you want"
            )
        axis = "tr"
    if not isinstance(axis, str) or axis not in ds.dims:
        raise ParameterError(f"axis {axis!r} is not a dimension of entry {parent.key[:16]}; its dims are {list(ds.dims)}")
    n_runs = parent.attrs.get("n_runs", 1)
    if axis == "tr" and isinstance(n_runs, int) and n_runs > 1:
        raise ParameterError(
            f"entry {parent.key[:16]} holds {n_runs} runs one after another along tr; a filter or resampling "
            "along tr would run across the run boundaries. Derive each run's stimulus features instead, or "
            "ingest each run as its own entry")
    return axis


def tr_grid(parent: "Entry") -> tuple[float, float]:
    """``(tr_s, onset_s)`` of the parent, in seconds."""
    a = parent.attrs
    if not isinstance(a.get("tr_s"), (int, float)):
        raise ParameterError(f"entry {parent.key[:16]} has no tr_s attribute; it is not on a TR grid")
    return float(a["tr_s"]), float(a.get("onset_s", 0.0))


def select_variables(parent: "Entry", ds, axis: str, variables, floats_only: bool) -> list[str]:
    """The data variables to transform: ``variables``, or those along ``axis`` without ``frame``
    (floats only when ``floats_only``)."""
    if variables is not None:
        if isinstance(variables, str):
            variables = [variables]
        names = list(variables)
        for n in names:
            if n not in ds.data_vars:
                raise ParameterError(f"entry {parent.key[:16]} has no data variable {n!r}; it has {sorted(ds.data_vars)}")
            if axis not in ds[n].dims:
                raise ParameterError(f"variable {n!r} {tuple(ds[n].dims)} has no {axis!r} axis to transform along")
        if not names:
            raise ParameterError("variables is empty; name at least one data variable")
        return names
    names = [n for n, v in ds.data_vars.items()
             if axis in v.dims and "frame" not in v.dims and (v.dtype.kind == "f" or not floats_only)]
    if not names:
        raise ParameterError(
            f"entry {parent.key[:16]} ({parent.kind}) has no per-TR float variable along {axis!r} "
            f"(variables: {sorted(ds.data_vars)}); frame-level arrays hold NaN tails, so transform a "
            "per-TR mean (embedding_mean, mel_mean) or name variables= explicitly"
        )
    return names


def with_tr_start(ds, axis: str, parent: "Entry"):
    """``ds`` with a ``tr_start_s`` (s) coordinate along ``axis`` (computed from the grid if missing)."""
    if "tr_start_s" in ds.coords and ds["tr_start_s"].dims == (axis,):
        return ds
    tr, onset = tr_grid(parent)
    return ds.assign_coords(tr_start_s=((axis,), onset + tr * np.arange(ds.sizes[axis], dtype=np.float64)))


def carried(ds, names: list[str], axis: str):
    """The variables to transform, plus the ones without the time axis (masks, ...) unchanged."""
    keep = [n for n, v in ds.data_vars.items() if n in names or axis not in v.dims]
    return ds[keep]
