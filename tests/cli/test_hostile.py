"""One table of hostile inputs across every command and the Python API (issue 9).

Each row runs in-process (``giblet_store.cli.main`` or a Python call) against a fresh copy of one
small store and asserts: the exit status (2, or 0 where the input is documented to work), a message
naming the input and what to do, no traceback and no "unexpected error", and, for every refusal,
every file under the test's folder (the store included) byte-identical.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from giblet_store import open_store
from giblet_store.cli import main
from giblet_store.errors import GibletStoreError
from giblet_store.testing import synth_audio, write_wav

from helpers import (snapshot, write_chained_ogg, write_claiming_mp3, write_claiming_rf64, write_hostile_niftis,
                     write_long_header_flac)

FAST = ["--bandwidth", "1.5", "--chunk-seconds", "1", "--context-seconds", "0.5"]


@dataclass(frozen=True)
class Case:
    """argv (``{st}`` store copy, ``{key}``/``{k12}`` its entry, ``{model}``, ``{in}`` inputs, ``{tmp}``), or ``api``."""

    id: str
    argv: tuple = ()
    must: tuple = ()
    code: int = 2
    prep: Callable | None = None
    api: Callable | None = None
    extra: dict = field(default_factory=dict)


def X(name, *args, **kw):
    """extract of input ``name`` into the store copy."""
    return ("extract", "{in}/" + name, "--store", "{st}", "--model", "{model}", *FAST, *args)


def B(*args):
    """ingest-fmri of the good BIDS study's fMRIPrep derivatives into the store copy (a later --bids wins)."""
    return ("ingest-fmri", "{st}", "--bids", "{in}/bids", "--task", "movie", "--derivatives", "fmriprep", *args)


def XA(*args):
    """extract of the good clip with extra arguments."""
    return X("clip.wav", *args)


# ------------------------------------------------------------------------------------ store edits
def _entry(st) -> Path:
    """The one codes entry folder of store ``st``: the folder holding a zarr.json, whatever order the
    filesystem lists the kind folder in (its own zarr.json may come first)."""
    found = [p for p in (Path(st) / "codes").iterdir() if p.is_dir() and (p / "zarr.json").is_file()]
    assert len(found) == 1, f"expected one codes entry in {st}, found {sorted(p.name for p in found)}"
    return found[0]


def _edit_attrs(st, **changes):
    p = _entry(st) / "zarr.json"
    meta = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            meta["attributes"].pop(k)
        else:
            meta["attributes"][k] = v
    p.write_text(json.dumps(meta))


def _edit_array(st, array, fn):
    p = _entry(st) / array / "zarr.json"
    meta = json.loads(p.read_text())
    fn(meta)
    p.write_text(json.dumps(meta))


def _root_version(st, v):
    p = Path(st) / "zarr.json"
    meta = json.loads(p.read_text())
    meta["attributes"]["giblet_store"]["format_version"] = v
    p.write_text(json.dumps(meta))


def _symlinked_entry_missing_chunk(st):
    """The entry folder replaced by a symlink to a copy outside the store, one chunk file gone."""
    e = _entry(st)
    os.rename(e, Path(st).parent / "elsewhere")
    os.symlink(Path(st).parent / "elsewhere", e)
    (e / "codes" / "c" / "0" / "0" / "0").unlink()


def _truncate_chunk(st):
    p = _entry(st) / "codes" / "c" / "0" / "0" / "0"
    p.write_bytes(p.read_bytes()[:5])


def _fifo_document(st):
    """A FIFO named zarr.json where an entry's document would be (opening it would wait forever)."""
    (Path(st) / "codes" / "0123456789abcdef").mkdir()
    os.mkfifo(Path(st) / "codes" / "0123456789abcdef" / "zarr.json")


def _fifo_chunk(st):
    p = _entry(st) / "codes" / "c" / "0" / "0" / "0"
    p.unlink()
    os.mkfifo(p)


def _index_in_the_way(st):
    """A folder where the codes index is written, so reindex cannot write it."""
    index = next((Path(st) / "_catalog" / "codes").glob("index*.json"))
    index.unlink()
    (index / "in-the-way").mkdir(parents=True)


def _move_to_mel(st):
    e = _entry(st)
    (Path(st) / "mel").mkdir()
    os.rename(e, Path(st) / "mel" / e.name)


def _zarr_json(text):
    return lambda st: (_entry(st) / "zarr.json").write_text(text)


def _attributes_list(st):
    p = _entry(st) / "zarr.json"
    meta = json.loads(p.read_text())
    meta["attributes"] = list(meta["attributes"])
    p.write_text(json.dumps(meta))


def _show_into_closed_pipe(ctx, st):
    """`giblet-store show ST KEY | head -0` as a real process: stdout's read end closed before it writes."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen([sys.executable, "-m", "giblet_store.cli", "show", str(st), ctx["key"]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as p:
        p.stdout.close()
        err = p.stderr.read().decode()
        print(f"exit {p.wait(timeout=120)}, stderr {err!r}")


# ------------------------------------------------------------------------------------ Python API rows
def _api_disk_full(what: str):
    """issue 21: ingest-fmri (``fmri``) or extract (``codes``) on a disk that fills at the entry's first chunk."""
    def run(ctx, st):
        import errno
        from unittest import mock

        import zarr.storage._local as zlocal
        from giblet_store import CodecParams, extract_codes, ingest_fmri

        real = zlocal._put

        def put(path, value, exclusive=False):
            if f"/{what}/c/" in str(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                with zlocal._atomic_write(path, "wb", exclusive=exclusive):  # its temp file made, then no room
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, value, exclusive)

        with mock.patch.object(zlocal, "_put", put):
            if what == "fmri":
                ingest_fmri(open_store(st), [ctx["in"] / "bold.nii"], ["s1"])
            else:
                extract_codes(open_store(st), ctx["in"] / "short.wav",
                              CodecParams(model=str(ctx["model"]), bandwidth_kbps=1.5, chunk_s=1.0, context_s=0.5))
    return run


def _api_rewritten_during_extract(ctx, st):
    """extract of a stimulus rewritten in place (same size) after it was hashed, while the model loads."""
    import tempfile
    from unittest import mock

    import giblet_store.features.codes as codes_mod
    from giblet_store import CodecParams, extract_codes

    stim = Path(tempfile.mkdtemp(prefix="giblet_hostile_")) / "stim.wav"  # outside the snapshot
    stim.write_bytes((ctx["in"] / "short.wav").read_bytes())  # not in the store: no cache hit before the model loads
    other = write_wav(stim.with_name("other.wav"), synth_audio(0.5, 24000, seed=11), 24000).read_bytes()
    real = codes_mod.load_codec

    def load_then_swap(*a, **kw):
        with open(stim, "r+b") as f:
            f.write(other)
        return real(*a, **kw)

    try:
        with mock.patch.object(codes_mod, "load_codec", load_then_swap):
            extract_codes(open_store(st), stim, CodecParams(model=str(ctx["model"]), bandwidth_kbps=1.5, chunk_s=1.0,
                                                            context_s=0.5))
    finally:
        shutil.rmtree(stim.parent)


