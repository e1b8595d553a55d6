"""Optional dependencies: which extra of giblet_store installs a missing module."""

from __future__ import annotations

__all__ = ["EXTRA_OF", "missing_extra_message"]

#: top-level module -> the giblet_store extra that installs it
EXTRA_OF = {
    "librosa": "mel",
    "nibabel": "fmri",
    "distributed": "distributed",
    "yaml": "distributed",
    "tqdm": "distributed",
    "matplotlib": "plot",
    "nilearn": "test",
}


def missing_extra_message(exc: ImportError) -> str | None:
    """What to install for a missing optional module, or None if it is not one of ours."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return (f"this needs the optional package {name!r}, which is not installed; install it with "
            f"pip install 'giblet_store[{extra}]' (or 'giblet_store[all]')")
