"""Every script in examples/ runs (in a subprocess, from a temporary directory)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart(tmp_path, model_dir):
    p = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--model", str(model_dir), "--store", str(tmp_path / "qs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "created:" in p.stdout and "codebooks at 6 kbps: 8" in p.stdout
    assert "real frames in TRs 0-5: [113, 112, 113, 112, 113, 112]" in p.stdout
    assert (tmp_path / "qs.tr2-4.wav").exists()
    again = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--model", str(model_dir), "--store", str(tmp_path / "qs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert again.returncode == 0 and "cached:" in again.stdout


def test_every_example_has_a_test():
    """A new example must be run by some test: its file name appears in tests/."""
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    for ex in EXAMPLES.glob("*.py"):
        assert ex.name in tests or ex.stem in tests, f"examples/{ex.name} is not run by any test"