def _with_fmri_and_atlases(st):
    """An fmri entry (s1, 8 TRs of a 4x3x3 grid of 3 mm) in the store copy, and atlases beside it."""
    import nibabel as nib

    from giblet_store import FmriParams, ingest_fmri

    d = Path(st).parent
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(100 + rng.standard_normal((4, 3, 3, 8)).astype(np.float32), aff), d / "bold_p.nii")
    labels = np.arange(36, dtype=np.int16).reshape(4, 3, 3) % 4
    nib.save(nib.Nifti1Image(labels, aff), d / "atlas.nii")
    nib.save(nib.Nifti1Image(np.repeat(np.repeat(np.repeat(labels, 3, 0), 3, 1), 3, 2), np.eye(4)), d / "atlas_1mm.nii")
    nib.save(nib.Nifti1Image(labels + np.float32(0.5), aff), d / "atlas_frac.nii")
    nib.save(nib.Nifti1Image(np.zeros_like(labels), aff), d / "atlas_zero.nii")
    (d / "atlas.txt").write_text("not an image\n")
    ingest_fmri(open_store(st), [str(d / "bold_p.nii")], ["s1"], params=FmriParams(tr_s=2.0),
                mask=np.ones((4, 3, 3), bool))


def G(*args):
    """ingest-fmri of func.gii files that _with_surfaces wrote in {tmp} (one subject s1 unless args say more)."""
    files = [a for a in args if a.endswith(".func.gii")]
    rest = [a for a in args if not a.endswith(".func.gii")]
    return ("ingest-fmri", "{st}", *("{tmp}/" + f for f in files), *(rest or ("--subject", "s1")), "--tr", "2")


def _with_surfaces(st):
    """func.gii files beside the store copy: a good pair (9 vertices, hemi-L/R in the metadata and the names
    of fsaverage6), a right one of 4 vertices, a right one of fsaverage5, and an empty left one."""
    from helpers import write_gifti

    d, rng = Path(st).parent, np.random.default_rng(0)
    x = 100 + rng.standard_normal((6, 9)).astype(np.float32)
    write_gifti(d / "L.func.gii", x, "L")
    write_gifti(d / "R.func.gii", x, "R")
    write_gifti(d / "R4.func.gii", x[:, :4], "R")
    write_gifti(d / "L6_hemi-L_space-fsaverage6_bold.func.gii", x, "L")
    write_gifti(d / "R5_hemi-R_space-fsaverage5_bold.func.gii", x, "R")
    write_gifti(d / "empty_hemi-L_space-fsaverage6_bold.func.gii", x, "L", empty=True)


def _api_write_evil_kind(ctx, st):
    import xarray as xr

    open_store(st).write(xr.Dataset({"x": (("tr",), np.zeros(2, np.float32))}), {"kind": "../evil", "key": "0" * 64})


def _api(fn_name):
    def call(ctx, st):
        from giblet_store import CodecParams, TrGrid, extract_codes
        from giblet_store.batch.manifest import load_manifest
        from giblet_store.store.verify import verify_store

        store = open_store(st, mode="r")
        {
            "mode": lambda: open_store(st, mode="x"),
            "find": lambda: store.find(kind="../../other/codes"),
            "find_typo": lambda: store.find(kind="codes", bandwith_kbps=1.5),
            "find_str": lambda: print("found", len(store.find(kind="codes", bandwidth_kbps="1.5"))),
            "get": lambda: store.get("../"),
            "lookup": lambda: store.lookup("0" * 63, "codes"),
            "lookup_kind": lambda: store.lookup("0" * 64, "codes/.."),
            "grid_nan": lambda: TrGrid(tr_s=math.nan),
            "grid_zero_trs": lambda: TrGrid(n_trs=0),
            "codec_str": lambda: CodecParams(bandwidth_kbps="6"),
            "extract_dir": lambda: extract_codes(open_store(st), ctx["in"] / "a dir.wav"),
            "manifest": lambda: load_manifest({"stimuli": "x.wav", "bandwith": 3}, base_dir=ctx["in"]),
            "verify_ro": lambda: verify_store(store, repair=True),
            "delete": lambda: open_store(st).delete("../codes"),
        }[fn_name]()

    return call


