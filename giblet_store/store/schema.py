"""JSON Schemas of entries: validated on write (before publishing) and on open.

An entry is described as a document ``{"attrs": {...}, "variables": {name: {"dims": [...],
"dtype": "..."}}}`` (coordinates included among the variables). ``entry.schema.json`` holds what
every kind shares; ``<kind>.schema.json`` what one kind adds. Kinds without their own schema are
checked against the shared one only.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ..errors import SchemaError

__all__ = ["entry_document", "validate_entry", "load_schema", "FORMAT_VERSION"]

#: Version of the on-disk layout written by this release; readers refuse newer ones.
FORMAT_VERSION = 1


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict | None:
    """The parsed schema ``schemas/<name>.schema.json``, or None if there is none."""
    f = resources.files("giblet_store") / "schemas" / f"{name}.schema.json"
    if not f.is_file():
        return None
    return json.loads(f.read_text())


def entry_document(ds) -> dict[str, Any]:
    """The schema document of an xarray Dataset (attrs, and dims/dtype of every variable)."""
    variables = {}
    for name, var in {**ds.coords, **ds.data_vars}.items():
        variables[str(name)] = {"dims": [str(d) for d in var.dims], "dtype": str(var.dtype)}
    return {"attrs": dict(ds.attrs), "variables": variables}


def validate_entry(doc: dict[str, Any], where: str = "entry") -> None:
    """Validate a document against the shared schema and its kind's schema.

    Raises
    ------
    SchemaError
        With the JSON path of the first violation and what was expected.
    """
    import jsonschema

    kind = doc.get("attrs", {}).get("kind")
    for name in ("entry", kind):
        schema = load_schema(name) if isinstance(name, str) else None
        if schema is None:
            continue
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            path = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise SchemaError(
                f"{where} does not match {name}.schema.json at {path}: {e.message}"
                + (f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else "")
            )
