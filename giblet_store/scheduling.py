"""Where Dask work runs: one context manager for a scheduler name or a ``distributed.Client``.

Every stage that computes lazily (codes, mel, derive, fMRI ingest) takes ``scheduler=``: a Dask
scheduler name (``"threads"``, ``"sync"``, ``"processes"``) or a connected ``distributed.Client``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["use_scheduler"]


@contextlib.contextmanager
def use_scheduler(scheduler: Any = "threads") -> Iterator[None]:
    """Run the ``compute`` calls inside the block on ``scheduler``.

    Parameters
    ----------
    scheduler : str or distributed.Client
        A Dask scheduler name, or a Client (its ``get`` is used, so work goes to its cluster).
    """
    import dask

    target = scheduler if isinstance(scheduler, str) else getattr(scheduler, "get", scheduler)
    with dask.config.set(scheduler=target):
        yield
