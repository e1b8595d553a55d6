"""The contract between the bench scripts and ``bench/report.py`` (``make bench``).

Every bench script takes ``--json OUT`` and, besides its printed table, writes to OUT a JSON list of
rows, one per figure, made with :func:`row`:

    {"bench": "hrf", "figure": "time, 20000x8x112", "unit": "s",
     "baseline_name": "reference per-column loop", "baseline": 0.43, "ours": 0.09,
     "ratio": 4.8, "target": ">= 1.5x", "goal": {"on": "ratio", "op": ">=", "value": 1.5}}

``baseline`` and ``ours`` are numbers in ``unit``, measured in the same run on the same data;
``ratio`` is the ratio the target is stated in (speed: baseline time / our time, > 1 is faster;
size: our bytes / baseline bytes) or None; ``goal`` says which number the target
applies to (``ratio`` or ``ours``), so ``report.py`` can take medians over runs and check the target
on the median. A bench writes its rows with :func:`write` (a no-op without ``--json``).
"""

from __future__ import annotations

import json
import operator
import resource
from pathlib import Path

__all__ = ["row", "write", "met"]

_OPS = {">=": operator.ge, "<=": operator.le}


def row(bench: str, figure: str, unit: str, baseline_name: str, baseline: float | None, ours: float,
        ratio: float | None, target: str, on: str = "ratio", op: str = ">=", value: float | None = None) -> dict:
    """One figure of a bench; ``on``/``op``/``value`` state the target (``value`` None: no target)."""
    if on not in ("ratio", "ours") or op not in _OPS:
        raise ValueError(f"goal on={on!r} op={op!r}; expected on in (ratio, ours) and op in {sorted(_OPS)}")
    return {"bench": bench, "figure": figure, "unit": unit, "baseline_name": baseline_name,
            "baseline": None if baseline is None else float(baseline), "ours": float(ours),
            "ratio": None if ratio is None else float(ratio), "target": target,
            "goal": None if value is None else {"on": on, "op": op, "value": float(value)}}


def met(r: dict) -> bool | None:
    """Whether row ``r`` meets its target (None: it has none)."""
    g = r.get("goal")
    if not g or r.get(g["on"]) is None:
        return None
    return bool(_OPS[g["op"]](r[g["on"]], g["value"]))


def write(path: str | None, rows: list[dict]) -> None:
    """Write ``rows`` as JSON to ``path`` (nothing when ``path`` is None)."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1))


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_s() -> float:
    """CPU seconds of this process, all threads (on a shared, loaded machine wall time is not comparable)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
