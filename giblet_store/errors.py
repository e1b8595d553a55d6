"""Errors a user can act on.

Every error raised on purpose by giblet_store derives from :class:`GibletStoreError`.
A message says what was expected, what came, and what to do. The CLI prints the message
(no traceback) and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "GibletStoreError",
    "ParameterError",
    "AudioError",
    "ModelError",
    "StoreError",
    "DiskFullError",
    "NotAStoreError",
    "FormatVersionError",
    "SchemaError",
    "EntryNotFoundError",
    "AmbiguousKeyError",
    "FmriError",
    "PredictionsError",
    "DatasetRequestError",
    "ManifestError",
    "ClusterError",
    "QualityError",
    "MetricUndefinedError",
    "ReconstructionError",
    "CodesFileError",
    "GibletStoreWarning",
    "PairingWarning",
]


class GibletStoreError(Exception):
    """Root of every error giblet_store raises on purpose."""


class ParameterError(GibletStoreError, ValueError):
    """A parameter value is invalid (bandwidth, TR, HRF, mel options, ...)."""


class AudioError(GibletStoreError, ValueError):
    """An audio input cannot be used (missing, not audio, empty, too short, NaN/inf)."""


class ModelError(GibletStoreError):
    """A codec model cannot be loaded or does not fit the request."""


class StoreError(GibletStoreError):
    """A store cannot be opened or written."""


class DiskFullError(StoreError):
    """A write failed for lack of room: a full disk, a quota, or the file-size limit (``ulimit -f``)."""


class NotAStoreError(StoreError):
    """The path exists but is not a giblet store."""


class FormatVersionError(StoreError):
    """The store or entry was written by a newer giblet_store than this one."""


class SchemaError(StoreError):
    """An entry does not match the JSON Schema of its kind."""


class EntryNotFoundError(StoreError, KeyError):
    """No complete entry has the requested key or attributes."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousKeyError(StoreError):
    """A key prefix matches more than one entry."""


class FmriError(GibletStoreError, ValueError):
    """An fMRI input cannot be used (not 4D, shapes/affines differ, NaN volumes, bad mask, TR mismatch)."""


class PredictionsError(GibletStoreError, ValueError):
    """Predictions that do not fit their target (dims, voxels, subjects, TRs) or lack provenance."""


class DatasetRequestError(ParameterError):
    """A Dataset request that the store cannot serve (subjects, features or TR ranges that do not overlap)."""


class ManifestError(ParameterError):
    """A manifest cannot be run; ``problems`` lists every reason, each naming its row or stimulus."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"manifest {source} has {len(self.problems)} problem(s); nothing was run:\n{lines}")

    def __reduce__(self):  # picklable (Exception would re-call __init__ with the message alone)
        return (type(self), (self.source, self.problems))


class ClusterError(GibletStoreError):
    """The Dask cluster cannot be reached or started."""


class QualityError(GibletStoreError, ValueError):
    """Audio quality cannot be scored (silent reference, lengths that differ, missing metric package)."""


class MetricUndefinedError(QualityError):
    """A metric is undefined for this segment (silent, too short); per-TR scoring turns it into NaN + reason."""


class ReconstructionError(GibletStoreError, ValueError):
    """Predicted stimulus features that do not fit their target entry (grid, codebooks, dim) or lack provenance."""


class CodesFileError(ParameterError):
    """A codes file to import (``.ecdc``, acomp text, ``.npy``) is not what its format requires."""


class GibletStoreWarning(UserWarning):
    """Root of the warnings giblet_store issues on purpose."""


class PairingWarning(GibletStoreWarning):
    """A stimulus and a scan (or a run of it) have different TR counts; the message names the TRs that pair."""
