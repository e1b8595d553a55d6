"""What a batch checks before any work: every stimulus hashed (and pinned by its stamp), read, and fit for
its models; containers refused up front. Used by :mod:`giblet_store.batch.run`."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..audio.load import AudioInfo, audio_info
from ..store.hashing import sha256_file
from ..errors import AudioError, GibletStoreError, ParameterError  # noqa: F401
from .manifest import Job, Manifest, ManifestError

__all__ = ["_stamp", "_hash_all", "_check_manifest", "_containers", "_readable"]


def _stamp(path) -> tuple[int, int, int, int]:
    """(size, mtime_ns, inode, ctime_ns): any write or replacement of the file changes one of them."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _hash_pinned(path) -> tuple[str, tuple | None]:
    """``(sha256, stamp)`` with the stamp taken before hashing and found unchanged after (else None)."""
    before = _stamp(path)
    sha = sha256_file(path)
    return sha, (before if _stamp(path) == before else None)


def _hash_all(paths) -> tuple[dict[Path, str], dict[Path, tuple | None]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(paths, pool.map(_hash_pinned, paths)))
    return {p: sha for p, (sha, _) in done.items()}, {p: stamp for p, (_, stamp) in done.items()}


def _check_manifest(manifest: Manifest) -> tuple[dict, dict, dict]:
    """``(models, shas, stamps)``: each codes model loaded once with its identity, each stimulus's sha256
    and the (size, mtime_ns, inode, ctime_ns) it had while hashed (workers re-check it before each read).

    Raises ManifestError listing every problem that concerns the manifest as a whole (a model that
    does not load, a bandwidth it does not offer, two stimuli with the same content, a container batch
    cannot read by range), so none is found only after the other items' work.
    """
    from ..codec.encodec import load_codec, model_identity

    problems: list[str] = []
    models: dict[tuple, Any] = {}
    for job in manifest.jobs:
        if job.kind != "codes":
            continue
        mk = (job.codec.model, job.codec.revision)
        if mk not in models:
            try:
                models[mk] = (load_codec(*mk, "cpu"), model_identity(*mk))
            except GibletStoreError as exc:
                models[mk] = None
                problems.append(f"model {job.codec.model!r}: {exc}")
        if models[mk] is not None:
            try:
                models[mk][0].n_codebooks(job.codec.bandwidth_kbps)
            except ParameterError as exc:
                problems.append(f"{job.where} ({job.path.name}): {exc}")
    problems += _containers(manifest)
    shas, stamps = _hash_all(list(manifest.stimuli))
    problems += [f"{p.name} changed while it was being hashed; nothing was stored. Rerun once it is no longer "
                 "being written" for p, stamp in stamps.items() if stamp is None]
    first: dict[str, Path] = {}
    for p, sha in shas.items():
        if sha in first:
            problems.append(f"{p.name} has the same content (sha256 {sha[:12]}) as {first[sha].name}; "
                            "list each stimulus once")
        first.setdefault(sha, p)
    if problems:
        raise ManifestError(manifest.source, sorted(set(problems), key=problems.index))
    return models, shas, stamps


def _containers(manifest: Manifest) -> list[str]:
    """A problem per stimulus that is a container (read only from its start, so not by range); a file that cannot
    be read at all is left to fail its own items."""
    out = []
    for path in manifest.stimuli:
        try:
            info = audio_info(path)
        except AudioError:
            continue
        if info.reader != "soundfile":
            out.append(f"{Path(path).name} is a {info.container_format} container; batch reads wav/flac/ogg by "
                       "range. Run `giblet-store extract` on it, or extract its audio to flac first")
    return out


def _readable(job: Job, infos: dict) -> "AudioInfo | AudioError":
    """The stimulus's :class:`AudioInfo` (read once per file), or why batch cannot read it by range."""
    if job.path not in infos:
        try:
            infos[job.path] = audio_info(job.path)
        except AudioError as exc:
            infos[job.path] = exc
    info = infos[job.path]
    if not isinstance(info, AudioError) and info.reader != "soundfile":  # length known only once decoded
        info = AudioError(f"{job.path.name} is a {info.container_format} container; batch reads wav/flac/ogg "
                          "by range. Run `giblet-store extract` on it, or extract its audio to flac first")
    return info
