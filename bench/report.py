"""``make bench``: run every bench, collect their figures, write one Markdown table (bench/RESULTS.md).

Each bench runs in its own process with ``--json OUT`` (the contract in ``bench/benchjson.py``),
``--runs`` times; the table shows, per figure, the median over runs of the baseline, of ours and of
the ratio (each bench already takes the best of a few interleaved repetitions within a run), the
target, and whether the median meets it. The machine may be shared: medians over runs, ratios
always measured within one run on the same data.

    .venv/bin/python bench/report.py [--runs 1] [--only hrf ingest] [--encode-seconds 30 120 600]
                                     [--out bench/RESULTS.md]

Defaults take a few minutes on a quiet 2-core machine: encode at 30 s of audio (``--encode-seconds
30 120 600`` adds the runs of issue 14), storage at its 300 s default (at 60 s the entry's fixed
metadata bytes alone break its 1.10x-entropy target), catalog at 10,000 entries locally and 1,000 on
its moto S3 server (``python bench/catalog.py`` alone: 10,000 on both). ``bench/batch.py`` (a
cluster, ~10+ minutes) is not run here; run it on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchjson import met  # noqa: E402


def benches(encode_seconds: list[float]) -> list[tuple[str, list[str]]]:
    """(name, argv after the script) of every bench run by default, in order."""
    out = [("hrf", ["hrf.py"]), ("ingest", ["ingest.py"]), ("loader", ["loader.py"])]
    out += [(f"encode {s:g} s", ["encode.py", "--seconds", f"{s:g}"]) for s in encode_seconds]
    out += [("storage", ["storage.py"])]  # its 300 s default: the size its targets are stated for
    out += [("catalog", ["catalog.py", "--n", "10000", "--s3-n", "1000"])]  # S3 at 1,000 entries: ~3 min in all
    return out


def run_one(argv: list[str], out: Path, log) -> list[dict]:
    cmd = [sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(out)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr[-3000:] if p.returncode else ''}\n")
    print(f"  {' '.join(argv)}: exit {p.returncode} in {time.perf_counter() - t:.0f} s", flush=True)
    if p.returncode != 0 or not out.exists():
        return [{"bench": argv[0], "figure": "FAILED (see bench/RESULTS.log)", "unit": "", "baseline_name": "",
                 "baseline": None, "ours": float("nan"), "ratio": None, "target": "", "goal": None}]
    return json.loads(out.read_text())


def median_rows(runs: list[list[dict]]) -> list[dict]:
    """Per (bench, figure): the median over runs of baseline, ours and ratio."""
    order, by = [], {}
    for rows in runs:
        for r in rows:
            k = (r["bench"], r["figure"])
            if k not in by:
                order.append(k)
                by[k] = []
            by[k].append(r)
    out = []
    for k in order:
        rs = by[k]
        m = dict(rs[0])
        for f in ("baseline", "ours", "ratio"):
            vals = [r[f] for r in rs if r[f] is not None]
            m[f] = statistics.median(vals) if vals else None
        m["n_runs"] = len(rs)
        out.append(m)
    return out


def _num(v, unit: str) -> str:
    if v is None:
        return ""
    if v != v:  # NaN
        return "n/a"
    s = f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{s} {unit}".strip()


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| bench | figure | baseline | ours | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = met(r)
        base = f"{r['baseline_name']}: {_num(r['baseline'], r['unit'])}" if r["baseline_name"] else _num(
            r["baseline"], r["unit"])
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        verdict = "" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {r['bench']} | {r['figure']} | {base} | {_num(r['ours'], r['unit'])} | {ratio} | "
                     f"{r['target']} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="runs of each bench; the table shows medians")
    ap.add_argument("--only", nargs="+", default=None,
                    help="bench names (hrf, ingest, loader, encode, storage, catalog)")
    ap.add_argument("--encode-seconds", type=float, nargs="+", default=[30.0])
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args(argv)
    todo = [(n, a) for n, a in benches(args.encode_seconds)
            if args.only is None or any(n.split()[0] == o for o in args.only)]
    out = Path(args.out)
    runs: list[list[dict]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, open(out.with_suffix(".log"), "w") as log:
        for i in range(args.runs):
            print(f"run {i + 1} of {args.runs}", flush=True)
            rows = []
            for name, a in todo:
                rows += run_one(a, Path(tmp) / f"{name.replace(' ', '_')}-{i}.json", log)
            runs.append(rows)
    rows = median_rows(runs)
    header = (f"# Benchmarks\n\nWritten by `make bench` (`bench/report.py --runs {args.runs}`) on "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} CPU(s), "
              f"{platform.machine()}, Python {platform.python_version()}; {time.perf_counter() - t0:.0f} s. "
              f"Median of {args.runs} run(s) per figure; every ratio is measured within one run against its "
              "baseline on the same data. Printed output of each bench: `bench/RESULTS.log`.")
    out.write_text(markdown(rows, header))
    print(out.read_text())
    return 0 if all(met(r) is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