CASES = [
    # ---------------------------------------------------------------- audio
    Case("empty-file", X("empty.wav"), ("empty.wav", "not an audio file", "Re-export or re-download it")),
    Case("zero-samples", X("zero.wav"), ("zero.wav", "holds no samples", "Give a file that holds audio")),
    Case("non-audio", X("text.wav"), ("text.wav", "not an audio file", "Re-export or re-download it")),
    Case("truncated", X("trunc.wav"), ("trunc.wav", "is truncated", "export the file again")),
    Case("nan-audio", X("nan.wav"), ("nan.wav", "NaN or infinite samples", "repair or re-export")),
    Case("inf-audio", X("inf.wav"), ("inf.wav", "NaN or infinite samples", "repair or re-export")),
    Case("clipping-audio", X("clip3.wav"), ("created",), code=0),
    Case("8khz", X("8k.wav"), ("created",), code=0),
    Case("6-channel", X("six.wav"), ("created",), code=0),
    Case("shorter-than-hop", X("hop.wav"), ("hop.wav", "shorter than one EnCodec hop", "Give at least 13.3 ms")),
    Case("shorter-than-a-tr", X("short.wav"), ("created",), code=0),
    Case("directory", X("a dir.wav"), ("a dir.wav", "is a directory", "expected an audio file")),
    Case("fifo", X("fifo.wav"), ("fifo.wav", "is not a regular file (a pipe, socket or device)", "Save the stream")),
    Case("device", ("extract", "/dev/null", "--store", "{st}", "--model", "{model}", *FAST),
         ("/dev/null", "is not a regular file", "Save the stream to a file first")),
    Case("missing", X("missing.wav"), ("missing.wav", "does not exist", "check the path")),
    Case("unicode-spaces", X("clip é ü.wav"), ("created", "clip é ü.wav"), code=0),
    Case("symlink", X("link.wav"), ("created",), code=0),
    Case("dangling-symlink", X("dangling.wav"), ("dangling.wav", "does not exist", "check the path")),
    # ---------------------------------------------------------------- extract numbers
    Case("tr-0", XA("--tr", "0"), ("tr_s", "got 0.0", "positive number of seconds")),
    Case("tr-negative", XA("--tr", "-1.5"), ("got -1.5", "positive number of seconds")),
    Case("tr-nan", XA("--tr", "nan"), ("got nan", "positive number of seconds")),
    Case("tr-inf", XA("--tr", "inf"), ("got inf", "positive number of seconds")),
    Case("tr-huge", XA("--tr", "1e9"), ("tr_s=1000000000.0", "Give the TR in seconds")),
    Case("tr-text", XA("--tr", "abc"), ("--tr", "invalid float value: 'abc'")),
    Case("tr-tiny", XA("--tr", "1e-9"), ("tr_s=1e-09", "Give tr_s >=")),
    Case("bandwidth-0", XA("--bandwidth", "0"), ("bandwidth_kbps", "got 0.0", "must be positive")),
    Case("bandwidth-negative", XA("--bandwidth", "-6"), ("got -6.0", "must be positive")),
    Case("bandwidth-nan", XA("--bandwidth", "nan"), ("got nan", "finite number")),
    Case("bandwidth-unoffered", XA("--bandwidth", "5"), ("bandwidth 5 kbps", "choose one of 1.5, 3, 6, 12, 24")),
    Case("bandwidth-huge", XA("--bandwidth", "1e308"), ("1e+308", "choose one of")),
    Case("bandwidth-text", XA("--bandwidth", "six"), ("--bandwidth", "invalid float value: 'six'")),
    Case("n-trs-0", XA("--n-trs", "0"), ("n_trs=0", "give a positive n_trs")),
    Case("n-trs-negative", XA("--n-trs", "-3"), ("got -3", "positive integer")),
    Case("n-trs-huge", XA("--n-trs", "1000000000"), ("n_trs=1000000000", "the scan's real TR count")),
    Case("n-trs-float", XA("--n-trs", "1.5"), ("--n-trs", "invalid int value: '1.5'")),
    Case("onset-nan", XA("--onset", "nan"), ("onset_s", "got nan", "finite number")),
    Case("onset-inf", XA("--onset", "inf"), ("got inf", "finite number")),
    Case("onset-huge-negative", XA("--onset=-1e12"), ("clip.wav", "GiB", "raise GIBLET_STORE_MAX_ENTRY_BYTES")),
    Case("chunk-0", XA("--chunk-seconds", "0"), ("chunk_s", "got 0.0", "positive seconds")),
    Case("chunk-negative", XA("--chunk-seconds", "-1"), ("got -1.0", "positive seconds")),
    Case("chunk-nan", XA("--chunk-seconds", "nan"), ("chunk_s", "got nan", "finite number")),
    Case("context-negative", XA("--context-seconds", "-1"), ("context_s", "got -1.0", ">= 0 seconds")),
    Case("context-inf", XA("--context-seconds", "inf"), ("context_s", "got inf", "finite number")),
    # ---------------------------------------------------------------- models
    Case("model-missing", X("clip.wav", "--model", "{tmp}/no_model"), ("no_model", "does not exist", "save_pretrained")),
    Case("model-is-file", X("clip.wav", "--model", "{in}/clip.wav"), ("is a file", "give the directory")),
    Case("model-no-config", X("clip.wav", "--model", "{in}/models/empty"), ("has no config.json", "save_pretrained")),
    Case("model-corrupt-safetensors", X("clip.wav", "--model", "{in}/models/corrupt"),
         ("could not load EnCodec model", "corrupt", "save_pretrained")),
    Case("model-pickle-only", X("clip.wav", "--model", "{in}/models/pickle"),
         ("only pickle weights (pytorch_model.bin)", "safetensors", "save_pretrained(dir, safe_serialization=True)")),
    Case("model-not-encodec", X("clip.wav", "--model", "{in}/models/bert"), ("holds a 'bert' model", "not an EnCodec")),
    Case("device-unknown", XA("--device", "bogus", "--bandwidth", "3"), ("device 'bogus'", "Expected one of cpu")),
    # ---------------------------------------------------------------- stores
    Case("store-is-file", ("extract", "{in}/clip.wav", "--store", "{in}/clip.wav", "--model", "{model}", *FAST),
         ("clip.wav", "regular file", "give a directory path")),
    Case("store-foreign-zarr", ("extract", "{in}/clip.wav", "--store", "{in}/foreign_zarr", "--model", "{model}", *FAST),
         ("foreign_zarr", "not a giblet store", "give a new or empty directory")),
    Case("store-foreign-dir", ("ls", "{in}/models"), ("models", "not a giblet store", "give a new or empty directory")),
    Case("store-missing", ("ls", "{tmp}/nostore"), ("nostore", "no giblet store", "create one")),
    Case("store-newer-version", ("ls", "{st}"), ("format_version 999", "Upgrade giblet_store"),
         prep=lambda st: _root_version(st, 999)),
    Case("ls-kind-traversal", ("ls", "{st}", "--kind", "../../other_store/codes"),
         ("'../../other_store/codes' is not a kind", "choose one of codes")),
    Case("ls-kind-unknown", ("ls", "{st}", "--kind", "video"), ("'video' is not a kind", "choose one of")),
    Case("ls-where-malformed", ("ls", "{st}", "--where", "x"), ("got 'x'", "NAME=VALUE")),
    Case("show-key-traversal", ("show", "{st}", "../x"), ("'../x' is not a key", "lists the keys")),
    Case("show-key-unknown", ("show", "{st}", "ffff"), ("'ffff'", "lists the keys")),
    Case("show-key-empty", ("show", "{st}", ""), ("'' is not a key", "lists the keys")),
    Case("decode-missing-folder", ("decode", "{st}", "{k12}", "-o", "{tmp}/nope/out.wav"),
         ("nope/out.wav", "does not exist; create it first")),
    Case("decode-unwritable-folder", ("decode", "{st}", "{k12}", "-o", "/proc/giblet-out.wav", "--model", "{model}"),
         ("cannot write output wav '/proc/giblet-out.wav'", "choose")),
    Case("decode-to-directory", ("decode", "{st}", "{k12}", "-o", "{tmp}"), ("is a directory", "give a file name")),
    Case("decode-trs-reversed", ("decode", "{st}", "{k12}", "-o", "{tmp}/o.wav", "--trs", "5:2"),
         ("TR range 5:2", "give 0 <= START < STOP")),
    Case("decode-trs-text", ("decode", "{st}", "{k12}", "-o", "{tmp}/o.wav", "--trs", "a:b"), ("'a:b'", "START:STOP")),
    Case("verify-store-is-file", ("verify", "{in}/clip.wav"), ("clip.wav", "regular file")),
    # ---------------------------------------------------------------- hand-edited entries
    Case("entry-format-999-show", ("show", "{st}", "{k12}"), ("format_version 999", "Upgrade giblet_store"),
         prep=lambda st: _edit_attrs(st, format_version=999)),
    Case("entry-format-999-extract", XA(), ("format_version 999", "Upgrade giblet_store"),
         prep=lambda st: _edit_attrs(st, format_version=999)),
    Case("entry-unknown-kind", ("show", "{st}", "{k12}"), ("'bogus'", "entry.schema.json", "--repair"),
         prep=lambda st: _edit_attrs(st, kind="bogus")),
    Case("entry-wrong-dtype", ("show", "{st}", "{k12}"), ("codes.schema.json", "variables/codes/dtype: 'int16' was expected", "--repair"),
         prep=lambda st: _edit_array(st, "codes", lambda m: m.update(data_type="int32"))),
    Case("entry-missing-chunk", ("verify", "{st}"), ("chunk file(s) are missing", "--repair"),
         prep=lambda st: (_entry(st) / "codes" / "c" / "0" / "0" / "0").unlink()),
    Case("entry-pickle-codec", ("show", "{st}", "{k12}"), ("'numcodecs.pickle'", "refusing to read it", "--repair"),
         prep=lambda st: _edit_array(st, "codes", lambda m: m["codecs"].append({"name": "numcodecs.pickle"}))),
    Case("entry-unknown-codec", ("show", "{st}", "{k12}"), ("'rot13'", "never writes"),
         prep=lambda st: _edit_array(st, "codes", lambda m: m["codecs"].insert(1, {"name": "rot13"}))),
    Case("entry-invalid-json", ("verify", "{st}"), ("not valid JSON", "--repair"),
         prep=lambda st: (_entry(st) / "zarr.json").write_text("{nope")),
    Case("entry-status-writing", ("show", "{st}", "{k12}"), ("no complete entry", "lists the keys"),
         prep=lambda st: _edit_attrs(st, status="writing")),
    Case("entry-no-key", ("verify", "{st}"), ("no valid 'key'", "--repair"), prep=lambda st: _edit_attrs(st, key=None)),
    Case("entry-damaged-chunk-verify", ("verify", "{st}"), ("codes/c/0/0/0", "cannot be decoded", "--repair"),
         prep=_truncate_chunk),
    Case("entry-damaged-chunk-decode", ("decode", "{st}", "{k12}", "-o", "{tmp}/o.wav", "--model", "{model}"),
         ("chunk file is damaged", "giblet-store verify", "--repair"), prep=_truncate_chunk),
    Case("entry-symlinked-verify", ("verify", "{st}"), ("BROKEN  codes/", "chunk file(s) are missing", "--repair"),
         prep=_symlinked_entry_missing_chunk),
    Case("entry-in-wrong-kind-folder", ("verify", "{st}"), ("does not match its folder 'mel'", "--repair"),
         prep=_move_to_mel),
    # ---------------------------------------------------------------- derive
    Case("derive-hrf-unknown", ("derive", "{st}", "{k12}", "--hrf", "bogus"), ("'bogus'", "choose one of glover, spm")),
    Case("derive-resample-0", ("derive", "{st}", "{k12}", "--resample-tr", "0"), ("got 0.0", "positive number")),
    Case("derive-resample-nan", ("derive", "{st}", "{k12}", "--resample-tr", "nan"), ("got nan", "positive number")),
    Case("derive-resample-negative", ("derive", "{st}", "{k12}", "--resample-tr", "-2"), ("got -2.0", "positive")),
    Case("derive-resample-tiny", ("derive", "{st}", "{k12}", "--resample-tr", "1e-7"),
         ("would have 30000000 TRs", "1000000 TRs limit", "give a coarser target TR")),
    Case("derive-stretch-huge", ("derive", "{st}", "{k12}", "--stretch", "1000000000"),
         ("would have 1000000000 TRs", "fewer TRs (--stretch)")),
    Case("derive-stretch-0", ("derive", "{st}", "{k12}", "--stretch", "0"), ("n_trs must be a positive integer, got 0", "method='stretch' needs n_trs")),
    Case("derive-fir-text", ("derive", "{st}", "{k12}", "--hrf", "fir:a"), ("'fir:a'", "whole-TR delays, e.g. fir:1,2")),
    Case("derive-key-traversal", ("derive", "{st}", "../../x", "--embeddings"), ("'../../x' is not a key",)),
    # ---------------------------------------------------------------- fmri
    Case("fmri-not-nifti", ("ingest-fmri", "{st}", "{in}/clip.wav", "--subject", "s1"),
         ("clip.wav", "not a readable NIfTI", "give a 4D NIfTI")),
    Case("fmri-missing", ("ingest-fmri", "{st}", "{in}/nope.nii", "--subject", "s1"), ("nope.nii", "does not exist")),
    Case("fmri-3d", ("ingest-fmri", "{st}", "{in}/vol.nii", "--subject", "s1"), ("vol.nii is 3D", "Give the 4D file")),
    Case("fmri-tr-0", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--tr", "0"), ("got 0.0", "positive")),
    Case("fmri-tr-nan", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--tr", "nan"), ("got nan",)),
    Case("fmri-tr-ms", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--tr", "2000"),
         ("2000", "milliseconds")),
    Case("fmri-subjects-mismatch", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "s2"),
         ("1 NIfTI file(s) but 2 subject ID(s)", "give one ID per file")),
    Case("fmri-zscore-reversed", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--zscore-trs", "5:2"),
         ("zscore_trs=(5, 2)", "give 0 <= start < stop")),
    Case("fmri-mask-missing", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--mask", "{in}/nomask.nii"),
         ("nomask.nii", "does not exist")),
    Case("fmri-nan-voxel", ("ingest-fmri", "{st}", "{in}/nan.nii", "--subject", "s1"),
         ("NaN/inf", "--nan-policy mask")),
    Case("fmri-stimulus-traversal", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--stimulus", "../x"),
         ("'../x' is not a key",)),
    # issue 20 item 15: one subject twice without --run
    Case("fmri-subject-twice-no-run", ("ingest-fmri", "{st}", "{in}/bold.nii", "{in}/bold.nii", "--subject", "s1", "s1"),
         ("subject IDs must be distinct", "'s1' more than once", "add --run", "--subject s1 s1 --run 1 2")),
    # issue 19: BIDS studies (ingest-fmri --bids)
    Case("bids-not-bids", B("--bids", "{in}/models"), ("models is not a BIDS dataset", "dataset_description.json")),
    Case("bids-task-unknown", B("--task", "rest"), ("no BOLD file of task 'rest'", "the tasks there are movie")),
    Case("bids-subject-unknown", B("--subjects", "07"), ("subject '07'", "the subjects there are 01, 02")),
    Case("bids-run-missing", B("--bids", "{in}/bids_norun"),
         ("subject '02' has no BOLD for run '2'", "(it has runs 1)", "--runs")),
    Case("bids-tr-disagree", ("ingest-fmri", "{st}", "--bids", "{in}/bids_tr", "--task", "movie"),
         ("task-movie_bold.json gives RepetitionTime 2.5 s", "sub-01_task-movie_run-1_bold.nii.gz says 2 s",
          "fix the sidecar or the header")),
    Case("bids-confounds-rows", B("--bids", "{in}/bids_rows", "--confounds", "csf"),
         ("sub-01_task-movie_run-1_desc-confounds_timeseries.tsv has 37 rows", "has 40 volumes")),
    Case("bids-confound-unknown", B("--confounds", "motion", "bogus"),
         ("unknown confound 'bogus'", "desc-confounds_timeseries.tsv", "fix --confounds")),
    Case("bids-strategy-refused", B("--confounds", "compcor"),
         ("load_confounds refused strategy ['compcor']", "high_pass", "fix --confounds")),
    Case("bids-events-no-stimulus", B("--bids", "{in}/bids_events", "--event", "movie.wav"),
         ("sub-01_task-movie_run-1_events.tsv", "no row whose stim_file names the stimulus 'movie.wav'",
          "it names trailer.wav", "--event NAME")),
    Case("bids-no-task", ("ingest-fmri", "{st}", "--bids", "{in}/bids"), ("--bids needs --task",)),
    Case("bids-and-nifti", ("ingest-fmri", "{st}", "{in}/bold.nii", "--bids", "{in}/bids", "--task", "movie"),
         ("leave out NIfTI files",)),
    Case("bids-option-without-bids", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--confounds", "csf"),
         ("--confounds is an option of a BIDS ingest", "--bids DIR --task TASK")),
    Case("bids-space-unknown", B("--space", "T1w"), ("no desc-preproc_bold of task 'movie' in space 'T1w'",
                                                      "MNI152NLin2009cAsym")),
    Case("bids-no-derivatives", ("ingest-fmri", "{st}", "--bids", "{in}/bids", "--task", "movie", "--derivatives",
                                 "nope"), ("no derivatives/nope/ folder", "run fMRIPrep first")),
    Case("bids-filter-nyquist", B("--high-pass", "0.3"), ("high_pass_hz=0.3 Hz", "Nyquist frequency 0.25 Hz")),
    # issue 19: surfaces (func.gii pairs the row's prep writes beside the store copy; the good BIDS study's fsaverage6)
    Case("surface-vertex-count", G("L.func.gii", "R4.func.gii"),
         ("L.func.gii has 9 vertices but R4.func.gii has 4", "same space"), prep=_with_surfaces),
    Case("surface-hemisphere-missing", G("L.func.gii", "R.func.gii", "L.func.gii", "--subject", "s1", "s1"),
         ("3 func.gii file(s)", "one hemisphere is missing"), prep=_with_surfaces),
    Case("surface-spaces-differ", G("L6_hemi-L_space-fsaverage6_bold.func.gii",
                                    "R5_hemi-R_space-fsaverage5_bold.func.gii"),
         ("in space 'fsaverage6' but", "'fsaverage5'", "of one space"), prep=_with_surfaces),
    Case("surface-no-darrays", G("empty_hemi-L_space-fsaverage6_bold.func.gii", "R.func.gii"),
         ("holds no data arrays", "one array per volume"), prep=_with_surfaces),
    Case("surface-bids-mask", B("--space", "fsaverage6", "--mask", "{in}/bold.nii"),
         ("space 'fsaverage6' is a surface", "leave the mask out")),
    Case("surface-bids-space-unknown", B("--space", "fsaverage5"), ("in space 'fsaverage5'", "surfaces: fsaverage6")),
    Case("to-gifti-codes-entry", ("to-gifti", "{st}", "{k12}", "-o", "{tmp}/x"), ("'codes' entry", "GIFTI export")),
    Case("to-gifti-missing-folder", ("to-gifti", "{st}", "{k12}", "-o", "{tmp}/no/x"), ("does not exist", "mkdir")),
    # issue 19 (continued): parcels (derive --parcellate) of an fmri entry the row's prep ingests ({fk12})
    Case("parcels-atlas-grid", ("derive", "{st}", "{fk12}", "--parcellate", "{tmp}/atlas_1mm.nii"),
         ("atlas_1mm.nii is on another grid than fmri entry", "shape (12, 9, 9) vs the data's (4, 3, 3)",
          "--resample-atlas"), prep=_with_fmri_and_atlases),
    Case("parcels-atlas-missing", ("derive", "{st}", "{fk12}", "--parcellate", "{tmp}/nope.nii"),
         ("atlas", "nope.nii' is not a file", "label image"), prep=_with_fmri_and_atlases),
    Case("parcels-atlas-not-nifti", ("derive", "{st}", "{fk12}", "--parcellate", "{tmp}/atlas.txt"),
         ("atlas.txt could not be read as a NIfTI label image", ".nii.gz"), prep=_with_fmri_and_atlases),
    Case("parcels-atlas-fractional", ("derive", "{st}", "{fk12}", "--parcellate", "{tmp}/atlas_frac.nii"),
         ("atlas_frac.nii holds non-integer values", "whole numbers"), prep=_with_fmri_and_atlases),
    Case("parcels-atlas-background", ("derive", "{st}", "{fk12}", "--parcellate", "{tmp}/atlas_zero.nii"),
         ("labels none of the 36 voxels", "background, 0"), prep=_with_fmri_and_atlases),
    Case("parcels-of-codes", ("derive", "{st}", "{k12}", "--parcellate", "{tmp}/atlas.nii"),
         ("Parcellate averages the voxels of an fmri entry", "is a 'codes' entry"), prep=_with_fmri_and_atlases),
    Case("parcels-resample-alone", ("derive", "{st}", "{k12}", "--hrf", "spm", "--resample-atlas"),
         ("--resample-atlas is an option of --parcellate ATLAS",)),
    # ---------------------------------------------------------------- batch, evaluate, to-nifti
    Case("batch-manifest-missing", ("batch", "{in}/nope.yaml", "--store", "{st}"), ("nope.yaml", "does not exist")),
    Case("batch-manifest-format", ("batch", "{in}/clip.wav", "--store", "{st}"), ("'.wav'", "give a .csv, .yaml")),
    Case("batch-every-problem", ("batch", "{in}/bad.json", "--store", "{st}"),
         ("2 problem(s)", "unknown top-level key 'bandwith'", "missing.wav", "does not exist")),
    Case("batch-unoffered-bandwidth-new-store", ("batch", "{in}/bw5.yaml", "--store", "{tmp}/new"),
         ("bandwidth 5 kbps is not offered", "choose one of 1.5, 3, 6, 12, 24", "nothing was run")),
    Case("batch-fifo-stimulus", ("batch", "{in}/fifo.yaml", "--store", "{st}"),
         ("fifo.wav", "is not a regular file (a pipe, socket or device)")),
    Case("batch-empty", ("batch", "{in}/empty.yaml", "--store", "{st}"), ("'stimuli' must be a non-empty list",)),
    Case("batch-workers-0", ("batch", "{in}/bad.json", "--store", "{st}", "--workers", "0"), ("--workers", "got 0")),
    Case("batch-workers-huge", ("batch", "{in}/good.yaml", "--store", "{tmp}/new", "--workers", "100000"),
         ("workers=100000 is more than a local cluster can hold", "at most 4 per CPU core", "Give fewer --workers")),
    Case("evaluate-codes-entry", ("evaluate", "{st}", "{k12}"), ("'codes' entry", "takes a predictions entry")),
    Case("to-nifti-missing-folder", ("to-nifti", "{st}", "{k12}", "-o", "{tmp}/no/x.nii"),
         ("no/x.nii", "does not exist; create it first")),
    Case("to-nifti-codes-entry", ("to-nifti", "{st}", "{k12}", "-o", "{tmp}/x.nii"), ("'codes' entry", "fmri")),
    # ---------------------------------------------------------------- mel, quality, export, import, gc
    Case("mel-not-audio", ("mel", "{in}/text.wav", "--store", "{st}"), ("text.wav", "not an audio file", "Re-export")),
    Case("mel-n-mels-0", ("mel", "{in}/clip.wav", "--store", "{st}", "--n-mels", "0"),
         ("n_mels must be a positive integer, got 0",)),
    Case("quality-missing", ("quality", "{in}/clip.wav", "{in}/nope.wav"), ("nope.wav", "does not exist", "check the path")),
    Case("export-missing-folder", ("export", "{st}", "{k12}", "--format", "npy", "-o", "{tmp}/no/x.npy"),
         ("no/x.npy", "does not exist; create it first")),
    Case("import-unknown-format", ("import", "{in}/text.wav", "--store", "{st}"),
         ("cannot tell the format of", "text.wav", "give --format acomp|ecdc|npy")),
    Case("gc-older-than-text", ("gc", "{st}", "--older-than", "abc"), ("got 'abc'", "like 90s, 30m, 1h or 2d")),
    # ---------------------------------------------------------------- issue 21 #3 #6 #10 #11 #12: what is read is what is stored
    Case("chained-ogg", X("chained.ogg"), ("chained.ogg", "is a chained Ogg file: 2 streams", "as one stream")),
    Case("chained-ogg-two-rates", X("chained2.ogg"), ("chained2.ogg", "is a chained Ogg file", "as one stream")),
    Case("latin1-file-name", X("caf\udce9.wav"), ("created", "caf\\xe9.wav"), code=0),
    Case("store-url-credentials-ls", ("ls", "s3://KEY:SECRET@bucket/st"),
         ("'s3://***@bucket/st'", "carries credentials", "AWS_ACCESS_KEY_ID")),
    Case("store-url-credentials-extract", ("extract", "{in}/clip.wav", "--store", "s3://KEY:SECRET@bucket/st",
                                           "--model", "{model}", *FAST), ("'s3://***@bucket/st'", "carries credentials")),
    Case("entry-json-array-extract", XA(), ("created", "moved broken entry codes/", "_quarantine/"), code=0,
         prep=_zarr_json("[]")),
    Case("entry-json-array-verify", ("verify", "{st}"), ("BROKEN  codes/", "does not describe a Zarr group", "--repair"),
         prep=_zarr_json("[]")),
    Case("entry-json-array-gc-dry-run", ("gc", "{st}", "--dry-run"), (), code=0, prep=_zarr_json("[]")),
    Case("entry-attributes-list-verify", ("verify", "{st}"), ("BROKEN  codes/", "has no attributes", "--repair"),
         prep=_attributes_list),
    Case("entry-attributes-list-extract", XA(), ("created", "moved broken entry codes/"), code=0,
         prep=_attributes_list),
    Case("api-stimulus-rewritten-during-extract", api=_api_rewritten_during_extract,
         must=("stim.wav", "changed while it was being read", "nothing was stored")),
    # ---------------------------------------------------------------- issue 21: bombs, non-finite, hangs, unclean
    Case("batch-yaml-billion-laughs", ("batch", "{in}/i21/laughs.yaml", "--store", "{st}"),
         ("laughs.yaml", "expands to more than 1,000,000 values", "write the values out")),
    Case("batch-manifest-nul", ("batch", "{in}/i21/nul.yaml", "--store", "{st}"), ("nul.yaml", "NUL bytes")),
    Case("batch-manifest-latin1", ("batch", "{in}/i21/latin.csv", "--store", "{st}"),
         ("latin.csv", "not UTF-8 text", "save it as UTF-8")),
    Case("batch-manifest-huge-cell", ("batch", "{in}/i21/cell.csv", "--store", "{st}"),
         ("cell.csv", "longer than 131,072 characters")),
    Case("batch-manifest-loop", ("batch", "{in}/i21/loop1.yaml", "--store", "{st}"), ("loop1.yaml", "symlink loop")),
    Case("batch-n-trs-beyond-int64", ("batch", "{in}/i21/ntrs.yaml", "--store", "{st}"),
         ("n_trs=1e+23", "the scan's real TR count")),
    Case("batch-many-unknown-columns", ("batch", "{in}/i21/cols.csv", "--store", "{st}"),
         ("unknown column 'col0'", "and 195 more unknown columns")),
    Case("fmri-trunc-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/trunc.nii", "--subject", "s1"), ("trunc.nii", "file is truncated or its dim[4] is wrong", "Re-export")),
    Case("fmri-trunc-nii-gz", ("ingest-fmri", "{st}", "{in}/i21/nii/trunc.nii.gz", "--subject", "s1"), ("trunc.nii.gz", "truncated or damaged", "Re-export")),
    Case("fmri-morevols-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/morevols.nii", "--subject", "s1"), ("morevols.nii", "says 20 volume(s)", "8 complete volume(s)")),
    Case("fmri-voxoff-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/voxoff.nii", "--subject", "s1"), ("voxoff.nii", "vox_offset is 3,000,000,000 bytes", "repair its header")),
    Case("fmri-voxoff-nii-gz", ("ingest-fmri", "{st}", "{in}/i21/nii/voxoff.nii.gz", "--subject", "s1"), ("voxoff.nii.gz", "more than any gzip stream of that size holds")),
    Case("fmri-rgb-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/rgb.nii", "--subject", "s1"), ("rgb.nii", "RGB colour", "Convert it to a float or integer")),
    Case("fmri-complex-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/complex.nii", "--subject", "s1"), ("complex.nii", "complex values", "magnitude")),
    Case("fmri-zerovols-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/zerovols.nii", "--subject", "s1"), ("zerovols.nii", "holds no volumes", "dim[4] >= 1")),
    Case("fmri-slope-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/slope.nii", "--subject", "s1"), ("slope.nii", "scl_slope=1e+38", "set_slope_inter")),
    Case("fmri-msec-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/msec.nii", "--subject", "s1"), ("msec.nii", "1.5 msec = 0.0015 s", "--tr 1.5")),
    Case("fmri-usec-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/usec.nii", "--subject", "s1"), ("usec.nii", "1e-06 sec = 1e-06 s", "--tr 1.5")),
    Case("fmri-bigtr-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/bigtr.nii", "--subject", "s1"), ("bigtr.nii", "1e+06 sec = 1000 s", "--tr 1.5")),
    Case("fmri-nanaff-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/nanaff.nii", "--subject", "s1"), ("nanaff.nii", "holds NaN or infinite", "set_sform")),
    Case("fmri-singular-nii", ("ingest-fmri", "{st}", "{in}/i21/nii/singular.nii", "--subject", "s1"), ("singular.nii", "is singular", "set_sform")),
    Case("fmri-tr-microseconds", ("ingest-fmri", "{st}", "{in}/bold.nii", "--subject", "s1", "--tr", "0.0015"),
         ("tr_s=0.0015 s is shorter than 0.05 s", "Give the TR in seconds")),
    Case("import-n-trs-2m", ("import", "{in}/i21/good.ecdc", "--store", "{st}", "--model", "{model}", "--n-trs", "2000000"),
         ("good.ecdc", "n_trs=2000000 is far beyond the stimulus", "Give the scan's real TR count")),
    Case("import-n-trs-1e9", ("import", "{in}/i21/good.ecdc", "--store", "{st}", "--model", "{model}", "--n-trs",
                              "1000000000"), ("good.ecdc", "n_trs=1000000000 is far beyond the stimulus")),
    Case("import-tr-tiny", ("import", "{in}/i21/good.ecdc", "--store", "{st}", "--model", "{model}", "--tr", "1e-9"),
         ("good.ecdc", "a TR must hold at least one frame", "Give tr_s >=")),
    Case("import-onset-huge", ("import", "{in}/i21/good.ecdc", "--store", "{st}", "--model", "{model}",
                               "--onset=-1e12"), ("good.ecdc", "GiB", "raise GIBLET_STORE_MAX_ENTRY_BYTES")),
    Case("import-ecdc-length-infinity", ("import", "{in}/i21/inf.ecdc", "--store", "{st}", "--model", "{model}"),
         ("inf.ecdc", "damaged .ecdc header", "re-export it")),
    Case("import-ecdc-deep-json", ("import", "{in}/i21/deep.ecdc", "--store", "{st}", "--model", "{model}"),
         ("deep.ecdc", "nested too deeply", "re-export it")),
    Case("import-acomp-beyond-int64", ("import", "{in}/i21/int64.acomp", "--store", "{st}", "--model", "{model}"),
         ("int64.acomp", "is beyond int64")),
    Case("import-npy-shape-1e12", ("import", "{in}/i21/huge.npy", "--store", "{st}", "--model", "{model}"),
         ("huge.npy", "(2, 1000000000000)", "Save the (codebook, frame) stream again")),
    Case("mel-stft-bomb", ("mel", "{in}/clip.wav", "--store", "{st}", "--n-fft", "65536", "--hop", "1"),
         ("clip.wav", "x 32769 bins x 24 bytes", "working-memory limit", "give a larger hop")),
    Case("batch-connect-timeout-nan", ("batch", "{in}/good.yaml", "--store", "{st}", "--scheduler", "tcp://127.0.0.1:9",
                                       "--connect-timeout", "nan"),
         ("connect_timeout must be a positive number of seconds, got nan",)),
    Case("ls-fifo-zarr-json", ("ls", "{st}"), ("codes", "KEY"), code=0, prep=_fifo_document),
    Case("verify-fifo-chunk", ("verify", "{st}"), ("not regular files", "codes/c/0/0/0 (a FIFO", "--repair"),
         prep=_fifo_chunk),
    Case("model-fifo-safetensors", X("clip.wav", "--model", "{in}/i21/models/fifo_weights"),
         ("model.safetensors is not a regular file", "save_pretrained")),
    Case("model-fifo-config", X("clip.wav", "--model", "{in}/i21/models/fifo_config"),
         ("config.json is not a regular file", "save_pretrained")),
    Case("model-deep-config", X("clip.wav", "--model", "{in}/i21/models/deep_config"),
         ("nested too deeply to be a model config",)),
    Case("ls-newline-rtl-name", ("ls", "{st}"), ("evil\\nKEY  fake\\u202egnp.wav",), code=0,
         prep=lambda st: _edit_attrs(st, source_name="evil\nKEY  fake\u202egnp.wav")),
    Case("one-hz-wav", X("i21/onehz.wav"), ("onehz.wav", "declares 1 Hz (2 samples = 2 s)", "real sample rate")),
    Case("reindex-cannot-write", ("reindex", "{st}"), ("could not write the catalogue", "then rerun reindex"),
         prep=_index_in_the_way),
    Case("store-invalid-bucket", ("ls", "s3://Invalid_Bucket!/st"), ("'Invalid_Bucket!' is not a valid S3 bucket name",
                                                                      "Give the bucket's real name")),
    Case("store-path-over-4096", ("mel", "{in}/clip.wav", "--store", "{tmp}/" + "a/" * 2100),
         ("bytes long; paths on this system are shorter than 4096 bytes", "Give a shorter path")),
    Case("flac-header-795-hours", X("i21/long.flac"), ("long.flac", "declares 68688000000 samples at 24000 Hz (795 h)",
                                                        "Re-export or re-download it")),
    # issue 21: disk full / ulimit -f (real processes under a file-size limit: tests/cli/test_disk_full_processes.py)
    Case("api-ingest-disk-full", api=_api_disk_full("fmri"),
         must=("no space left on device while writing _staging/", "/fmri/c/0/0/0 (entry fmri/", "nothing was stored",
               "Free some space")),
    Case("api-extract-disk-full", api=_api_disk_full("codes"),
         must=("no space left on device while writing _staging/", "/codes/c/0/0/0 (entry codes/",
               "nothing was stored")),
    # issue 21: a buffer sized from a header's claim (load_audio)
    Case("mp3-xing-claims-14300-hours", ("extract", "{tmp}/claim.mp3", "--store", "{st}", "--model", "{model}", *FAST),
         ("claim.mp3", "its MP3 header declares 1236950579", "(1.43e+04 h)", "-byte file holds at most",
          "Re-export or re-download it"), prep=lambda st: write_claiming_mp3(st.parent / "claim.mp3")),
    Case("rf64-ds64-claims-795-hours", ("extract", "{tmp}/claim.wav", "--store", "{st}", "--model", "{model}", *FAST),
         ("claim.wav' is truncated: its WAV header declares 68688000000 samples", "holds 1000"),
         prep=lambda st: write_claiming_rf64(st.parent / "claim.wav")),


    # ---------------------------------------------------------------- issue 20
    Case("quality-last-tr-10ms", ("quality", "{in}/clip.wav", "{in}/clip.wav", "--tr", "0.995", "--metrics", "stoi"),
         ("NaN stoi, estoi in TR 2", "too short for STOI", "240 samples (10.0 ms)"), code=0),
    Case("ingest-fmri-bad-stimulus-new-store",
         ("ingest-fmri", "{tmp}/st2", "{in}/bold.nii", "--subject", "s1", "--stimulus", "ffff"),
         ("'ffff'", "lists the keys")),
    Case("quality-file-outside-the-trs", ("quality", "{k12}", "{in}/short.wav", "--store", "{st}", "--deg-start", "0.5",
                                          "--model", "{model}", "--metrics", "snr"),
         ("short.wav covers stimulus time 0.5 to 1 s (it starts at 0.5 s: --deg-start)", "scoring TRs 0:2 of entry",
          "Give a TR range (--trs) the file covers")),
    Case("ls-where-typo", ("ls", "{st}", "--where", "bandwith_kbps=1.5"),
         ("no entry has an attribute 'bandwith_kbps'", "did you mean 'bandwidth_kbps'", "attributes are:")),
    Case("ls-where-text-for-number", ("ls", "{st}", "--kind", "codes", "--where", "tr_s=fast"),
         ("tr_s is a number in every codes entry", "got 'fast'", "Give a number")),
    Case("api-find-typo", api=_api("find_typo"), must=("no codes entry has an attribute 'bandwith_kbps'",
                                                       "did you mean 'bandwidth_kbps'")),
    Case("api-find-string-number", api=_api("find_str"), must=("found 1",), code=0),
    Case("show-into-closed-pipe", api=_show_into_closed_pipe, must=("exit 141, stderr ''",), code=0),
    # ---------------------------------------------------------------- Python API
    Case("api-open-mode", api=_api("mode"), must=("'x'", "mode must be 'a'")),
    Case("api-find-traversal", api=_api("find"), must=("'../../other/codes' is not a kind", "choose one of")),
    Case("api-get-traversal", api=_api("get"), must=("'../' is not a key",)),
    Case("api-lookup-short-key", api=_api("lookup"), must=("is not a key (64 hex digits)",)),
    Case("api-lookup-kind", api=_api("lookup_kind"), must=("'codes/..' is not a kind",)),
    Case("api-write-kind-traversal", api=_api_write_evil_kind, must=("'../evil' is not a kind", "choose one of")),
    Case("api-grid-nan", api=_api("grid_nan"), must=("tr_s must be a positive number of seconds, got nan",)),
    Case("api-grid-zero-trs", api=_api("grid_zero_trs"), must=("n_trs=0",)),
    Case("api-codec-string", api=_api("codec_str"), must=("got '6'", "finite number")),
    Case("api-extract-directory", api=_api("extract_dir"), must=("a dir.wav", "is a directory")),
    Case("api-manifest", api=_api("manifest"), must=("bandwith", "'stimuli' must be a non-empty list")),
    Case("api-verify-read-only", api=_api("verify_ro"), must=("read-only", "mode='a'")),
    Case("api-delete-traversal", api=_api("delete"), must=("'../codes' is not a key",)),
]


