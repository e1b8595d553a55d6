"""A newcomer's friction list (issue 12): help with defaults, missing extras, undefined r, the demo's
files, extract of several files from Python, show without truncation."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import giblet_store as gs
from giblet_store import AudioError, CodecParams, TrGrid, extract_codes, open_store
from giblet_store.cli import main
from giblet_store.testing import synth_audio, write_wav
from helpers import Terminal as _Terminal


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_shows_defaults_and_explains_positionals(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one help line per option
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    out = capsys.readouterr().out
    assert "TR in seconds (default: 1.5)" in out and "(default: 6.0)" in out and "(default: facebook/encodec_24khz)" in out
    assert "audio files (wav, flac, ogg, ...) or video/audio containers" in out and '{"entries": [entry, ...], ...}' in out
    with pytest.raises(SystemExit):
        main(["ls", "--help"])
    out = capsys.readouterr().out
    assert "only entries of this kind: codes, mel" in out and "store directory or fsspec URL" in out
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    assert "--model NAME_OR_DIR" in capsys.readouterr().out


def test_a_missing_extra_names_the_extra(tmp_path, monkeypatch, capsys):
    wav = write_wav(tmp_path / "a.wav", synth_audio(2.0, 22050, seed=1), 22050)
    store = open_store(tmp_path / "st")
    before = _files(Path(store.root))
    monkeypatch.setitem(sys.modules, "librosa", None)  # `import librosa` now fails as if not installed
    assert main(["mel", str(wav), "--store", store.url]) == 2
    err = capsys.readouterr().err
    assert "optional package 'librosa'" in err and "pip install 'giblet_store[mel]'" in err
    assert "unexpected error" not in err and "Traceback" not in err
    assert _files(Path(store.root)) == before
    (tmp_path / "m.yaml").write_text(f"stimuli: [{wav}]\n")  # a YAML manifest without PyYAML
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert main(["batch", str(tmp_path / "m.yaml"), "--store", store.url]) == 2
    err = capsys.readouterr().err
    assert "optional package 'yaml'" in err and "pip install 'giblet_store[distributed]'" in err, err
    assert _files(Path(store.root)) == before


def test_evaluate_on_constant_predictions_says_why_r_is_undefined(tmp_path, capsys):
    rng = np.random.default_rng(1)
    img = nib.Nifti1Image((100 + rng.standard_normal((3, 3, 2, 8))).astype(np.float32), np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
    nib.save(img, str(tmp_path / "s.nii"))
    store = open_store(tmp_path / "st")
    fmri = gs.ingest_fmri(store, [tmp_path / "s.nii"], ["s1"]).entry
    y = fmri.open()["fmri"].values
    pred, _ = gs.write_predictions(store, np.ones_like(y), fmri, model_name="flat", checkpoint_sha256="3" * 64)
    assert main(["evaluate", store.url, pred.key[:12]]) == 0
    out, err = capsys.readouterr()
    assert "mean r=undefined" in out and "mean r=None" not in out
    n = y.shape[2]
    assert f"r is undefined (NaN) for {n} of {n} voxel x subject pair(s)" in err
    assert "predictions are constant over the TRs" in err and "standard deviation, which is 0" in err


def test_demo_writes_its_wav_beside_its_store(tmp_path, model_dir, monkeypatch, capsys):
    from giblet_store.cli import demo

    monkeypatch.setattr(demo, "DEMO_SECONDS", 6.0)  # 4 TRs, as many as it decodes
    assert demo.run_demo(str(tmp_path / "demo_store"), str(model_dir)) == 0
    assert (tmp_path / "demo_stimulus.wav").is_file() and (tmp_path / "demo_decoded_tr0-4.wav").is_file()
    assert f"stimulus: {tmp_path / 'demo_stimulus.wav'}" in capsys.readouterr().out


def test_extract_codes_takes_a_list_and_checks_it_first(tmp_path, model_dir):
    a = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    b = write_wav(tmp_path / "b.wav", synth_audio(1.5, 24000, seed=2), 24000)
    store = open_store(tmp_path / "st")
    codec = CodecParams(str(model_dir), bandwidth_kbps=1.5)
    with pytest.raises(AudioError, match="missing.wav"):
        extract_codes(store, [a, tmp_path / "missing.wav"], codec, TrGrid(1.5))
    assert store.entries() == []  # checked before the first was encoded
    results = extract_codes(store, [a, b], codec, TrGrid(1.5))
    assert [r.entry.attrs["source_name"] for r in results] == ["a.wav", "b.wav"]


def test_show_prints_attributes_in_full(tmp_path, model_dir, capsys):
    a = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    store = open_store(tmp_path / "st")
    e = extract_codes(store, a, CodecParams(str(model_dir), bandwidth_kbps=1.5), TrGrid(1.5)).entry
    capsys.readouterr()
    assert main(["show", store.url, e.key[:10]]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == repr(e)
    assert f'    source_sha256: "{e.attrs["source_sha256"]}"' in out and '"algorithm_version"' in out


@pytest.mark.parametrize("argv_tail, bar", [([], True), (["--no-progress"], False)])
def test_extract_shows_a_progress_bar_on_a_terminal(tmp_path, model_dir, monkeypatch, argv_tail, bar):
    a = write_wav(tmp_path / "a.wav", synth_audio(3.0, 24000, seed=1), 24000)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["extract", str(a), "--store", str(tmp_path / "st"), "--model", str(model_dir), "--bandwidth", "1.5",
                 "--chunk-seconds", "1", *argv_tail]) == 0
    # the stream encoder reports each piece (1 s here): the bar moves during the encode, not once at the end
    steps = [f"| {k}/3 s of audio" for k in range(3)]  # the last step clears the bar (leave=False)
    assert ("extract a.wav" in term.text and all(s in term.text for s in steps)) is bar


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path, model_dir, capsys):
    a = write_wav(tmp_path / "a.wav", synth_audio(2.0, 24000, seed=1), 24000)
    assert main(["extract", str(a), "--store", str(tmp_path / "st"), "--model", str(model_dir),
                 "--bandwidth", "1.5"]) == 0
    assert capsys.readouterr().err == ""
    store = open_store(tmp_path / "st")
    e = store.entries()[0]
    term = _Terminal()
    with gs.progress_bar("derive", stream=term):  # the Python API: a bar on demand
        store.derive(e, gs.Embeddings())
    assert "derive:" in term.text and "task/s" in term.text


@pytest.mark.parametrize("argv_tail, bar", [([], True), (["--no-progress"], False)])
def test_quality_shows_a_progress_bar_on_a_terminal(tmp_path, monkeypatch, argv_tail, bar):
    a = write_wav(tmp_path / "a.wav", synth_audio(3.0, 16000, seed=1), 16000)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["quality", str(a), str(a), "--metrics", "snr,si_sdr", *argv_tail]) == 0
    assert ("quality" in term.text and "task" in term.text) is bar


def _subcommands() -> dict:
    import argparse

    from giblet_store.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_help_is_current():
    """Issue 20 item 16: stale help texts."""
    import re

    from giblet_store.validate import KINDS

    helps = {name: " ".join(p.format_help().split()) for name, p in _subcommands().items()}
    for name in ("extract", "mel", "compare"):
        assert "containers (mp4, mov, mkv" in helps[name] and "(wav, flac, ogg)" not in helps[name], name
    kind_help = re.search(r"--kind KIND only entries of this kind: (.*?) --where", helps["ls"]).group(1)
    assert kind_help.split(", ") == list(KINDS)
    assert "hub model" not in helps["decode"] and "model registry remembers" in helps["decode"]
    assert helps["quality"].count("a codes, mel or reconstruction entry key") == 2
    assert helps["gc"].count("default") == 1 and "(default: 1h)" in helps["gc"]


def test_every_option_and_argument_has_help():
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in _subcommands().items() for a in p._actions
               if not a.help]
    assert missing == []


def test_every_json_command_prints_one_object_with_entries(tmp_path, model_dir, capsys):
    import json

    wav = write_wav(tmp_path / "a.wav", synth_audio(4.5, 24000, seed=1), 24000)  # 3 TRs, and 3 volumes
    rng = np.random.default_rng(2)
    img = nib.Nifti1Image((100 + rng.standard_normal((3, 3, 2, 3))).astype(np.float32), np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((1.0, 1.0, 1.0, 1.5))
    nib.save(img, str(tmp_path / "s.nii"))
    st, docs = str(tmp_path / "st"), {}

    def js(*argv):
        capsys.readouterr()
        assert main([*map(str, argv), "--json"]) == 0, capsys.readouterr().err
        docs[argv[0]] = doc = json.loads(capsys.readouterr().out)
        return doc

    key = js("extract", wav, "--store", st, "--model", model_dir, "--bandwidth", "1.5")["entries"][0]["key"]
    js("ls", st), js("show", st, key[:10]), js("mel", wav, "--store", st, "--n-mels", "16")
    js("derive", st, key[:10], "--embeddings", "--model", model_dir)
    fmri = js("ingest-fmri", st, tmp_path / "s.nii", "--subject", "s1", "--stimulus", key[:10])["entries"][0]
    store = open_store(st)
    y = store.open(fmri["key"])["fmri"].values
    pred, _ = gs.write_predictions(store, y[:, ::-1].copy(), fmri["key"], model_name="m", checkpoint_sha256="4" * 64)
    js("evaluate", st, pred.key[:10])
    js("quality", wav, key[:10], "--store", st, "--metrics", "snr", "--model", model_dir)
    assert main(["export", st, key[:10], "-o", str(tmp_path / "c.npy")]) == 0
    js("import", tmp_path / "c.npy", "--store", str(tmp_path / "st2"), "--model", model_dir)
    js("verify", st), js("gc", st), js("reindex", st)
    with_json = {n for n, p in _subcommands().items() if any(a.dest == "json" for a in p._actions)}
    assert set(docs) == with_json - {"batch"}  # batch (a cluster): tests/test_batch.py reads doc["entries"]
    for name, doc in docs.items():
        assert isinstance(doc, dict) and isinstance(doc["entries"], list), name
        assert all({"key", "kind", "path", "attrs"} <= set(e) for e in doc["entries"]), name
    assert docs["gc"]["items"] == [] and docs["reindex"]["counts"]["codes"] == 1 and docs["verify"]["ok"]
    assert docs["import"]["entries"][0]["created"] and docs["quality"]["entries"][0]["kind"] == "quality"


@pytest.mark.parametrize("no_progress", [False, True])
def test_mel_derive_and_ingest_show_progress_bars_on_a_terminal(tmp_path, model_dir, monkeypatch, no_progress):
    wav = write_wav(tmp_path / "a.wav", synth_audio(4.5, 24000, seed=1), 24000)
    img = nib.Nifti1Image((100 + np.random.default_rng(3).standard_normal((3, 3, 2, 3))).astype(np.float32), np.eye(4))
    img.header.set_zooms((1.0, 1.0, 1.0, 1.5))
    nib.save(img, str(tmp_path / "s.nii"))
    st = str(tmp_path / "st")
    key = extract_codes(open_store(st), wav, CodecParams(str(model_dir), bandwidth_kbps=1.5), TrGrid(1.5)).entry.key
    tail = ["--no-progress"] if no_progress else []
    for argv, label in [(["mel", str(wav), "--store", st, "--n-mels", "16"], "mel a.wav:"),
                        (["derive", st, key[:10], "--embeddings", "--model", str(model_dir)], "derive embeddings:"),
                        (["ingest-fmri", st, str(tmp_path / "s.nii"), "--subject", "s1"], "ingest-fmri:")]:
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        assert main([*argv, *tail]) == 0
        assert (label in term.text and "task" in term.text) is not no_progress, (argv[0], term.text)


def test_extract_mel_takes_a_list_and_checks_it_first(tmp_path):
    pytest.importorskip("librosa")
    a = write_wav(tmp_path / "a.wav", synth_audio(2.0, 22050, seed=1), 22050)
    b = write_wav(tmp_path / "b.wav", synth_audio(1.5, 22050, seed=2), 22050)
    store = open_store(tmp_path / "st")
    params = gs.MelParams(n_mels=16, n_fft=512, hop=256)
    with pytest.raises(AudioError, match="missing.wav"):
        gs.extract_mel(store, [a, tmp_path / "missing.wav"], params, TrGrid(1.5))
    assert store.entries() == []  # checked before the first was analysed
    results = gs.extract_mel(store, [a, b], params, TrGrid(1.5))
    assert [r.entry.attrs["source_name"] for r in results] == ["a.wav", "b.wav"]
