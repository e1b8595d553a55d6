"""One torch intra-op thread while a stream encode or decode runs (per calling thread, re-entrant).

The stream encoder's LSTM advances one frame at a time: each step is a (1, 512) x (512, 2048)
matrix-vector product, far too small to split between threads. With torch's default intra-op
threads (one per core) every step opens and joins an OpenMP/MKL parallel region; on a loaded
machine the threads spin at each join while their partner waits for a core. Measured on 2 cores
at load average 20 (``torch.nn.LSTM(512, 512, 2)``, 750 frames, oneDNN off): 5.9-7.7 CPU s with
2 threads, 0.29 CPU s with 1. The convolutions lose little with one thread (0.036 vs 0.048 CPU s
for a (64, 64, 3) conv over 48,000 samples), and :mod:`giblet_store.codec.stream` uses the second core
by running the LSTM of one piece while the convolutions of the next piece run in another thread.

Numerics do not change: with oneDNN off (:func:`giblet_store.codec.encodec.reproducible_torch`) and MKL's
strict reproducibility mode (``MKL_CBWR``, set by ``import giblet_store``) the kernels give the same
bits for any thread count (``tests/test_codec.py``, ``tests/test_stream.py``).
"""

from __future__ import annotations

import contextlib

__all__ = ["one_intra_op_thread"]


@contextlib.contextmanager
def one_intra_op_thread():
    """``torch.set_num_threads(1)`` while inside; the calling thread's count before comes back after.

    torch keeps the intra-op thread count per calling thread (OpenMP's and MKL's thread-local
    settings), so concurrent stream encodes in threads of one process each set and restore their
    own; nested use in one thread restores the outermost count last.
    """
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
