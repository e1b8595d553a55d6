"""Helpers several test packages share (kept here, not imported from one test module by another)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from giblet_store import content_key

import s3_writer
from s3_fixture import TEST_KEY_ID, TEST_SECRET

TESTS = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------ store files
def snapshot(root) -> dict:
    """Every file under root with its bytes: 'store unchanged' means this is equal."""
    import stat

    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            mode = os.lstat(p).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):  # a FIFO would block the read: its type stands in
                out[os.path.relpath(p, root)] = f"<not a regular file: {stat.S_IFMT(mode):o}>"
                continue
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def write(store, i: int):
    ds, attrs, enc = s3_writer.entry()
    inputs = {"i": i}
    attrs = {**attrs, "key": content_key(inputs), "inputs": inputs, "tr_s": 0.5 if i % 2 else 1.5}
    return store.write(ds, attrs, enc)[0]


# ------------------------------------------------------------------------------ audio alignment
def best_lag(got: np.ndarray, ref: np.ndarray, max_lag: int = 240) -> int:
    """The shift (samples) that best aligns ``ref`` with ``got`` by cross-correlation (positive: ``got``
    is late), over the stretch both cover, ``max_lag`` samples in from either end."""
    n = min(len(got), len(ref)) - 2 * max_lag
    scores = [float(np.dot(got[max_lag + k : max_lag + k + n], ref[max_lag : max_lag + n]))
              for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


# ------------------------------------------------------------------------------ S3 (moto server)
def objects(url: str, under: str = "") -> dict[str, bytes]:
    """Every object under ``url/under`` and its bytes (paths relative to ``url``)."""
    import s3fs

    fs = s3fs.S3FileSystem(use_listings_cache=False)
    root = url.split("://", 1)[1].rstrip("/")
    base = f"{root}/{under}".rstrip("/")
    return {p[len(root) + 1:]: fs.cat_file(p) for p in sorted(fs.find(base))}


def assert_no_secret(*texts) -> None:
    for t in texts:
        t = t if isinstance(t, bytes) else str(t).encode()
        assert TEST_SECRET.encode() not in t and TEST_KEY_ID.encode() not in t


WRITER = TESTS / "s3_writer.py"


def writer(url: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRITER), url, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(TESTS.parent), os.environ.get("PYTHONPATH", "")])})


# ------------------------------------------------------------------------------ fMRI series
AFFINE = np.diag([3.0, 3.0, 4.0, 1.0])


def write_series(path, data, affine=AFFINE, tr=2.0, unit="sec", dtype=np.float32) -> Path:
    """A 4D NIfTI with ``pixdim[4] = tr`` in ``unit``."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_xyzt_units("mm", unit)
    z = img.header.get_zooms()
    img.header.set_zooms(tuple(z[:3]) + ((tr,) if len(z) > 3 else ()))
    nib.save(img, str(path))
    return Path(path)


def synth(shape=(6, 5, 4), n=16, seed=0, active=None, offset=100.0):
    """(x, y, z, tr) float: noise in ``active`` voxels (default all), constant elsewhere."""
    rng = np.random.default_rng(seed)
    x = offset + rng.standard_normal(shape + (n,))
    if active is not None:
        x[~active] = offset
    return x


def fmri_snapshot(store) -> tuple:
    root = Path(store.root)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    return tuple(e.key for e in store.entries()), tuple(files)


