"""Progress bars for long work: a tqdm bar fed by Dask's scheduler callbacks (its diagnostics API).

Everything slow in giblet_store is a Dask graph computed on the local (threads or sync) scheduler:
the chunk encodes of ``extract``, the mel chunks, the block writes of ``derive`` and of fMRI ingest.
:func:`progress_bar` shows one bar per ``compute`` (tasks done / total) while it is active. The CLI
turns it on when stderr is a terminal, unless ``--no-progress`` is given; in Python, wrap the call:

>>> with gs.progress_bar("extract"):                       # doctest: +SKIP
...     gs.extract_codes(store, "episode1.wav", codec, grid)

Batch jobs on a distributed cluster report through :mod:`giblet_store.batch` instead.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(progress: bool | None = None, stream=None) -> bool:
    """``progress`` if given, else whether ``stream`` (default stderr) is a terminal."""
    if progress is not None:
        return bool(progress)
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _callback_class():
    from dask.callbacks import Callback

    class _TqdmCallback(Callback):
        """One tqdm bar per Dask compute: total = the graph's tasks, one step per finished task."""

        def __init__(self, desc: str, stream):
            super().__init__()
            self.desc, self.stream, self.bar = desc, stream, None

        def _start_state(self, dsk, state):
            from tqdm import tqdm

            total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished") if k in state)
            self.bar = tqdm(total=total, desc=self.desc, unit="task", file=self.stream, leave=False,
                            dynamic_ncols=True, mininterval=0.2)

        def _posttask(self, key, result, dsk, state, worker_id):
            if self.bar is not None:
                self.bar.update(1)

        def _finish(self, dsk, state, errored):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _TqdmCallback


@contextlib.contextmanager
def progress_bar(desc: str = "giblet_store", enabled: bool | None = True, stream=None) -> Iterator[None]:
    """Show a tqdm bar (on ``stream``, default stderr) for every Dask compute inside the block.

    Parameters
    ----------
    desc : str
        Label of the bars (e.g. the command and file).
    enabled : bool or None
        False: no bar; None: a bar only when ``stream`` is a terminal.
    """
    stream = stream if stream is not None else sys.stderr
    if not progress_enabled(enabled, stream):
        yield
        return
    try:
        import tqdm  # noqa: F401
    except ImportError:  # tqdm is a dependency; a broken install just gets no bar
        yield
        return
    with _callback_class()(desc, stream):
        yield
