"""Manifests: CSV / YAML / JSON layouts, grid expansion, and every problem reported before any work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from giblet_store.codec.encodec import CodecParams
from giblet_store.errors import ParameterError
from giblet_store.batch.manifest import Job, ManifestError, load_manifest
from giblet_store.testing import synth_audio, write_wav

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HAS_MEL = importlib.util.find_spec("giblet_store.features.mel") is not None


@pytest.fixture
def wavs(tmp_path) -> Path:
    for i, name in enumerate(["a.wav", "b.wav", "c.wav"]):
        write_wav(tmp_path / name, synth_audio(0.5, 24000, seed=i), 24000)
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_expands_stimuli_x_kinds_x_bandwidths_x_trs(wavs):
    m = load_manifest(_write(wavs / "m.yaml", """
bandwidths: [1.5, 6]
trs: [1.5, 2.0]
chunk_s: 2
stimuli:
  - a.wav
  - {path: b.wav, onset_s: -1.5, n_trs: 3, bandwidths: [3]}
"""))
    assert m.stimuli == (wavs / "a.wav", wavs / "b.wav")
    assert [(j.path.name, j.codec.bandwidth_kbps, j.grid.tr_s) for j in m.jobs] == [
        ("a.wav", 1.5, 1.5), ("a.wav", 6.0, 1.5), ("a.wav", 1.5, 2.0), ("a.wav", 6.0, 2.0),
        ("b.wav", 3.0, 1.5), ("b.wav", 3.0, 2.0),
    ]
    b = m.jobs[-1]
    assert (b.grid.onset_s, b.grid.n_trs, b.codec.chunk_s) == (-1.5, 3, 2.0)
    assert b.codec.context_s == CodecParams().context_s  # left out: CodecParams's default
    assert b.where == "stimuli[1]" and b.describe() == "kbps=3 tr=2 onset=-1.5 n_trs=3"
    assert m.device == "cpu" and m.tr_chunk is None


def test_csv_rows_with_list_cells_and_defaults(wavs):
    m = load_manifest(_write(wavs / "m.csv", """# a comment line
path, bandwidths, trs, onset_s, n_trs
a.wav, 1.5;6, 1.5 2.0,,
b.wav,,2.0,0.5,4
"""))
    bw = CodecParams().bandwidth_kbps
    assert [(j.path.name, j.codec.bandwidth_kbps, j.grid.tr_s, j.grid.onset_s, j.grid.n_trs) for j in m.jobs] == [
        ("a.wav", 1.5, 1.5, 0.0, None), ("a.wav", 6.0, 1.5, 0.0, None),
        ("a.wav", 1.5, 2.0, 0.0, None), ("a.wav", 6.0, 2.0, 0.0, None),
        ("b.wav", bw, 2.0, 0.5, 4),
    ]
    assert m.jobs[0].where == "line 3"


def test_json_manifest_and_model_directory_relative_to_it(wavs):
    (wavs / "models" / "enc").mkdir(parents=True)
    m = load_manifest(_write(wavs / "m.json", json.dumps(
        {"model": "models/enc", "tr_chunk": 4, "device": "cpu", "stimuli": ["a.wav"]})))
    assert m.jobs[0].codec.model == str((wavs / "models" / "enc").resolve())
    assert m.tr_chunk == 4
    hub = load_manifest({"stimuli": ["a.wav"]}, base_dir=wavs)
    assert hub.jobs[0].codec.model == "facebook/encodec_24khz" and hub.source == "<mapping>"


def test_every_problem_is_reported_at_once(wavs):
    path = _write(wavs / "bad.csv", """path,bandwith,trs,kinds
