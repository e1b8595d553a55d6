"""Batch manifests: which stimuli to extract, and the grid of parameters to extract them with.

A manifest is CSV (one row per stimulus) or YAML/JSON (defaults at the top, a list of stimuli).
Each stimulus expands to one job per element of ``kinds x bandwidths x trs`` (bandwidths apply to
codes only). Everything is checked before any work starts, and every problem is reported at once:
unknown columns or keys, missing files, duplicate stimuli, invalid parameter values.

YAML / JSON::

    model: models/encodec_24khz     # hub name or save_pretrained directory (relative: to the manifest)
    kinds: [codes, mel]             # default [codes]
    bandwidths: [1.5, 6]            # kbps
    trs: [1.5]                      # TR in seconds
    chunk_s: 10                     # audio per encode task; context_s: its left context
    encoder: stream                 # one task per file, exact (default); chunked: spread a file over workers
    mel: {n_mels: 64}               # MelParams fields (kind mel)

Fields left out take the defaults of ``CodecParams()`` and ``TrGrid()`` (so a manifest and
``extract_codes`` with defaults make the same entries).
    stimuli:
      - sherlock_part1.wav          # paths are relative to the manifest's folder
      - {path: sherlock_part2.wav, onset_s: -2.0, n_trs: 946, bandwidths: [6]}

CSV (a header row; ``path`` is required; list cells separate values with ``;`` or spaces; an empty
cell takes the default)::

    path,bandwidths,trs,onset_s
    sherlock_part1.wav,1.5;6,1.5,
    sherlock_part2.wav,6,1.5 2.0,-2.0
"""

from __future__ import annotations

import csv
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..codec.encodec import CodecParams
from ..validate import int_in_range, number_like
from ..errors import ManifestError, ParameterError  # noqa: F401 (ManifestError re-exported)
from ..grid import TrGrid
from ..bounds import MAX_TRS
from .manifest_read import csv_rows, parse_mapping, resolve_path, short_repr

__all__ = ["Manifest", "Job", "ManifestError", "load_manifest", "KINDS", "STIMULUS_FIELDS", "TOP_FIELDS"]

#: Entry kinds a batch makes.
KINDS = ("codes", "mel")

#: Fields a stimulus (CSV column, or YAML stimulus key) may set; the top level may set them as defaults.
STIMULUS_FIELDS = ("path", "kinds", "bandwidths", "trs", "onset_s", "n_trs", "model", "revision", "chunk_s",
                   "context_s", "encoder")
#: Fields only the top level of a YAML/JSON manifest may set.
TOP_FIELDS = ("stimuli", "device", "tr_chunk", "mel")

_LISTS = ("kinds", "bandwidths", "trs")


def _defaults() -> dict[str, Any]:
    """Values of fields a manifest leaves out: those of ``CodecParams()`` and ``TrGrid()``."""
    c, g = CodecParams(), TrGrid()
    return {"kinds": ["codes"], "bandwidths": [c.bandwidth_kbps], "trs": [g.tr_s], "onset_s": g.onset_s,
            "n_trs": g.n_trs, "model": c.model, "revision": c.revision, "chunk_s": c.chunk_s,
            "context_s": c.context_s, "encoder": c.encoder, "device": "cpu", "tr_chunk": None, "mel": {}}