# ------------------------------------------------------------------------------------ fixtures
def _models(d: Path, model_dir: Path) -> None:
    (d / "empty").mkdir(parents=True)
    for name in ("corrupt", "pickle", "bert"):
        (d / name).mkdir()
        shutil.copy(model_dir / "config.json", d / name)
    (d / "corrupt" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    (d / "pickle" / "pytorch_model.bin").write_bytes(b"\x80\x04not a pickle")
    (d / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (d / "bert" / "model.safetensors").write_bytes(b"")


def _audio(d: Path) -> None:
    clip = write_wav(d / "clip.wav", synth_audio(2.0, 24000, seed=5), 24000)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "zero.wav", np.zeros((0, 1), np.float32), 24000)
    (d / "text.wav").write_text("hello, not audio")
    from giblet_store.audio.wavcheck import wav_data_chunk

    (d / "trunc.wav").write_bytes(clip.read_bytes()[: wav_data_chunk(clip)[0] + 2 * 24960])
    for name, bad in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = synth_audio(1.0, 24000, seed=1)
        x[..., 100] = bad
        sf.write(d / name, x.T, 24000, subtype="FLOAT")
    sf.write(d / "clip3.wav", 3.0 * synth_audio(1.0, 24000, seed=2).T, 24000, subtype="FLOAT")
    write_wav(d / "8k.wav", synth_audio(1.0, 8000, seed=3), 8000)
    write_wav(d / "six.wav", synth_audio(1.0, 24000, seed=4, channels=6), 24000)
    write_wav(d / "hop.wav", synth_audio(0.005, 24000, seed=6), 24000)
    write_wav(d / "short.wav", synth_audio(0.5, 24000, seed=7), 24000)
    (d / "a dir.wav").mkdir()
    shutil.copy(d / "short.wav", d / "clip é ü.wav")
    os.symlink(d / "short.wav", d / "link.wav")
    os.symlink(d / "gone.wav", d / "dangling.wav")
    os.mkfifo(d / "fifo.wav")  # opening it for reading would wait for a writer forever
    write_chained_ogg(d / "chained.ogg", [(1.0, 24000, 1), (1.0, 24000, 2)])  # `cat a.ogg b.ogg`
    write_chained_ogg(d / "chained2.ogg", [(1.0, 24000, 1), (1.0, 16000, 2)])
    Path(os.fsdecode(os.fsencode(d) + b"/caf\xe9.wav")).write_bytes((d / "short.wav").read_bytes())  # Latin-1 name
    (d / "fifo.yaml").write_text("stimuli: [fifo.wav]\n")


def _issue21(d: Path, model_dir: Path) -> None:
    """Inputs of issue 21's rows, under ``in/i21``."""
    d.mkdir()
    for name, odd in (("fifo_weights", "model.safetensors"), ("fifo_config", "config.json"), ("deep_config", "")):
        shutil.copytree(model_dir, d / "models" / name)
        if odd:
            (d / "models" / name / odd).unlink()
            os.mkfifo(d / "models" / name / odd)
    (d / "models" / "deep_config" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    laughs = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    (d / "laughs.yaml").write_text("\n".join(laughs) + "\nstimuli: [../clip.wav]\n")
    (d / "nul.yaml").write_bytes(b"stimuli: [a\x00.wav]\n")
    (d / "latin.csv").write_bytes(b"path\ncaf\xe9.wav\n")
    (d / "cell.csv").write_text("path\n" + "a" * 140_000 + ".wav\n")
    os.symlink(d / "loop2.yaml", d / "loop1.yaml")
    os.symlink(d / "loop1.yaml", d / "loop2.yaml")
    (d / "ntrs.yaml").write_text("stimuli: [{path: ../clip.wav, n_trs: 100000000000000000000000}]\n")
    (d / "cols.csv").write_text(",".join(["path"] + [f"col{i}" for i in range(200)]) + "\n../clip.wav\n")
    write_hostile_niftis(d / "nii")
    write_long_header_flac(d / "long.flac")
    sf.write(d / "onehz.wav", np.array([0.1, -0.1], np.float32), 1, subtype="FLOAT")
    meta = b'{"m": "encodec_24khz", "al": 3200, "nc": 2, "lm": false}'  # 10 frames x 2 codebooks x 10 bits
    (d / "good.ecdc").write_bytes(struct.pack("!4sBI", b"ECDC", 0, len(meta)) + meta + bytes(25))
    inf = meta.replace(b"3200", b"Infinity")
    (d / "inf.ecdc").write_bytes(struct.pack("!4sBI", b"ECDC", 0, len(inf)) + inf + bytes(25))
    (d / "deep.ecdc").write_bytes(struct.pack("!4sBI", b"ECDC", 0, 200_000) + b"[" * 100_000 + b"]" * 100_000)
    (d / "int64.acomp").write_text("1\n1.5\n1 99999999999999999999999\n")
    npy = b"{'descr': '<i2', 'fortran_order': False, 'shape': (2, 1000000000000), }"
    npy += b" " * (118 - len(npy)) + b"\n"
    (d / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy)) + npy + bytes(400))