a.wav,,1.5,codes
missing.wav,,1.5,codes
a.wav,,2.0,codes
b.wav,,-1,codes
c.wav,,1.5,codes;spectrogram
""")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert "nothing was run" in msg
    assert "unknown column 'bandwith' (did you mean 'bandwidths'?)" in msg
    # the unknown column stops reading before the rows; fix it and the rows are checked
    path = _write(wavs / "bad.csv", path.read_text().replace("bandwith", "bandwidths").replace(",,", ",x6,", 1))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    problems = info.value.problems
    text = "\n".join(problems)
    assert "line 2 (a.wav): bandwidth_kbps must be a number, got 'x6'" in text
    assert "line 3 (missing.wav): file" in text and "does not exist" in text
    assert "line 4 (a.wav): repeats line 2" in text
    assert "line 5 (b.wav): tr_s must be a positive number of seconds, got -1.0" in text
    assert "line 6 (c.wav): unknown kind 'spectrogram'" in text
    assert len(problems) == 5


def test_yaml_structure_errors(wavs):
    with pytest.raises(ManifestError, match="unknown top-level key 'bandwidth' \\(did you mean 'bandwidths'"):
        load_manifest({"bandwidth": 6, "stimuli": ["a.wav"]}, base_dir=wavs)
    with pytest.raises(ManifestError, match="'stimuli' must be a non-empty list"):
        load_manifest({"stimuli": []}, base_dir=wavs)
    with pytest.raises(ManifestError, match=r"stimuli\[0\]: unknown key 'onset'"):
        load_manifest({"stimuli": [{"path": "a.wav", "onset": 1}]}, base_dir=wavs)
    with pytest.raises(ManifestError, match="cannot parse m.yaml"):
        load_manifest(_write(wavs / "m.yaml", "stimuli: [a.wav\n"))
    with pytest.raises(ManifestError, match="must be a mapping"):
        load_manifest(_write(wavs / "m.yaml", "- a.wav\n"))
    with pytest.raises(ManifestError, match="unknown manifest format '.txt'"):
        load_manifest(_write(wavs / "m.txt", "a.wav\n"))
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(wavs / "nope.yaml")


def test_invalid_values(wavs):
    cases = {
        "bandwidths: [6, 6.0]": "bandwidths lists 6 twice",
        "bandwidths: [true]": "bandwidth_kbps must be a number, got True",
        "trs: [1500]": "Did you give milliseconds?",
        "n_trs: -3": "n_trs must be a non-negative whole number",
        "chunk_s: 0": "chunk_s must be positive seconds",
        "context_s: -1": "context_s must be >= 0",
        "encoder: fast": "encoder must be one of stream, chunked, got 'fast'",
        "kinds: [codes, codes]": "kind 'codes' is listed twice",
        "kinds: []": "kinds is empty",
        "tr_chunk: 0": "tr_chunk must be a positive integer, got 0",
        "device: ''": "device must be a torch device name",
    }
    for line, expected in cases.items():
        with pytest.raises(ManifestError) as info:
            load_manifest(_write(wavs / "m.yaml", f"{line}\nstimuli: [a.wav]\n"))
        assert expected in str(info.value), (line, str(info.value))
        assert isinstance(info.value, ParameterError)


def test_a_directory_is_not_a_stimulus(wavs):
    (wavs / "d.wav").mkdir()
    with pytest.raises(ManifestError, match="is a directory; expected an audio file"):
        load_manifest({"stimuli": ["d.wav"]}, base_dir=wavs)


@pytest.mark.skipif(not HAS_MEL, reason="giblet_store.features.mel is not importable (mel extraction not installed)")
def test_mel_kind_and_its_parameters(wavs):
    m = load_manifest({"kinds": ["codes", "mel"], "mel": {"n_mels": 40}, "stimuli": ["a.wav"]}, base_dir=wavs)
    assert [(j.kind, j.mel) for j in m.jobs] == [("codes", {}), ("mel", {"n_mels": 40})]
    assert m.jobs[1].codec is None and m.jobs[1].describe() == "tr=1.5 n_mels=40"
    with pytest.raises(ManifestError, match="mel: n_mels=5000 exceeds"):
        load_manifest({"kinds": ["mel"], "mel": {"n_mels": 5000}, "stimuli": ["a.wav"]}, base_dir=wavs)
    with pytest.raises(ManifestError, match="unknown field"):
        load_manifest({"kinds": ["mel"], "mel": {"nmels": 5}, "stimuli": ["a.wav"]}, base_dir=wavs)


def test_example_manifest_parses(tmp_path):
    text = (EXAMPLES / "batch_manifest.yaml").read_text()
    for name in ("sherlock_part1.wav", "sherlock_part2.wav"):
        write_wav(tmp_path / name, synth_audio(0.5, 24000, seed=1), 24000)
    path = _write(tmp_path / "batch_manifest.yaml", text)
    if not HAS_MEL:
        with pytest.raises(ManifestError, match="kind 'mel' needs giblet_store.features.mel"):
            load_manifest(path)
        return
    m = load_manifest(path)
    kinds = [j.kind for j in m.jobs]
    assert kinds.count("codes") == 2 * 2 * 2 and kinds.count("mel") == 2 * 2
    part2 = [j for j in m.jobs if j.path.name == "sherlock_part2.wav"]
    assert {(j.grid.onset_s, j.grid.n_trs) for j in part2} == {(-2.0, 946)}
    assert isinstance(m.jobs[0], Job)


# ------------------------------------------------------------------------------------ issue 21: hostile files
def _laughs(levels: int = 9) -> str:
    """A YAML "billion laughs": 10 lines whose aliases expand to 9**9 strings."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"[: levels - 1]):
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\nstimuli: [a.wav]\n"


