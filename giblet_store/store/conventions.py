"""Labelling conventions every entry follows, and the coordinates that let entries be joined.

- The time axis is ``tr`` (int64 TR index) with a ``tr_start_s`` (tr) float64 coordinate: the
  stimulus time (s) at which each TR starts. It is indexed when an entry is opened, so
  ``ds.sel(tr_start_s=slice(3, 9))`` works, and loaded eagerly (not Dask) like every small 1-D
  coordinate, so ``groupby_bins("tr_start_s", ...)`` needs no flox.
- Every variable and coordinate has ``units`` and ``long_name`` attributes (filled in here on write
  when the code that made it gave none).
- fMRI-side entries (fmri, predictions, evaluation) carry a ``voxel`` (voxel) int64 coordinate and
  ``voxel_ijk`` (voxel, ijk) as a coordinate, so selections keep each voxel's position; on a surface
  the dimension is ``vertex`` with ``hemi`` and ``vertex_index`` (vertex,) instead (:func:`space_dim`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..errors import PairingWarning

__all__ = ["space_dim", "SPACE_DIMS", "SPACE_COORDS", "annotate", "tr_start_s", "source_attrs", "pairing_warning", "eager_coords", "VARIABLE_LABELS", "SMALL_COORD"]

#: variables that are always coordinates of an opened entry
COORDINATE_VARIABLES = ("voxel_ijk",)

#: the coordinates along the space dimension that travel with an fMRI-side variable
SPACE_COORDS = ("voxel_ijk", "hemi", "vertex_index", "structure")


#: the brain dims an fMRI-side ``fmri`` (subject, tr, SPACE) may have: mask voxels, surface vertices, atlas parcels
SPACE_DIMS = ("voxel", "vertex", "parcel")


def space_dim(ds) -> str:
    """The brain dim of an fMRI-side Dataset or DataArray: ``"vertex"`` (a surface), ``"parcel"`` (a parcellated
    entry), else ``"voxel"``."""
    return next((d for d in ("vertex", "parcel") if d in ds.dims), "voxel")


#: 1-D coordinates up to this many values are loaded eagerly on open
SMALL_COORD = 1_000_000

#: name -> (long_name, units) for everything the package writes; "1" = dimensionless
VARIABLE_LABELS: dict[str, tuple[str, str]] = {
    "tr": ("TR index", "1"),
    "tr_start_s": ("stimulus time at the start of the TR", "s"),
    "codebook": ("residual codebook index", "1"),
    "frame": ("frame index within the TR", "1"),
    "codes": ("EnCodec code index (-1: no frame)", "1"),
    "n_frames": ("real frames in the TR", "1"),
    "scales": ("EnCodec chunk scale", "1"),
    "chunk": ("model chunk index (the 48 kHz model's own normalised chunks)", "1"),
    "mel": ("mel spectrogram", "dB"),
    "mel_mean": ("mel spectrogram, mean over the TR's frames", "dB"),
    "mel_band": ("mel band index", "1"),
    "mel_hz": ("mel band centre frequency", "Hz"),
    "embeddings": ("EnCodec code embedding (sum of codebook vectors)", "1"),
    "embedding_mean": ("EnCodec code embedding, mean over the TR's frames", "1"),
    "dim": ("embedding dimension", "1"),
    "delay": ("FIR delay", "TR"),
    "subject": ("subject ID", "1"),
    "voxel": ("voxel index within the mask", "1"),
    "voxel_ijk": ("voxel position in the volume (i, j, k)", "1"),
    "ijk": ("volume axis (i, j, k)", "1"),
    "vertex": ("vertex index within the entry (left hemisphere, then right)", "1"),
    "hemi": ("hemisphere (L, R)", "1"),
    "vertex_index": ("vertex index on its hemisphere's surface", "1"),
    "structure": ("brain structure (CIFTI) or the GIFTI's AnatomicalStructurePrimary", "1"),
    "mask": ("brain mask", "1"),
    "x": ("volume axis i", "1"),
    "y": ("volume axis j", "1"),
    "z": ("volume axis k", "1"),
    "fmri": ("BOLD signal", "scanner units"),
    "zscore_mean": ("mean of the z-scoring TRs", "scanner units"),
    "zscore_std": ("standard deviation of the z-scoring TRs", "scanner units"),
    "predictions": ("predicted BOLD signal", "scanner units"),
    "r": ("Pearson correlation of prediction and BOLD", "1"),
    "r_mean": ("Pearson correlation, mean over subjects", "1"),
    "r2": ("coefficient of determination (R^2) of prediction and BOLD", "1"),
    "noise_ceiling": ("noise ceiling: r of a perfect model of the shared response, sqrt of the mean pairwise "
                      "inter-subject correlation", "1"),
    "r_normalised": ("Pearson correlation divided by the noise ceiling (where the ceiling is reliable)", "1"),
    "isc_loso": ("inter-subject correlation: r of each subject with the mean of the others (not a ceiling)", "1"),
    "r_run": ("Pearson correlation of prediction and BOLD within the run", "1"),
    "r_run_mean": ("Pearson correlation within the run, mean over subjects", "1"),
    "run": ("scan run of the TR", "1"),
    "run_id": ("scan run ID", "1"),
    "tr_in_run": ("TR index within its run", "1"),
    "n_samples": ("audio samples scored in the TR", "1"),
}


def annotate(ds) -> Any:
    """``ds`` with ``long_name`` and ``units`` on every variable and coordinate (existing values kept).

    Unknown names get ``long_name`` from their ``description`` (or their name) and units ``"1"``.
    """
    for name in list(ds.variables):
        var = ds[name]
        long_name, units = VARIABLE_LABELS.get(str(name), (var.attrs.get("description", str(name)), "1"))
        if "units" not in var.attrs and "units" not in var.encoding:
            var.attrs["units"] = units
        var.attrs.setdefault("long_name", long_name)
    return ds


def tr_start_s(onset_s: float, tr_s: float, trs) -> np.ndarray:
    """(tr,) float64 stimulus time (s) at which each TR index in ``trs`` starts."""
    return float(onset_s) + float(tr_s) * np.asarray(trs, dtype=np.float64)


def source_attrs(info: Any, source_sha256: str) -> dict[str, Any]:
    """Attributes of an entry made from one audio source (codes, mel).

    Parameters
    ----------
    info : giblet_store.audio.load.AudioInfo
        The source as read: ``duration_s`` (s), ``sample_rate_hz`` (Hz, before resampling),
        ``channels``, and the container's stream/offset/codec (none for files soundfile reads).
    source_sha256 : the sha256 of the source file's bytes
    """
    return {"source_sha256": source_sha256, "duration_s": info.duration_s,
            "source_sample_rate_hz": info.sample_rate_hz, "source_channels": info.channels,
            **info.container_attrs()}


def eager_coords(ds):
    """Load small 1-D non-index coordinates (``tr_start_s``, ``mel_hz``, ...) into memory and index
    ``tr_start_s``, so label selection and ``groupby_bins`` work without Dask or flox.

    ``voxel_ijk`` is made a coordinate (Zarr keeps a coordinate that no data variable shares all
    dims with only in the group attributes, which entries use for their own attributes).
    """
    promote = [n for n in COORDINATE_VARIABLES if n in ds.data_vars]
    if promote:
        ds = ds.set_coords(promote)
    small = {n: c.load() for n, c in ds.coords.items()
             if n not in ds.indexes and c.ndim == 1 and c.size <= SMALL_COORD and c.chunks is not None}
    if small:
        ds = ds.assign_coords(small)
    if "tr_start_s" in ds.coords and ds["tr_start_s"].dims == ("tr",) and "tr_start_s" not in ds.indexes:
        values = np.asarray(ds["tr_start_s"].values)
        if np.unique(values).size == values.size:
            ds = ds.set_xindex("tr_start_s")
    return ds


def pairing_warning(n_stimulus: int, n_fmri: int, tr_s: float, what: str = "stimulus", *,
                    run: str | None = None, tr_offset: int = 0) -> str | None:
    """Warn (:class:`~giblet_store.errors.PairingWarning`, and return the message) when a stimulus and a
    scan have different TR counts.

    The message names the TR range that pairs (``0:min``) and what to do with the rest. With ``run``,
    the scan is that run of a multi-run entry, whose TR 0 is entry TR ``tr_offset``.
    """
    if n_stimulus == n_fmri:
        return None
    n = min(n_stimulus, n_fmri)
    longer = "scan" if n_fmri > n_stimulus else what
    if run is None:
        head, scan, pairs = "", "scan", f"TRs 0:{n}"
        advice = (f"Train and evaluate on TRs within 0:{n} (e.g. split_trs({n}, ...)), or give the {what} an "
                  f"n_trs / the scan --n-trs so they match")
    else:
        head, scan, pairs = f"run {run!r}: ", "run", f"the run's TRs 0:{n} (entry TRs {tr_offset}:{tr_offset + n})"
        advice = ("Samples and evaluations of this run use those TRs; extract the run's stimulus with "
                  f"n_trs={n_fmri} or crop the run's files so they match")
    msg = (f"{head}the {what} has {n_stimulus} TRs and the {scan} {n_fmri} TRs (TR {tr_s:g} s, "
           f"{abs(n_fmri - n_stimulus) * tr_s:g} s more {longer}); only {pairs} pair stimulus with BOLD. {advice}")
    warnings.warn(msg, PairingWarning, stacklevel=3)
    return msg


def same_grid(a: dict, b: dict) -> bool:
    """True when two entries' attributes describe the same TR length and onset (to 1 us)."""
    try:
        return (math.isclose(float(a["tr_s"]), float(b["tr_s"]), abs_tol=1e-6)
                and math.isclose(float(a.get("onset_s", 0.0)), float(b.get("onset_s", 0.0)), abs_tol=1e-6))
    except (KeyError, TypeError, ValueError):
        return False