def _fmri_and_manifests(d: Path) -> None:
    import nibabel as nib
    import zarr

    rng = np.random.default_rng(0)
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    data = 100 + rng.standard_normal((4, 3, 3, 8)).astype(np.float32)
    img = nib.Nifti1Image(data, aff)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
    nib.save(img, d / "bold.nii")
    nib.save(nib.Nifti1Image(data[..., 0], aff), d / "vol.nii")
    data[1, 1, 1, 3] = np.nan
    nib.save(nib.Nifti1Image(data, aff, img.header), d / "nan.nii")
    (d / "bad.json").write_text(json.dumps({"stimuli": ["missing.wav"], "bandwith": [6]}))
    (d / "empty.yaml").write_text("stimuli: []\n")
    zarr.open_group(str(d / "foreign_zarr"), mode="w", zarr_format=3)


def _bids(d: Path) -> None:
    """A good BIDS study and four damaged copies (issue 19)."""
    from giblet_store.testing import make_bids

    make_bids(d / "bids")
    for name in ("norun", "tr", "rows", "events"):
        shutil.copytree(d / "bids", d / f"bids_{name}")
    for p in (d / "bids_norun").rglob("sub-02_task-movie_run-2_*"):
        p.unlink()
    (d / "bids_tr" / "task-movie_bold.json").write_text(json.dumps({"RepetitionTime": 2.5}))
    tsv = d / "bids_rows/derivatives/fmriprep/sub-01/func/sub-01_task-movie_run-1_desc-confounds_timeseries.tsv"
    tsv.write_text("\n".join(tsv.read_text().splitlines()[:-3]) + "\n")
    for ev in (d / "bids_events").rglob("*_events.tsv"):
        ev.write_text(ev.read_text().replace("movie.wav", "trailer.wav"))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("hostile")
    inp = root / "in"
    inp.mkdir()
    _audio(inp)
    _models(inp / "models", model_dir)
    _fmri_and_manifests(inp)
    _bids(inp)
    _issue21(inp / "i21", model_dir)
    (inp / "good.yaml").write_text(f"model: {model_dir}\nstimuli: [clip.wav]\nbandwidths: [1.5]\ntrs: [1.5]\n")
    (inp / "bw5.yaml").write_text(f"model: {model_dir}\nstimuli: [clip.wav]\nbandwidths: [5]\ntrs: [1.5]\n")
    base = root / "base"
    assert main(["extract", str(inp / "clip.wav"), "--store", str(base), "--model", str(model_dir), *FAST]) == 0
    key = open_store(base).entries()[0].key
    return {"in": inp, "base": base, "key": key, "model": model_dir}