def stimulus_entry(store, tr_s=2.0, n_trs=20, source="a" * 64, onset_s=0.0, values=None):
    """A per-TR features entry standing in for a stimulus (schema-valid, written through store.write);
    ``loudness`` is ``values`` (tr,) when given, else a ramp."""
    loud = np.linspace(0, 1, n_trs, dtype=np.float32) if values is None else np.asarray(values, np.float32)
    n_trs = loud.size
    ds = xr.Dataset({"loudness": (("tr",), loud)},
                    coords={"tr": np.arange(n_trs), "tr_start_s": (("tr",), onset_s + tr_s * np.arange(n_trs))})
    inputs = {"test-stimulus": source, "tr_s": tr_s, "n_trs": n_trs, "onset_s": onset_s}
    attrs = {"kind": "features", "key": content_key(inputs), "parent": source, "parent_kind": "codes",
             "transform": "resample", "transform_params": {}, "variables": ["loudness"], "axis": "tr",
             "tr_s": tr_s, "onset_s": onset_s, "n_trs": n_trs, "hrf": "none", "algorithm_version": 1,
             "inputs": inputs, "source_sha256": source, "source_name": "movie.wav",
             "resample": {"method": "nearest", "tr_s": tr_s, "onset_s": onset_s, "n_trs": n_trs}}
    return store.write(ds, attrs)[0]


# ------------------------------------------------------------------------------ BIDS studies (issue 19)
def fmriprep_bold(root, sub: str, run: str, task: str = "movie", space: str = "MNI152NLin2009cAsym") -> Path:
    """The desc-preproc_bold path of (sub, run) in a make_bids study."""
    return (Path(root) / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
            / f"sub-{sub}_task-{task}_run-{run}_space-{space}_desc-preproc_bold.nii.gz")


def masked_series(entry_ds, path) -> np.ndarray:
    """(tr, voxel) float64 of a 4D NIfTI at an fmri entry's voxels (``voxel_ijk``)."""
    import nibabel as nib

    ijk = np.asarray(entry_ds["voxel_ijk"].values)
    data = np.asarray(nib.load(str(path)).get_fdata())
    return data[ijk[:, 0], ijk[:, 1], ijk[:, 2], :].T


