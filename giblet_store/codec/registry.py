"""This machine's model registry: where the local weights with a given sha256 live.

A store never holds absolute paths (it is shared between machines); an entry made from a local
model directory records only the sha256 of its weights (``model_sha256``). When a local directory is
used, its sha256 and absolute path are remembered in a small JSON file in the user cache directory
(``$GIBLET_STORE_CACHE``, else ``$XDG_CACHE_HOME/giblet_store``, else ``~/.cache/giblet_store``), so
decoding or deriving embeddings later finds the weights without ``model=`` / ``--model``. A path is
served only while its files still hash to the same sha256.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from ..store.regular import read_regular

__all__ = ["cache_dir", "registry_path", "remember_model", "registered_model_dirs"]

REGISTRY_FILE = "models.json"


def cache_dir() -> Path:
    """The user-level cache directory of giblet_store (not created here)."""
    if env := os.environ.get("GIBLET_STORE_CACHE"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "giblet_store"


def registry_path() -> Path:
    """The registry file: ``{"models": {sha256: [absolute directory, ...]}}``."""
    return cache_dir() / REGISTRY_FILE


def _read() -> dict[str, list[str]]:
    try:
        doc = json.loads(read_regular(registry_path()))
    except (OSError, ValueError, RecursionError):  # a FIFO is never opened; a damaged registry is no registry
        return {}
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        return {}
    return {k: [p for p in v if isinstance(p, str)] for k, v in models.items() if isinstance(v, list)}


def remember_model(sha256: str, directory: str | os.PathLike) -> None:
    """Record that ``directory`` holds the weights with ``sha256`` (most recent first).

    Best effort: a cache directory that cannot be written leaves the registry as it was and logs a
    warning (the user can still pass ``model=``).
    """
    path = str(Path(directory).expanduser().resolve())
    models = _read()
    known = models.get(sha256, [])
    if known[:1] == [path]:
        return
    models[sha256] = [path, *(p for p in known if p != path)][:8]
    target = registry_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".models-", suffix=".json", dir=target.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"models": models}, f, indent=1, sort_keys=True)
        os.replace(tmp, target)
    except OSError as exc:  # best effort, but said: later commands will need model= / --model
        logging.getLogger(__name__).warning(
            "could not remember where the model %s... lives (%s: %s); give model= / --model to later "
            "decode or derive --embeddings, or set GIBLET_STORE_CACHE to a writable folder", sha256[:12], target, exc)


def registered_model_dirs(sha256: str) -> list[str]:
    """Directories remembered for ``sha256`` (not checked), most recent first."""
    return list(_read().get(sha256, []))
