"""bench/report.py (``make bench``): medians over runs, the target check, the Markdown table, a failed bench."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def test_medians_targets_and_table():
    bj, report = _load("benchjson"), _load("report")
    runs = [[bj.row("hrf", "time", "s", "loop", b, o, b / o, ">= 1.5x", value=1.5),
             bj.row("ingest", "peak RSS", "MiB", "get_fdata", 2400, rss, None, "<= 512 MiB", on="ours", op="<=",
                    value=512)]
            for b, o, rss in ((1.0, 0.5, 300), (1.2, 1.0, 600), (0.9, 0.3, 310))]
    rows = report.median_rows(runs)
    assert [r["figure"] for r in rows] == ["time", "peak RSS"] and rows[0]["n_runs"] == 3
    assert rows[0]["ratio"] == 2.0 and rows[0]["ours"] == 0.5 and rows[1]["ours"] == 310
    assert bj.met(rows[0]) is True and bj.met(rows[1]) is True
    assert bj.met(runs[1][1]) is False  # 600 MiB alone misses the target; the median does not
    md = report.markdown(rows, "# B")
    assert "| hrf | time | loop: 1 s | 0.5 s | 2.00x | >= 1.5x | yes |" in md
    assert "| ingest | peak RSS | get_fdata: 2,400 MiB | 310 MiB |  | <= 512 MiB | yes |" in md


def test_a_failing_bench_is_a_row_not_a_crash(tmp_path):
    report = _load("report")
    with open(tmp_path / "log", "w") as log:
        rows = report.run_one(["no_such_bench.py"], tmp_path / "x.json", log)
    assert rows[0]["figure"].startswith("FAILED") and "no_such_bench.py" in (tmp_path / "log").read_text()
    assert "n/a" in report.markdown(report.median_rows([rows]), "# B")
