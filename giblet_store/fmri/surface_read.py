"""Reading surface BOLD: a GIFTI pair (one ``.func.gii`` per hemisphere) or a CIFTI ``.dtseries.nii``.

A :class:`SurfaceSeries` is one (subject, run) on a surface: its files (with their sha256), its
``parts`` (one per hemisphere, in order L then R), its volume count and the TR its header gives
(CIFTI's series step; GIFTI's ``TimeStep`` metadata in ms where present). :meth:`SurfaceSeries.load`
returns its values, (tr, vertex) float32, the left hemisphere's vertices then the right's.

- **GIFTI** (fMRIPrep's ``*_hemi-L_space-fsaverage6_bold.func.gii``): one data array per volume, each
  (n_vertices,); a single (n_vertices, tr) array is read the same way. The hemisphere comes from the
  file name's ``hemi-`` entity, else from the ``AnatomicalStructurePrimary`` metadata.
- **CIFTI** (``*_space-fsLR_den-91k_bold.dtseries.nii``): the cortical surface parts of the brain-model
  axis (``CIFTI_STRUCTURE_CORTEX_LEFT/RIGHT``), each with its ``vertex`` indices; the volume parts
  (subcortical voxels) are left out, and :attr:`SurfaceSeries.dropped` says which and how many.

nibabel decodes a GIFTI's data arrays when it opens the file, so a series is read whole: a run of
1,000 TRs on fsaverage6 (2 x 40,962 vertices) is 330 MB as float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FmriError
from ..store.hashing import sha256_file
from .nifti import file_stamp

__all__ = ["SurfacePart", "SurfaceSeries", "open_surface", "open_surface_pair", "surface_space", "part_coords", "HEMIS"]

HEMIS = ("L", "R")
_GIFTI_HEMI = {"cortexleft": "L", "cortexright": "R"}
_CIFTI_HEMI = {"CIFTI_STRUCTURE_CORTEX_LEFT": "L", "CIFTI_STRUCTURE_CORTEX_RIGHT": "R"}


@dataclass(frozen=True)
class SurfacePart:
    """One hemisphere: ``hemi`` "L"/"R", ``vertex_index`` (n,) int64 on a surface of ``n_surface``
    vertices, ``structure`` (CIFTI's brain structure, GIFTI's AnatomicalStructurePrimary or "")."""

    hemi: str
    vertex_index: np.ndarray
    n_surface: int
    structure: str = ""


@dataclass
class SurfaceSeries:
    """One (subject, run) of surface BOLD (see the module docstring)."""

    files: list[Path]
    kind: str  # "gifti" or "cifti"
    parts: list[SurfacePart]
    n_volumes: int
    header_tr_s: float | None
    space: str | None
    sha256: list[str] = field(default_factory=list)
    dropped: dict = field(default_factory=dict)
    #: each file's (size, mtime_ns, inode, ctime_ns) before it was first read; :meth:`load` compares them
    stamps: list = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.files[0]

    @property
    def n_vertices(self) -> int:
        return int(sum(len(p.vertex_index) for p in self.parts))

    def load(self) -> np.ndarray:
        """(tr, vertex) float32, L then R (each part's ``vertex_index`` order).

        Raises FmriError when a file changed since it was opened (its sha256 would not name what was read).
        """
        if self.kind == "cifti":
            out = _cifti_values(self.files[0], self.parts)
        else:
            out = np.concatenate([_gifti_values(f)[0] for f in self.files], axis=1)
        for f, stamp in zip(self.files, self.stamps):
            if file_stamp(f) != stamp:
                raise FmriError(f"{str(f)!r} changed while it was being read (size, mtime, inode or ctime differ "
                                "from when it was opened); nothing was stored. Rerun once it is no longer written")
        return out


def _entities(path: Path) -> dict:
    from nilearn.interfaces.bids import parse_bids_filename

    ref = parse_bids_filename(str(path))
    return dict(ref["entities"] if isinstance(ref, dict) else ref.entities)


def surface_space(path: Path) -> str | None:
    """The ``space-`` entity of a surface file's name (None: the name has none)."""
    return _entities(Path(path)).get("space")


def _load(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as e:  # nibabel raises many types (ImageFileError, ExpatError, ValueError, ...)
        raise FmriError(f"{path}: cannot read it as {'CIFTI' if str(path).endswith('.nii') else 'GIFTI'} "
                        f"({type(e).__name__}: {e}); give fMRIPrep's func.gii or dtseries.nii output") from None


def _gifti_values(path: Path):
    """(tr, vertex) float32 of a func.gii, and the image."""
    img = _load(path)
    arrays = getattr(img, "darrays", None)
    if arrays is None:
        raise FmriError(f"{path.name} is not a GIFTI image (nibabel read it as {type(img).__name__})")
    if not arrays:
        raise FmriError(f"{path.name} holds no data arrays (an empty GIFTI); a func.gii holds one array per "
                        "volume: give the run's BOLD on the surface")
    if len(arrays) == 1 and np.ndim(arrays[0].data) == 2:
        return np.asarray(arrays[0].data, dtype=np.float32).T, img
    sizes = sorted({int(np.size(d.data)) for d in arrays})
    if len(sizes) > 1 or any(np.ndim(d.data) != 1 for d in arrays):
        raise FmriError(f"{path.name}: its {len(arrays)} data arrays have different vertex counts ({sizes}); "
                        "every volume of a func.gii covers the same vertices: the file is damaged")
    return np.stack([np.asarray(d.data, dtype=np.float32) for d in arrays]), img


def _gifti_hemi(path: Path, img) -> tuple[str, str]:
    meta = {str(k).lower(): str(v) for k, v in dict(img.meta or {}).items()}
    structure = meta.get("anatomicalstructureprimary", "")
    hemi = _entities(path).get("hemi") or _GIFTI_HEMI.get(structure.lower())
    if hemi not in HEMIS:
        raise FmriError(f"{path.name}: which hemisphere it holds is unknown (no hemi-L/hemi-R in its name and "
                        "no AnatomicalStructurePrimary CortexLeft/CortexRight); name it as fMRIPrep does "
                        "(..._hemi-L_space-fsaverage6_bold.func.gii)")
    return hemi, structure


def _gifti_tr(img) -> float | None:
    for d in img.darrays[:1]:
        step = dict(d.meta or {}).get("TimeStep")
        if step not in (None, ""):
            try:
                return float(step) / 1000.0
            except ValueError:
                return None
    return None


def open_surface_pair(files) -> SurfaceSeries:
    """A (subject, run) given as its two hemispheres' func.gii files (any order)."""
    files = [Path(f) for f in files]
    stamps = [file_stamp(f) for f in files if f.is_file()]
    if len(files) != 2:
        have = ", ".join(f.name for f in files)
        raise FmriError(f"a surface run needs one func.gii per hemisphere (hemi-L and hemi-R); got "
                        f"{len(files)} file(s): {have}. Give both hemispheres of every run")
    read = []
    for f in files:  # one file decoded at a time; only its shape, TR and hemisphere are kept
        values, img = _gifti_values(f)
        read.append((f, values.shape, _gifti_tr(img), *_gifti_hemi(f, img)))
        del values, img
    hemis = [r[3] for r in read]
    if sorted(hemis) != list(HEMIS):
        raise FmriError(f"{files[0].name} and {files[1].name} are both hemi-{hemis[0]}; a surface run needs "
                        "one hemi-L and one hemi-R file")
    read.sort(key=lambda r: HEMIS.index(r[3]))
    (fl, sl, tr, _, _), (fr, sr, _, _, _) = read
    if sl[1] != sr[1]:
        raise FmriError(f"{fl.name} has {sl[1]} vertices but {fr.name} has {sr[1]}; both hemispheres of a "
                        "standard surface (fsaverage*, fsLR) have the same count: are they of the same space? "
                        "(fsnative surfaces differ per subject and cannot share an entry)")
    if sl[0] != sr[0]:
        raise FmriError(f"{fl.name} has {sl[0]} volumes but {fr.name} has {sr[0]}; the two hemispheres of a run "
                        "have the same volumes: are they of the same run?")
    spaces = [surface_space(fl), surface_space(fr)]
    if spaces[0] != spaces[1]:
        raise FmriError(f"{fl.name} is in space {spaces[0]!r} but {fr.name} in {spaces[1]!r}; both hemispheres "
                        "must be on one surface: give the pair of one space")
    parts = [SurfacePart(r[3], np.arange(sl[1], dtype=np.int64), int(sl[1]), r[4]) for r in read]
    order = [files.index(fl), files.index(fr)]
    return SurfaceSeries([fl, fr], "gifti", parts, int(sl[0]), tr, spaces[0],
                         [sha256_file(fl), sha256_file(fr)], stamps=[stamps[i] for i in order])


def _cifti_axes(path: Path, img):
    import nibabel as nib

    if not isinstance(img, nib.Cifti2Image):
        raise FmriError(f"{path.name} is not a CIFTI-2 image; a .dtseries.nii from fMRIPrep (space fsLR) is")
    series, models = img.header.get_axis(0), img.header.get_axis(1)
    if not isinstance(series, nib.cifti2.SeriesAxis) or not isinstance(models, nib.cifti2.BrainModelAxis):
        raise FmriError(f"{path.name} is not a dense time series (dtseries: series x brain models); give the "
                        "run's .dtseries.nii")
    return series, models


def open_surface(path) -> SurfaceSeries:
    """A (subject, run) given as one CIFTI ``.dtseries.nii`` (its cortical surfaces; volume parts left out)."""
    path = Path(path)
    stamp = file_stamp(path) if path.is_file() else None
    img = _load(path)
    series, models = _cifti_axes(path, img)
    parts, dropped = [], {}
    for name, sl, bm in models.iter_structures():
        hemi = _CIFTI_HEMI.get(str(name))
        if hemi is None or not bm.surface_mask.all():
            dropped[str(name)] = int(len(bm))
            continue
        parts.append(SurfacePart(hemi, np.asarray(bm.vertex, dtype=np.int64), int(bm.nvertices[str(name)]),
                                 str(name)))
    if sorted(p.hemi for p in parts) != list(HEMIS):
        raise FmriError(f"{path.name}: its brain models hold cortex surfaces {[p.hemi for p in parts]}; a surface "
                        "entry needs both CIFTI_STRUCTURE_CORTEX_LEFT and _RIGHT")
    parts.sort(key=lambda p: HEMIS.index(p.hemi))
    tr = float(series.step) if series.unit.upper() == "SECOND" and series.step > 0 else None
    return SurfaceSeries([path], "cifti", parts, int(series.size), tr, surface_space(path), [sha256_file(path)],
                         dropped, [stamp])


def _cifti_values(path: Path, parts: list[SurfacePart]) -> np.ndarray:
    img = _load(path)
    _, models = _cifti_axes(path, img)
    data = np.asarray(img.dataobj, dtype=np.float32)
    cols = {str(name): sl for name, sl, _ in models.iter_structures()}
    return np.concatenate([data[:, cols[p.structure]] for p in parts], axis=1)


def part_coords(parts: list[SurfacePart]) -> dict:
    """``hemi`` (vertex,) str, ``vertex_index`` (vertex,) int64 and ``structure`` (vertex,) str of ``parts``."""
    return {"hemi": np.concatenate([np.full(len(p.vertex_index), p.hemi, dtype=object) for p in parts]),
            "vertex_index": np.concatenate([p.vertex_index for p in parts]).astype(np.int64),
            "structure": np.concatenate([np.full(len(p.vertex_index), p.structure, dtype=object) for p in parts])}
