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


def test_quickstart_with_the_48khz_stereo_model(tmp_path, model48_dir):
    """issue 22, item 4: rate, channels, hop and bandwidth come from the model (no 320 / 24000 in the script)."""
    p = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--model", str(model48_dir), "--store", str(tmp_path / "qs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "model: 48000 Hz, 2 channel(s), hop 320, 150 frames/s, bandwidths [3.0, 6.0, 12.0, 24.0] kbps" in p.stdout
    assert "codebooks at 6 kbps: 4" in p.stdout and "chunk scales:" in p.stdout
    import soundfile as sf

    info = sf.info(str(tmp_path / "qs.tr2-4.wav"))
    assert info.samplerate == 48000 and info.channels == 2
    assert 4.5 <= info.frames / 48000 < 4.6  # TRs 2:5 = 3.0..7.5 s, from their first frame to their last's end