@dataclass(frozen=True)
class Job:
    """One entry to make: a stimulus, a kind, and its parameters.

    Attributes
    ----------
    path : Path
        Absolute path of the stimulus.
    kind : {"codes", "mel"}
    grid : TrGrid
    codec : CodecParams or None
        Codes jobs only.
    mel : dict
        ``MelParams`` fields (mel jobs only; empty: the defaults).
    where : str
        Where the manifest asked for it (``row 3``, ``stimuli[2]``), for messages.
    """

    path: Path
    kind: str
    grid: TrGrid
    codec: CodecParams | None = None
    mel: dict = field(default_factory=dict)
    where: str = ""

    def describe(self) -> str:
        """Short parameter summary for tables (``kbps=6 tr=1.5``)."""
        parts = [f"kbps={self.codec.bandwidth_kbps:g}"] if self.codec else []
        parts.append(f"tr={self.grid.tr_s:g}")
        if self.grid.onset_s:
            parts.append(f"onset={self.grid.onset_s:g}")
        if self.grid.n_trs is not None:
            parts.append(f"n_trs={self.grid.n_trs}")
        parts += [f"{k}={v}" for k, v in sorted(self.mel.items())]
        return " ".join(parts)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: the jobs to run and batch-wide options.

    Attributes
    ----------
    source : str
        The manifest file (or ``<mapping>``).
    jobs : tuple of Job
        One per stimulus x kind x bandwidth x TR, in manifest order.
    stimuli : tuple of Path
        The distinct stimuli, in manifest order.
    device : str
        Torch device the workers encode on.
    tr_chunk : int or None
        TRs per Zarr chunk (and per write task) of codes entries; None: the store's default
        chunking, which makes batch entries byte-identical to ``extract_codes`` ones.
    """

    source: str
    jobs: tuple
    stimuli: tuple
    device: str = "cpu"
    tr_chunk: int | None = None


def load_manifest(source: "str | os.PathLike | Mapping", base_dir: "str | os.PathLike | None" = None,
                  model: str | None = None) -> Manifest:
    """Read and validate a manifest.

    Parameters
    ----------
    source : path to a ``.csv``, ``.yaml``/``.yml`` or ``.json`` file, or a mapping (the YAML layout)
    base_dir : folder relative paths are read from (default: the manifest's folder, or the cwd)
    model : str, optional
        Hub name or ``save_pretrained`` directory (relative: to the current directory) for every
        stimulus that does not name its own (a CSV ``model`` cell wins); replaces a YAML/JSON
        top-level ``model`` and the default ``facebook/encodec_24khz``.

    Raises
    ------
    ManifestError
        With every problem found (unknown fields, missing files, duplicates, invalid values).
    """
    if isinstance(source, Mapping):
        name, base = "<mapping>", Path(base_dir or os.getcwd())
        top, rows, problems = _from_mapping(source, name)
    else:
        p = Path(source).expanduser()
        name, resolved = str(p), resolve_path(p)
        if resolved is None:
            raise ManifestError(name, [f"the manifest path {str(p)!r} is a symlink loop; point it at the manifest "
                                       "file"])
        if not p.is_file():
            raise ManifestError(name, [f"the manifest file {str(p)!r} does not exist (or is not a file)"])
        base = Path(base_dir) if base_dir else resolved.parent
        suffix = p.suffix.lower()
        if suffix == ".csv":
            top, (rows, problems) = {}, _read_csv(p)
        elif suffix in (".yaml", ".yml", ".json"):
            top, rows, problems = _from_mapping(parse_mapping(p, suffix), name)
        else:
            raise ManifestError(name, [f"unknown manifest format {suffix or '(no suffix)'!r}; give a .csv, .yaml, "
                                       ".yml or .json file"])
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise ManifestError(name, [f"model must be a hub name or a directory, got {model!r}"])
        local = Path(model).expanduser()
        top = {**top, "model": str(local.resolve()) if local.is_dir() else model}
    return _build(name, base, top, rows, problems)


# ------------------------------------------------------------------------------------ reading
def _from_mapping(doc: Any, name: str) -> tuple[dict, list[tuple[str, dict]], list[str]]:
    """(top-level fields, stimulus rows, problems): unknown fields are reported and left out, so the
    rest of the manifest is still checked and every problem is reported at once."""
    if not isinstance(doc, Mapping):
        raise ManifestError(name, [f"the manifest must be a mapping with a 'stimuli' list, got "
                                   f"{type(doc).__name__}"])
    top_allowed = set(STIMULUS_FIELDS) - {"path"} | set(TOP_FIELDS)
    problems = _unknown(doc, top_allowed, "top-level key")
    stimuli = doc.get("stimuli")
    if not isinstance(stimuli, list) or not stimuli:
        problems.append("'stimuli' must be a non-empty list of paths or {path: ..., ...} mappings")
        stimuli = []
    rows = []
    for i, s in enumerate(stimuli):
        where = f"stimuli[{i}]"
        if isinstance(s, str):
            s = {"path": s}
        if not isinstance(s, Mapping):
            problems.append(f"{where}: expected a path or a mapping, got {short_repr(s)}")
            continue
        problems += [f"{where}: {m}" for m in _unknown(s, set(STIMULUS_FIELDS), "key")]
        rows.append((where, {k: v for k, v in s.items() if k in STIMULUS_FIELDS}))
    return {k: v for k, v in doc.items() if k != "stimuli" and k in top_allowed}, rows, problems


def _read_csv(p: Path) -> tuple[list[tuple[str, dict]], list[str]]:
    lines, line_no = csv_rows(p)
    reader = csv.DictReader(lines, skipinitialspace=True)
    header = [h.strip() for h in (reader.fieldnames or [])]
    problems = []
    if not header:
        raise ManifestError(str(p), ["the CSV file is empty; expected a header row with a 'path' column"])
    if "path" not in header:
        problems.append(f"the CSV header {header} has no 'path' column")
    problems += _unknown(dict.fromkeys(header), set(STIMULUS_FIELDS), "column")
    if len(set(header)) != len(header):
        problems.append(f"the CSV header repeats a column: {header}")
    rows = []
    for raw in reader:
        n = line_no[min(reader.line_num, len(line_no)) - 1]  # the file's own line number
        if None in raw:
            problems.append(f"line {n}: more cells than header columns ({raw[None]})")
        cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None and k.strip() in STIMULUS_FIELDS}
        rows.append((f"line {n}", {k: v for k, v in cells.items() if v != ""}))
    if not rows:
        problems.append("the CSV file has a header but no stimulus rows")
    return rows, problems


def _unknown(d: Mapping, allowed: set, what: str, shown: int = 5) -> list[str]:
    """One problem per unknown field, the first ``shown`` of them; the rest counted in one line."""
    unknown = [k for k in d if k not in allowed]
    out = []
    for k in unknown[:shown]:
        close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(f"unknown {what} {short_repr(k)}{hint}; expected some of {sorted(allowed)}")
    if len(unknown) > shown:
        out.append(f"and {len(unknown) - shown} more unknown {what}s ({short_repr(unknown[shown:])})")
    return out


# ------------------------------------------------------------------------------------ values
def _split(value: Any) -> list:
    if isinstance(value, str):
        return [v for v in value.replace(";", " ").replace(",", " ").split() if v]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _number(value: Any, name: str) -> float:
    return number_like(name, value)


def _n_trs(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        return None
    x = _number(value, "n_trs")
    if x != int(x) or x < 0:
        raise ParameterError(f"n_trs must be a non-negative whole number of TRs, got {short_repr(value)}")
    if x > MAX_TRS:
        raise ParameterError(f"n_trs={x:.6g} is more than the {MAX_TRS} TRs limit (11.6 days at a 1 s TR); give the "
                             "scan's real TR count")
    return int(x)


def _model(value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"model must be a hub name or a directory, got {short_repr(value)}")
    value = value.strip()
    candidate = (base / value).expanduser()
    if value.startswith(("/", "~", ".")) or candidate.is_dir():
        return str(candidate.resolve())
    return value


def _mel_params(d: Any) -> tuple[dict, str | None]:
    """(params, problem): validate MelParams fields (librosa is not needed for that)."""
    from ..features.mel import MelParams

    if not isinstance(d, Mapping):
        return {}, f"'mel' must be a mapping of MelParams fields, got {short_repr(d)}"
    try:
        MelParams.from_dict(dict(d))
    except (ParameterError, TypeError, ValueError) as exc:
        return dict(d), f"mel: {exc}"
    return dict(d), None


# ------------------------------------------------------------------------------------ building
def _build(name: str, base: Path, top: dict, rows: list[tuple[str, dict]], problems: list[str]) -> Manifest:
    """The Manifest of a parsed file: top-level defaults and one row per stimulus, every problem at once."""
    problems = list(problems)
    defaults = {**_defaults(), **top}
    device, tr_chunk = _top_level(defaults, problems)
    mel: dict[str, Any] = {}  # the mel parameters, checked once a stimulus asks for mel
    jobs, stimuli, seen = [], [], {}
    for where, row in rows:
        cfg = {**defaults, **row}
        path = row.get("path", "?")
        label = f"{where} ({path if isinstance(path, str) and len(path) <= 200 else short_repr(path)})"
        p = _stimulus(where, label, cfg.get("path"), base, seen, problems)
        if p is None:
            continue
        stimuli.append(p)
        jobs += _row_jobs(p, where, label, cfg, base, mel, defaults["mel"], problems)
    if not rows and not problems:
        problems.append("no stimuli listed")
    if problems:
        raise ManifestError(name, problems)
    return Manifest(name, tuple(jobs), tuple(stimuli), device=device, tr_chunk=tr_chunk)


def _top_level(defaults: dict, problems: list[str]) -> tuple[Any, int | None]:
    """``(device, tr_chunk)`` of the manifest (problems noted; a bad tr_chunk becomes None)."""
    device = defaults["device"]
    if not isinstance(device, str) or not device:
        problems.append(f"device must be a torch device name (cpu, cuda, cuda:1, mps), got {short_repr(device)}")
    try:
        tr_chunk = int_in_range("tr_chunk", defaults["tr_chunk"], 1, optional=True)
    except ParameterError as exc:
        problems.append(f"{exc} (TRs per Zarr chunk; leave it out for the store's chunking)")
        tr_chunk = None
    return device, tr_chunk


def _stimulus(where: str, label: str, path: Any, base: Path, seen: dict, problems: list[str]) -> Path | None:
    """The stimulus file a row names (a missing file is noted, not skipped); None: no path, or a repeat."""
    if not isinstance(path, str) or not path.strip():
        problems.append(f"{where}: no path given")
        return None
    p = resolve_path((base / path.strip()).expanduser())
    if p is None:
        problems.append(f"{label}: {path.strip()!r} is a symlink loop; point it at the audio file")
        return None
    if not p.exists():
        problems.append(f"{label}: file {str(p)!r} does not exist; check the path (relative paths are "
                        f"read from {str(base)!r})")
    elif p.is_dir():
        problems.append(f"{label}: {str(p)!r} is a directory; expected an audio file")
    elif not p.is_file():  # reading a FIFO would wait for a writer forever
        problems.append(f"{label}: {str(p)!r} is not a regular file (a pipe, socket or device); expected an audio "
                        "file")
    if p in seen:
        problems.append(f"{label}: repeats {seen[p]}; list each stimulus once and give several values in "
                        "its bandwidths/trs/kinds instead")
        return None
    seen[p] = where
    return p


def _row_jobs(p: Path, where: str, label: str, cfg: dict, base: Path, mel: dict, mel_cfg: Any,
              problems: list[str]) -> list["Job"]:
    """The jobs of one stimulus: ``kinds x trs`` (x ``bandwidths`` for codes); problems noted."""
    values: dict[str, Any] = {}
    for list_name in _LISTS:
        items = _split(cfg[list_name])
        if not items:
            problems.append(f"{label}: {list_name} is empty")
        values[list_name] = items
    kinds = _kinds(values["kinds"], label, problems)
    numbers = {name: _distinct_numbers(values[name], name, unit, label, problems)
               for name, unit in (("bandwidths", "bandwidth_kbps"), ("trs", "tr_s"))}
    grids = _grids(cfg, numbers["trs"], label, problems)
    codecs = _codecs(cfg, base, numbers["bandwidths"], label, problems) if "codes" in kinds else []
    if "mel" in kinds and not mel:
        params, problem = _mel_params(mel_cfg)
        mel["params"] = params
        if problem:
            problems.append(problem)
    jobs = []
    for kind in kinds:
        for grid in grids:
            if kind == "codes":
                jobs += [Job(p, "codes", grid, codec=c, where=where) for c in codecs]
            else:
                jobs.append(Job(p, "mel", grid, mel=dict(mel["params"]), where=where))
    return jobs


def _kinds(names: list, label: str, problems: list[str]) -> list[str]:
    """The known, distinct kinds of ``names`` in order (unknown and repeated ones noted)."""
    kinds: list[str] = []
    for k in names:
        if k not in KINDS:
            problems.append(f"{label}: unknown kind {short_repr(k)}; expected some of {list(KINDS)}")
        elif k in kinds:
            problems.append(f"{label}: kind {k!r} is listed twice")
        else:
            kinds.append(k)
    return kinds


def _distinct_numbers(items: list, list_name: str, unit: str, label: str, problems: list[str]) -> list[float]:
    """The numbers of a list cell, each once (bad and repeated values noted)."""
    out: list[float] = []
    for v in items:
        try:
            x = _number(v, unit)
        except ParameterError as exc:
            problems.append(f"{label}: {exc}")
            continue
        if x in out:
            problems.append(f"{label}: {list_name} lists {x:g} twice")
        else:
            out.append(x)
    return out


def _grids(cfg: dict, trs: list[float], label: str, problems: list[str]) -> list[TrGrid]:
    """One TR grid per TR of the row (none when onset or n_trs is invalid: noted)."""
    try:
        onset = _number(cfg["onset_s"], "onset_s")
        n_trs = _n_trs(cfg["n_trs"])
        return [TrGrid(tr_s=tr, onset_s=onset, n_trs=n_trs) for tr in trs]
    except ParameterError as exc:
        problems.append(f"{label}: {exc}")
        return []


def _codecs(cfg: dict, base: Path, bandwidths: list[float], label: str, problems: list[str]) -> list[CodecParams]:
    """One CodecParams per bandwidth of the row (none when a codec field is invalid: noted)."""
    try:
        model = _model(cfg["model"], base)
        chunk_s = _number(cfg["chunk_s"], "chunk_s")
        context_s = _number(cfg["context_s"], "context_s")
        revision = cfg["revision"]
        if revision is not None and not isinstance(revision, str):
            revision = str(revision)
        return [CodecParams(model=model, bandwidth_kbps=bw, chunk_s=chunk_s, context_s=context_s,
                            revision=revision, encoder=cfg["encoder"]) for bw in bandwidths]
    except ParameterError as exc:
        problems.append(f"{label}: {exc}")
        return []
