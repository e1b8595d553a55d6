"""Run as a process by tests/store/test_soak.py until an epoch deadline, on one store URL.

``python soak_worker.py writer URL MODEL STIM_DIR DEADLINE``: extract every stimulus in STIM_DIR on a
new TR grid each round (the two writers walk the same grids, so they race on the same keys).
``python soak_worker.py maintain URL - - DEADLINE``: ``gc --older-than 1s``, ``verify --repair`` and
``reindex`` through the CLI, in turn. Every command's exit status and stderr go to stdout as JSON
lines; the test fails on any status other than 0 or any "unexpected error".
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path


def writer(url: str, model: str, stim_dir: str, deadline: float) -> None:
    from giblet_store import CodecParams, TrGrid, extract_codes, open_store

    store = open_store(url)
    stims = sorted(Path(stim_dir).glob("*.wav"))
    i = 0
    while time.time() < deadline:
        for stim in stims:
            grid = TrGrid(tr_s=0.5 + 0.01 * (i % 40))
            try:
                r = extract_codes(store, stim, CodecParams(model, bandwidth_kbps=1.5), grid)
                print(json.dumps({"role": "writer", "ok": True, "key": r.entry.key, "created": r.created}), flush=True)
            except Exception as exc:  # the test fails on any of these
                print(json.dumps({"role": "writer", "ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        i += 1


def maintain(url: str, deadline: float) -> None:
    from giblet_store.cli import main

    commands = (["gc", url, "--older-than", "1s"], ["verify", url, "--repair"], ["reindex", url])
    n = 0
    while time.time() < deadline:
        argv = commands[n % len(commands)]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(argv)
        print(json.dumps({"role": argv[0], "ok": code == 0 and "unexpected" not in err.getvalue(),
                          "code": code, "stderr": err.getvalue()[-2000:]}), flush=True)
        n += 1
        time.sleep(0.2)


if __name__ == "__main__":
    role, url, model, stim_dir, deadline = sys.argv[1:6]
    if role == "writer":
        writer(url, model, stim_dir, float(deadline))
    else:
        maintain(url, float(deadline))
