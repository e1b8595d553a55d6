"""examples/movie_codes.py runs (in a subprocess, from a temporary directory)."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_movie_codes(tmp_path, model_dir):
    cmd = [sys.executable, str(EXAMPLES / "movie_codes.py"), "--model", str(model_dir), "--store", str(tmp_path / "m")]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "created:" in p.stdout and "from audio stream 1 (aac in mov,mp4" in p.stdout
    assert "first sample at 0.500 s" in p.stdout  # the 0.5 s delay, AAC priming dropped (issue 20 item 5)
    assert "ecdc: m.ecdc" in p.stdout and p.stdout.count("identical codes: True") == 2
    assert (tmp_path / "m.mp4").exists() and (tmp_path / "m.acomp").read_text().startswith("1\n1.5\n")
