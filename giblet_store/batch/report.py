"""What a batch reports: one :class:`BatchItem` per job (created, cached or failed) in a :class:`BatchReport`.

Made by :func:`giblet_store.batch.run.run_batch`; printed by ``giblet-store batch`` as a table or as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BatchItem", "BatchReport"]


@dataclass(frozen=True)
class BatchItem:
    """What happened to one job: ``status`` is ``created``, ``cached`` or ``failed`` (with ``reason``)."""

    source: str
    kind: str
    params: str
    status: str
    key: str | None = None
    path: str | None = None
    reason: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BatchReport:
    """Every job of a batch and its outcome, in manifest order."""

    items: list = field(default_factory=list)
    store: str = ""
    wall_s: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        out = {"created": 0, "cached": 0, "failed": 0}
        for it in self.items:
            out[it.status] += 1
        return out

    @property
    def ok(self) -> bool:
        """True when no job failed."""
        return self.counts["failed"] == 0

    @property
    def failed(self) -> list:
        return [it for it in self.items if it.status == "failed"]

    def summary(self) -> str:
        c = self.counts
        return f"{c['created']} created, {c['cached']} cached, {c['failed']} failed ({self.wall_s:.1f} s)"

    def table(self) -> str:
        """A plain-text table (status, kind, source, parameters, key, reason) and a summary line."""
        rows = [(it.status, it.kind, Path(it.source).name, it.params, (it.key or "-")[:16],
                 _first_line(it.reason or it.note)) for it in self.items]
        header = ("STATUS", "KIND", "SOURCE", "PARAMETERS", "KEY", "REASON / NOTE")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:5], widths)), r[5]]).rstrip() for r in [header, *rows]]
        return "\n".join([*lines, self.summary()])

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "wall_s": self.wall_s, "counts": self.counts,
                "items": [it.to_json() for it in self.items]}


def _first_line(text: str, limit: int = 160) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _replace(item: BatchItem, **kw) -> BatchItem:
    """``item`` with the fields ``kw`` changed."""
    return BatchItem(**{**item.__dict__, **kw})
