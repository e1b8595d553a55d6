"""examples/explore_store.ipynb: saved without outputs, executed top to bottom with nbclient on the
shared recordings, in a kernel of the interpreter that runs the tests."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "explore_store.ipynb"
ROOT = NOTEBOOK.parents[1]


def test_notebook_is_saved_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def _listing(root: Path) -> set[str]:
    """Every path in the checkout outside .git and __pycache__ folders."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if ".git" not in p.relative_to(root).parts[:1] and "__pycache__" not in p.parts}


def _kernel_spec(tmp_path: Path) -> Path:
    """A kernelspec for this interpreter in a private Jupyter path (nothing installed for the user)."""
    d = tmp_path / "jupyter" / "kernels" / "giblet-test"
    d.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "giblet test", "language": "python"}
    (d / "kernel.json").write_text(json.dumps(spec))
    return tmp_path / "jupyter"


@pytest.mark.data
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_client / zmq internals
def test_notebook_runs_top_to_bottom(shared_data, model_dir, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    figures = Path(os.environ.get("GIBLET_KEEP_FIGURES", tmp_path / "figures"))
    figures.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path)))
    monkeypatch.setenv("GIBLET_SHARED_DATA", str(shared_data))
    monkeypatch.delenv("GIBLET_NOTEBOOK_DIR", raising=False)  # the default, as a user runs it (issue 20 item 18)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where the kernel's tempfile puts the default folder
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("GIBLET_NOTEBOOK_FIGURES", str(figures))
    monkeypatch.setenv("GIBLET_EXAMPLE_MODEL", str(model_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    checkout = _listing(ROOT)
    t0 = time.perf_counter()
    NotebookClient(nb, kernel_name="giblet-test", timeout=240,  # run in examples/, where a user opens it
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    seconds = time.perf_counter() - t0
    print(f"notebook ran in {seconds:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert _listing(ROOT) == checkout  # it wrote examples/explore_store_files/ (a store and a 1.9 MB wav) here
    (work,) = (tmp_path / "tmp").glob("giblet_explore_*")
    assert (work / "store" / "zarr.json").is_file() and (work / "music_40s.wav").is_file()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "held-out mean r =" in text and "real frames per TR: [150, 150, 150]\n" in text
    assert text.startswith(f"model: {model_dir}\n")  # issue 20 item 17: the first line names the model
    assert sorted(p.name for p in figures.glob("*.png")) == [
        "codes_and_mel_per_tr.png", "embeddings_hrf.png", "mel_vs_time.png", "r_map.png"]
    from giblet_store import open_store

    store = open_store(work / "store", mode="r")
    assert {e.kind for e in store.entries()} == {"codes", "mel", "embeddings", "features", "fmri", "predictions",
                                                 "evaluation"}