def test_yaml_alias_bomb_is_refused_before_it_is_built(wavs, monkeypatch):
    import yaml

    built = []
    real = yaml.SafeLoader.construct_document
    monkeypatch.setattr(yaml.SafeLoader, "construct_document", lambda self, node: built.append(1) or real(self, node))
    (wavs / "laughs.yaml").write_text(_laughs())
    with pytest.raises(ManifestError) as err:
        load_manifest(wavs / "laughs.yaml")
    assert "expands to more than 1,000,000 values" in str(err.value) and "aliases" in str(err.value)
    assert built == [] and len(str(err.value)) < 400
    (wavs / "few.yaml").write_text(_laughs(levels=3))  # 9**3 values: an ordinary use of aliases still loads
    with pytest.raises(ManifestError, match="unknown top-level key 'a'"):
        load_manifest(wavs / "few.yaml")


def test_recursive_alias_and_deep_nesting_are_refused(wavs):
    (wavs / "rec.yaml").write_text("x: &x [*x]\nstimuli: [a.wav]\n")
    with pytest.raises(ManifestError, match="expands to more than"):
        load_manifest(wavs / "rec.yaml")
    (wavs / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="nested too deeply"):
        load_manifest(wavs / "deep.json")


@pytest.mark.parametrize("name, data, wanted", [
    ("nul.yaml", b"stimuli: [a\x00.wav]\n", "holds NUL bytes (first at byte 11)"),
    ("latin.csv", b"path\ncaf\xe9.wav\n", "not UTF-8 text (byte 0xe9 at offset 8); save it as UTF-8"),
    ("cell.csv", b"path\n" + b"a" * 140_000 + b".wav\n", "line 2: a cell is longer than 131,072 characters"),
])
def test_binary_foreign_encoding_and_huge_cells_are_refused(wavs, name, data, wanted):
    (wavs / name).write_bytes(data)
    with pytest.raises(ManifestError) as err:
        load_manifest(wavs / name)
    assert wanted in str(err.value)


def test_symlink_loops_are_named(wavs):
    (wavs / "l1.yaml").symlink_to(wavs / "l2.yaml")
    (wavs / "l2.yaml").symlink_to(wavs / "l1.yaml")
    with pytest.raises(ManifestError, match="is a symlink loop; point it at the manifest file"):
        load_manifest(wavs / "l1.yaml")
    (wavs / "s1.wav").symlink_to(wavs / "s2.wav")
    (wavs / "s2.wav").symlink_to(wavs / "s1.wav")
    with pytest.raises(ManifestError, match="'s1.wav' is a symlink loop; point it at the audio file"):
        load_manifest({"stimuli": ["s1.wav"]}, base_dir=wavs)


def test_n_trs_beyond_any_scan_and_many_unknown_columns(wavs):
    with pytest.raises(ManifestError, match="n_trs=1e\\+23 is more than the 1000000 TRs limit"):
        load_manifest({"stimuli": [{"path": "a.wav", "n_trs": 10**23}]}, base_dir=wavs)
    header = ",".join(["path"] + [f"col{i}" for i in range(200)])
    (wavs / "cols.csv").write_text(f"{header}\na.wav\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(wavs / "cols.csv")
    text = str(err.value)
    assert "and 195 more unknown columns" in text and len(text) < 2000
