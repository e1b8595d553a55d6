"""What a trained model's output records about where it came from, and which TRs of its target it fills.

Shared by :mod:`giblet_store.training.predictions` (brain activity predicted from stimulus features) and
:mod:`giblet_store.training.reconstruction` (stimulus features predicted from brain activity): both take an
array (numpy, torch or xarray), the TR rows of a target entry it fills, and the model's provenance
(name, checkpoint sha256, training parameters). Each caller passes its own error class, so a user
reads :class:`~giblet_store.errors.PredictionsError` or
:class:`~giblet_store.errors.ReconstructionError` with the same wording for the same rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Any

import numpy as np

from ..params import canonical_json

__all__ = ["ModelProvenance", "as_array", "tr_rows", "tr_range", "digests"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class ModelProvenance:
    """The model behind an entry: ``model_name``, ``checkpoint_sha256`` (64 hex) and ``training_params``.

    :meth:`of` validates and hashes the checkpoint; :meth:`to_dict` is what goes into the entry's
    ``inputs`` (its key) and attributes.
    """

    model_name: str
    checkpoint_sha256: str
    training_params: dict

    @classmethod
    def of(cls, model_name: Any, checkpoint: "str | os.PathLike | None", checkpoint_sha256: Any,
           training_params: "dict | None", error: type[Exception]) -> "ModelProvenance":
        """Validated provenance; ``checkpoint`` (a file, hashed here) wins over ``checkpoint_sha256``.

        Raises
        ------
        error
            No model name, a missing checkpoint file, or neither a file nor 64 hex digits.
        ParameterError
            ``training_params`` is not plain JSON.
        """
        if model_name is None or not str(model_name).strip():
            raise error("model_name is required (e.g. the model class and size)")
        if checkpoint is not None:
            from .hashing import sha256_file

            if not os.path.isfile(checkpoint):
                raise error(f"checkpoint {str(checkpoint)!r} does not exist; give the saved model file")
            checkpoint_sha256 = sha256_file(checkpoint)
        if not isinstance(checkpoint_sha256, str) or not _HEX64.match(checkpoint_sha256):
            raise error("give checkpoint= (a file) or checkpoint_sha256= (64 hex digits) for provenance")
        training_params = dict(training_params or {})
        canonical_json(training_params)  # ParameterError if not plain JSON
        return cls(str(model_name), checkpoint_sha256, training_params)

    def to_dict(self) -> dict[str, Any]:
        """``{"model_name", "checkpoint_sha256", "training_params"}``."""
        return {"model_name": self.model_name, "checkpoint_sha256": self.checkpoint_sha256,
                "training_params": dict(self.training_params)}


def as_array(x: Any) -> tuple[np.ndarray, tuple | None, dict]:
    """``(values, dims or None, coords)`` of a numpy array, torch tensor or xarray DataArray.

    ``coords`` maps each dimension that has a coordinate to its values (xarray only).
    """
    if hasattr(x, "dims") and hasattr(x, "variable"):  # xarray.DataArray
        coords = {d: np.asarray(x[d].values) for d in x.dims if d in x.coords}
        return np.asarray(x.values), tuple(x.dims), coords
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x), None, {}


def tr_rows(trs: Any, n: int, n_target: int, error: type[Exception], what: str) -> np.ndarray:
    """The target TR index of each of ``n`` rows: ``trs`` (indices or ``(start, stop)``) or all.

    Parameters
    ----------
    trs : None, sequence of int, or (start, stop)
        None: the rows are every TR of the target (then ``n`` must be ``n_target``).
    n : rows along ``tr`` of the array given
    n_target : TRs of the target entry
    error : the error class raised
    what : the array's name in messages ("predictions", "reconstruction")

    Returns
    -------
    (n,) int64, strictly increasing, within ``[0, n_target)``.
    """
    if trs is None:
        if n != n_target:
            raise error(f"the {what} has {n} TRs but the target has {n_target}; give trs=(start, stop) or the "
                        "target TR index of each row")
        return np.arange(n, dtype=np.int64)
    t = np.asarray(trs, dtype=np.int64)
    if t.ndim == 1 and t.size == 2 and n != 2:
        t = np.arange(t[0], t[1], dtype=np.int64)
    if t.ndim != 1 or t.size != n:
        raise error(f"trs give {t.size} TR(s) but the {what} has {n} along tr")
    if t.size and (t.min() < 0 or t.max() >= n_target or np.any(np.diff(t) <= 0)):
        raise error(f"trs must be increasing TR indices within the target's 0:{n_target}, got "
                    f"{t[:3].tolist()}...{t[-1:].tolist()}")
    return t


def tr_range(tr: np.ndarray) -> list[int]:
    """``[first, last + 1]`` of TR indices (``[0, 0]`` when empty): the ``tr_range`` attribute."""
    return [int(tr.min()), int(tr.max()) + 1] if tr.size else [0, 0]


def digests(tr: np.ndarray, values: np.ndarray) -> dict[str, str]:
    """``trs_sha256`` and ``values_sha256``: the sha256 of the TR list's and the stored array's bytes."""
    return {"trs_sha256": hashlib.sha256(tr.tobytes()).hexdigest(),
            "values_sha256": hashlib.sha256(values.tobytes()).hexdigest()}