def _invoke(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case, ctx, tmp_path, capsys):
    st = tmp_path / "st"
    shutil.copytree(ctx["base"], st)
    if case.prep is not None:
        case.prep(st)
    before = snapshot(tmp_path)
    if case.api is not None:
        try:
            case.api(ctx, st)
            code, text = 0, ""
        except GibletStoreError as exc:
            code, text = 2, str(exc)
        text += "".join(capsys.readouterr())
    else:
        values = {"st": st, "key": ctx["key"], "k12": ctx["key"][:12], "model": ctx["model"], "in": ctx["in"],
                  "tmp": tmp_path}
        if any("{fk12}" in a for a in case.argv):  # rows whose prep ingested an fmri entry
            values["fk12"] = next(e.key[:12] for e in open_store(st, mode="r").entries() if e.kind == "fmri")
        argv = [a.format(**{k: str(v) for k, v in values.items()}) for a in case.argv]
        code, out, err = _invoke(argv, capsys)
        text = out + err
    assert code == case.code, text
    for s in case.must:
        assert s in text, f"{s!r} not in: {text}"
    assert "Traceback" not in text and "unexpected error" not in text and ".py:" not in text
    assert "KEY:SECRET" not in text and "SECRET@" not in text  # credentials in a URL are never echoed (issue 21 #10)
    if case.code != 0:
        assert snapshot(tmp_path) == before


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    commands = {c.argv[0] for c in CASES if c.argv}
    assert commands >= {"extract", "ls", "show", "decode", "derive", "ingest-fmri", "batch", "evaluate", "to-nifti",
                        "to-gifti", "verify", "mel", "quality", "export", "import", "gc"}
    assert sum(c.api is not None for c in CASES) >= 10


@pytest.mark.parametrize("order", ["folder first", "zarr.json first"])
def test_entry_helper_does_not_depend_on_directory_order(tmp_path, monkeypatch, order):
    kind = tmp_path / "codes"
    (kind / "0123abcd").mkdir(parents=True)
    (kind / "0123abcd" / "zarr.json").write_text("{}")
    (kind / "zarr.json").write_text("{}")
    listed = sorted(kind.iterdir(), key=lambda p: p.is_file() == (order == "folder first"))
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(listed) if self == kind else real_iterdir(self))
    assert [p.name for p in kind.iterdir()][0] == ("0123abcd" if order == "folder first" else "zarr.json")
    assert _entry(tmp_path) == kind / "0123abcd"