def labels_masker_signals(st, fe, atlas_path, resample=False):
    """Per subject (tr, label) of nilearn's NiftiLabelsMasker on an fmri entry's voxels written as NIfTI
    (mean strategy, the entry's mask), and the label values: the reference for parcel entries."""
    import nibabel as nib
    from nilearn.maskers import NiftiLabelsMasker

    ds = st.open(fe)
    ijk = ds["voxel_ijk"].values
    mask = ds["mask"].values
    affine = np.asarray(fe.attrs["affine"])
    out, ids = [], None
    for i in range(ds.sizes["subject"]):
        vol = np.zeros(mask.shape + (ds.sizes["tr"],), np.float32)
        vol[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = ds["fmri"].values[i].T
        masker = NiftiLabelsMasker(labels_img=str(atlas_path), mask_img=nib.Nifti1Image(mask.astype(np.int8), affine),
                                   strategy="mean", keep_masked_labels=False, standardize=None,
                                   resampling_target="data" if resample else None)
        out.append(masker.fit_transform(nib.Nifti1Image(vol, affine)))
        ids = [int(v) for k, v in masker.region_ids_.items() if k != "background"]
    return np.stack(out), ids


# ------------------------------------------------------------------------------ terminals
class Terminal:
    """A stderr that says it is a terminal and keeps what is written."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text):
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True

    @property
    def text(self) -> str:
        return "".join(self.parts)


def write_chained_ogg(path, parts) -> Path:
    """``cat`` of OGG/Vorbis files written by soundfile: ``parts`` is a list of (seconds, sample rate, seed)."""
    import soundfile as sf

    from giblet_store.testing import synth_audio

    blobs = []
    for i, (seconds, sr, seed) in enumerate(parts):
        one = Path(f"{path}.part{i}.ogg")
        sf.write(str(one), synth_audio(seconds, sr, seed=seed)[0], sr, format="OGG", subtype="VORBIS")
        blobs.append(one.read_bytes())
        one.unlink()
    Path(path).write_bytes(b"".join(blobs))
    return Path(path)


def write_hostile_niftis(d) -> dict:
    """Small 4D NIfTIs (4, 3, 3, 8) whose headers lie (issue 21); ``{name: path}`` under folder ``d``.

    ``trunc.nii``/``trunc.nii.gz`` cut short, ``morevols.nii`` dim[4]=20 over 8 volumes, ``voxoff.nii``
    and ``voxoff.nii.gz`` vox_offset 3e9, ``rgb.nii``, ``complex.nii``, ``zerovols.nii``, ``slope.nii``
    (int16, scl_slope 1e38), ``msec.nii`` (pixdim 1.5 msec), ``usec.nii`` (1e-6 sec), ``bigtr.nii`` (1e6
    sec), ``nanaff.nii`` (a NaN in srow_x), ``singular.nii`` (srow_x[0] = 0), ``good.nii``.
    """
    import gzip
    import struct

    import nibabel as nib

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = 100 + rng.standard_normal((4, 3, 3, 8)).astype(np.float32)

    def save(name, arr, unit="sec", tr=2.0):
        img = nib.Nifti1Image(arr, np.diag([3.0, 3.0, 3.0, 1.0]))
        img.header.set_xyzt_units("mm", unit)
        img.header.set_zooms((3.0, 3.0, 3.0, tr))
        nib.save(img, d / name)
        return (d / name).read_bytes()

    def patched(name, raw, fmt, offset, *values):
        b = bytearray(raw)
        struct.pack_into(fmt, b, offset, *values)
        (d / name).write_bytes(bytes(b))

    raw = save("good.nii", data)
    (d / "trunc.nii").write_bytes(raw[:-200])
    (d / "trunc.nii.gz").write_bytes(gzip.compress(raw)[:-300])
    patched("morevols.nii", raw, "<h", 48, 20)  # dim[4]
    patched("zerovols.nii", raw, "<h", 48, 0)
    patched("voxoff.nii", raw, "<f", 108, 3e9)  # vox_offset
    (d / "voxoff.nii.gz").write_bytes(gzip.compress((d / "voxoff.nii").read_bytes()))
    patched("nanaff.nii", raw, "<f", 280, float("nan"))  # srow_x[0]
    patched("singular.nii", raw, "<f", 280, 0.0)
    rgb = np.zeros((4, 3, 3, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.diag([3.0, 3.0, 3.0, 1.0])), d / "rgb.nii")
    save("complex.nii", data.astype(np.complex64))
    patched("slope.nii", save("slope.nii", rng.integers(1, 1000, (4, 3, 3, 8)).astype(np.int16)), "<ff", 112, 1e38,
            0.0)  # scl_slope, scl_inter
    save("msec.nii", data, unit="msec", tr=1.5)
    save("usec.nii", data, tr=1e-6)
    save("bigtr.nii", data, tr=1e6)
    return {p.name: p for p in d.iterdir()}


def write_long_header_flac(path, hours: float = 795.0, sample_rate_hz: int = 24000) -> Path:
    """A 1 s FLAC whose STREAMINFO declares ``hours`` of samples (issue 21: "Internal psf_fseek() failed")."""
    import soundfile as sf

    x = (np.random.default_rng(0).standard_normal(sample_rate_hz) * 0.1).astype(np.float32)
    sf.write(path, x, sample_rate_hz, format="FLAC")
    b = bytearray(Path(path).read_bytes())
    assert b[:4] == b"fLaC"
    v = int.from_bytes(b[18:26], "big")  # sample rate, channels, bits, then 36 bits of total samples
    v = (v & ~((1 << 36) - 1)) | int(hours * 3600 * sample_rate_hz)
    b[18:26] = v.to_bytes(8, "big")
    Path(path).write_bytes(bytes(b))
    return Path(path)


# ------------------------------------------------------------------------------ surfaces (issue 19 item 3)
def write_gifti(path, data, hemi: str | None = "L", empty: bool = False) -> Path:
    """(tr, vertex) ``data`` as a func.gii, one float32 data array per volume (fMRIPrep's layout);
    ``hemi`` goes into AnatomicalStructurePrimary (None: no metadata); ``empty``: no data arrays."""
    import nibabel as nib

    meta = {} if hemi is None else {"AnatomicalStructurePrimary": {"L": "CortexLeft", "R": "CortexRight"}[hemi]}
    img = nib.gifti.GiftiImage(meta=nib.gifti.GiftiMetaData(meta))
    for row in ([] if empty else np.asarray(data, dtype=np.float32)):
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.ascontiguousarray(row), datatype="float32",
                                                          intent="NIFTI_INTENT_TIME_SERIES"))
    nib.save(img, str(path))
    return Path(path)


def write_gifti_pair(d, stem: str, left, right, space: str = "fsaverage6") -> list[Path]:
    """``stem``_hemi-L/R_space-``space``_bold.func.gii in ``d`` from (tr, vertex) arrays."""
    return [write_gifti(Path(d) / f"{stem}_hemi-{h}_space-{space}_bold.func.gii", x, h)
            for h, x in (("L", left), ("R", right))]


def write_cifti(path, data, n_surface: int, left_vertices, right_vertices, n_voxels: int = 3,
                tr_s: float = 2.0) -> Path:
    """A dtseries: (tr, grayordinate) ``data`` over cortex L (``left_vertices``), cortex R and a
    thalamus part of ``n_voxels`` voxels, in that order, on a 1-step series of ``tr_s`` s."""
    import nibabel as nib

    ax = (nib.cifti2.BrainModelAxis.from_mask(np.isin(np.arange(n_surface), left_vertices), "CortexLeft")
          + nib.cifti2.BrainModelAxis.from_mask(np.isin(np.arange(n_surface), right_vertices), "CortexRight"))
    vol = np.zeros((4, 4, 4), bool)
    vol.flat[:n_voxels] = True
    ax = ax + nib.cifti2.BrainModelAxis.from_mask(vol, "ThalamusLeft", affine=np.eye(4))
    series = nib.cifti2.SeriesAxis(start=0, step=tr_s, size=np.shape(data)[0], unit="SECOND")
    nib.save(nib.Cifti2Image(np.asarray(data, dtype=np.float32), header=(series, ax)), str(path))
    return Path(path)


def write_claiming_mp3(path, mpeg_frames: int = 0x7FFFFFFF, sample_rate_hz: int = 24000) -> Path:
    """A ~1.2 KB MP3 of 1000 samples whose Xing header claims ``mpeg_frames`` frames (576 samples each at 24 kHz:
    the default claims 1.2e12 samples, 14,300 h; issue 21: a buffer sized from a header)."""
    import soundfile as sf

    x = (np.random.default_rng(0).standard_normal(1000) * 0.1).astype(np.float32)
    sf.write(path, x, sample_rate_hz, format="MP3", subtype="MPEG_LAYER_III")
    b = bytearray(Path(path).read_bytes())
    i = b.index(b"Xing")
    assert int.from_bytes(b[i + 4 : i + 8], "big") & 1  # the frames field is present
    b[i + 8 : i + 12] = mpeg_frames.to_bytes(4, "big")
    Path(path).write_bytes(bytes(b))
    return Path(path)


def write_claiming_rf64(path, hours: float = 795.0, sample_rate_hz: int = 24000) -> Path:
    """A ~2 KB RF64 WAV (1000 PCM_16 samples) whose ds64 chunk declares ``hours`` of data (libsndfile reads the
    1000 samples there and would report the file as complete)."""
    import soundfile as sf

    x = (np.random.default_rng(0).standard_normal(1000) * 0.1).astype(np.float32)
    sf.write(path, x, sample_rate_hz, format="RF64", subtype="PCM_16")
    b = bytearray(Path(path).read_bytes())
    assert b[:4] == b"RF64" and b[12:16] == b"ds64"
    b[28:36] = int(hours * 3600 * sample_rate_hz * 2).to_bytes(8, "little")  # ds64: riff size, then data size
    Path(path).write_bytes(bytes(b))
    return Path(path)


def load_example(name: str):
    """examples/NAME.py as a module (for in-process runs of an example's ``main``)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_block(name: str) -> str:
    """The fenced block between ``<!-- name -->`` and ``<!-- /name -->`` in README.md."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(rf"<!-- {name} -->\s*```\w*\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert m, f"README has no {name} block"
    return m.group(1)
