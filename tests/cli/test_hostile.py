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

from helpers import snapshot

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


def _move_to_mel(st):
    e = _entry(st)
    (Path(st) / "mel").mkdir()
    os.rename(e, Path(st) / "mel" / e.name)


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
    (d / "fifo.yaml").write_text("stimuli: [fifo.wav]\n")


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


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("hostile")
    inp = root / "in"
    inp.mkdir()
    _audio(inp)
    _models(inp / "models", model_dir)
    _fmri_and_manifests(inp)
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
        argv = [a.format(**{k: str(v) for k, v in values.items()}) for a in case.argv]
        code, out, err = _invoke(argv, capsys)
        text = out + err
    assert code == case.code, text
    for s in case.must:
        assert s in text, f"{s!r} not in: {text}"
    assert "Traceback" not in text and "unexpected error" not in text and ".py:" not in text
    if case.code != 0:
        assert snapshot(tmp_path) == before


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    commands = {c.argv[0] for c in CASES if c.argv}
    assert commands >= {"extract", "ls", "show", "decode", "derive", "ingest-fmri", "batch", "evaluate", "to-nifti",
                        "verify", "mel", "quality", "export", "import", "gc"}
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
