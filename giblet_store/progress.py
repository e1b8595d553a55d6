"""Progress bars for long work: a tqdm bar fed by Dask's scheduler callbacks (its diagnostics API).

Most slow work in giblet_store is a Dask graph computed on the local (threads or sync) scheduler:
the chunked encodes of ``extract``, the mel chunks, the block writes of ``derive`` and of fMRI ingest.
:func:`progress_bar` shows one bar per ``compute`` (tasks done / total) while it is active; work that is
one long loop (the stream encoder of ``extract``) reports through :func:`seconds_bar` instead. The CLI
turns it on when stderr is a terminal, unless ``--no-progress`` is given; in Python, wrap the call:

>>> with gs.progress_bar("extract"):                       # doctest: +SKIP
...     gs.extract_codes(store, "episode1.wav", codec, grid)

Batch jobs on a distributed cluster report through :mod:`giblet_store.batch.run` instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Callable, Iterator

__all__ = ["progress_bar", "progress_enabled", "seconds_bar"]

#: (desc, stream) of the progress_bar block this code runs in, if any
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("giblet_store_progress", default=None)


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
    token = _ACTIVE.set((desc, stream))
    try:
        with _callback_class()(desc, stream):
            yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def seconds_bar(total_s: float, what: str = "audio") -> Iterator[Callable[[float], None]]:
    """A bar of ``total_s`` seconds of ``what`` for work that is not a Dask graph; yields ``step(seconds)``.

    The bar shows only inside an active :func:`progress_bar` block (same label and stream); elsewhere
    ``step`` does nothing. ``step`` may be called from other threads.
    """
    active = _ACTIVE.get()
    if active is None:
        yield lambda seconds: None
        return
    from tqdm import tqdm

    desc, stream = active
    fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f} s of " + what + " [{elapsed}<{remaining}]"
    # one refresh per piece (a few per minute of audio): each step shows, however fast the pieces are
    with tqdm(total=float(total_s), desc=desc, file=stream, leave=False, dynamic_ncols=True, mininterval=0,
              miniters=1, bar_format=fmt) as bar:
        yield bar.update
