"""Parameter sets as values, and the content keys built from them.

Each parameter set (codec, TR grid, HRF, mel, ...) is a frozen dataclass that validates itself
on construction. ``to_dict()`` is exactly what goes into an entry's attributes and into its key.
The key is sha256 of ``json.dumps(d, sort_keys=True, separators=(",", ":"))``: stable across
processes and machines (never Python's ``hash()``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, ClassVar, Mapping

from .errors import ParameterError

__all__ = ["Params", "canonical_json", "content_key", "ALGORITHM_VERSION"]

#: Bumped whenever a change of algorithm changes stored bytes for the same inputs.
ALGORITHM_VERSION = 1


def _normalise(value: Any) -> Any:
    """Map a value to plain JSON types; floats that are integers stay floats (6 -> 6.0 is not done)."""
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"parameter value {value!r} is not finite; give a finite number")
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise ParameterError(f"parameter value {value!r} of type {type(value).__name__} cannot go into a key")


def canonical_json(d: Mapping[str, Any]) -> str:
    """The canonical JSON text of a mapping: sorted keys, no spaces, plain JSON types."""
    return json.dumps(_normalise(d), sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_key(d: Mapping[str, Any]) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``d``.

    Examples
    --------
    >>> content_key({"b": 1, "a": 2}) == content_key({"a": 2, "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(d).encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of the frozen parameter dataclasses.

    Subclasses set ``name`` (the attribute prefix) and validate in ``__post_init__``.
    """

    name: ClassVar[str] = "params"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field; what goes into attributes and the key."""
        return {f.name: _normalise(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Inverse of :meth:`to_dict`; unknown fields are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ParameterError(
                f"{cls.__name__} got unknown field(s) {unknown}; expected a subset of {sorted(names)}"
            )
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kwargs)

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON of ``to_dict()``."""
        return content_key(self.to_dict())
