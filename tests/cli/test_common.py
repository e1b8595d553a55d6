"""What the subcommands share (cli/common.py): a refused command leaves no store it created behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from giblet_store.testing import synth_audio, write_wav

from helpers import snapshot


def _tree(root: Path) -> tuple:
    """Every path under root (folders too) and every file's bytes."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")), snapshot(root)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import nibabel as nib

    d = tmp_path_factory.mktemp("inputs")
    img = nib.Nifti1Image(100 + np.random.default_rng(0).standard_normal((3, 3, 3, 6)).astype(np.float32),
                          np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, 1.5))
    nib.save(img, d / "bold.nii")
    write_wav(d / "clip.wav", synth_audio(1.0, 16000, seed=1), 16000)
    return d


REFUSED = {  # issue 20 item 19: each of these created the store before refusing its input
    "ingest-fmri-bad-stimulus": (("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--stimulus", "ffff"),
                                 "'ffff'"),
    "quality-missing-deg": (("quality", "{in}/clip.wav", "{in}/nope.wav", "--store", "{st}"), "does not exist"),
    "import-unknown-format": (("import", "{in}/clip.wav", "--store", "{st}"), "cannot tell the format"),
    "evaluate-no-store": (("evaluate", "{st}", "abcd"), "no giblet store at"),
    "reindex-no-store": (("reindex", "{st}"), "no giblet store at"),
}


@pytest.mark.parametrize("where", ["new folder", "empty folder"])
@pytest.mark.parametrize("name", list(REFUSED))
def test_a_refused_command_creates_no_store(run, tmp_path, inputs, name, where):
    argv, said = REFUSED[name]
    st = tmp_path / "a" / "st2"
    if where == "empty folder":
        st.mkdir(parents=True)
    before = _tree(tmp_path)
    code, out, err = run(*(a.format(st=st, **{"in": inputs}) for a in argv))
    assert code == 2 and said in err and "Traceback" not in err, err
    assert _tree(tmp_path) == before  # no zarr.json, and no folder made on the way


def test_a_store_that_was_there_keeps_its_root_document(run, tmp_path, inputs):
    from giblet_store import open_store

    st = tmp_path / "st"
    open_store(st)
    before = _tree(tmp_path)
    code, _, err = run("ingest-fmri", st, inputs / "bold.nii", "--subject", "s1", "--stimulus", "ffff")
    assert code == 2 and "'ffff'" in err and _tree(tmp_path) == before
    code, _, err = run("ingest-fmri", st, inputs / "bold.nii", "--subject", "s1")
    assert code == 0, err
