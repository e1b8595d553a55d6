"""lazy_fmri: .nii.gz reads are chained (each file decompressed once, front to back); uncompressed ones are not,
so Dask writes each chunk as it is read instead of running the reads ahead (issue 19 bench: a denoised ingest
reads its cleaned runs from uncompressed scratch files)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from giblet_store.fmri.write import lazy_fmri


def _graph(names: list[str]) -> dict:
    layout = SimpleNamespace(subjects=["a", "b"], n_trs=20, offsets=[0, 10], run_trs=[10, 10], n_runs=2,
                             series=[SimpleNamespace(path=Path(n)) for n in names])
    x = lazy_fmri(layout, np.arange(6), None, None, chunk_trs=5, block_bytes=1 << 20, parallel_reads=2)
    assert x.shape == (2, 20, 6) and x.chunks[1] == (5, 5, 5, 5)
    return dict(x.__dask_graph__())


def _reads_and_tokens(graph: dict) -> tuple[int, int]:
    names = [k[0] if isinstance(k, tuple) else k for k in graph]
    return sum(n.startswith("read_pieces") for n in names), sum(n.startswith("done") for n in names)


@pytest.mark.parametrize("suffix, chained", [(".nii.gz", True), (".nii", False)])
def test_reads_are_chained_only_for_compressed_series(suffix, chained):
    reads, tokens = _reads_and_tokens(_graph([f"s{i}{suffix}" for i in range(4)]))
    assert reads == 8  # 2 subjects x 4 chunks
    assert tokens == (6 if chained else 0)  # chained: each read waits for the one before on its chain (2 x 3)
