"""Where EnCodec weights come from: the hub or a local directory, loaded once per process.

A model is identified by what determines its codes, never by where it sits: a local directory by the
sha256 of its weight and config files (moving it keeps every key), a hub model by its name and the
commit it resolved to. Offline, the hub is tried from the local cache first and reached only after a
short reachability probe, so a missing network is a clear error in seconds, not a minute of retries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import socket
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ParameterError
from .registry import registered_model_dirs, registry_path, remember_model
from ..store.regular import open_regular, read_regular, regular_file

__all__ = ["DEFAULT_MODEL", "Codec", "load_codec", "model_identity", "codec_for_entry", "entry_model_name",
           "local_model_sha256"]

DEFAULT_MODEL = "facebook/encodec_24khz"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")


def _is_local(name: str) -> bool:
    return os.path.isdir(name) or name.startswith((".", "/", "~")) or os.sep in name and os.path.exists(name)


def _local_weights_sha256(directory: str) -> str:
    """sha256 over the weight and config files of a saved model (names and bytes)."""
    d = Path(directory).expanduser()
    files = sorted(p for p in d.iterdir() if p.name in _WEIGHT_FILES or p.suffix == ".safetensors")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open_regular(p) as f:  # a FIFO named model.safetensors is refused, never waited on
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _local_sha_cached(directory: str, stamp: tuple) -> str:
    return _local_weights_sha256(directory)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _no_weights_message(name: str, why: str) -> str:
    return (
        f"could not load EnCodec model {name!r}: {why}. Either give --model a directory saved with "
        f"EncodecModel.save_pretrained (on a machine with network: "
        f"`python -c \"from transformers import EncodecModel; "
        f"EncodecModel.from_pretrained('{DEFAULT_MODEL}').save_pretrained('encodec_24khz')\"`), "
        f"or run where https://huggingface.co is reachable so the weights can be downloaded"
    )


def _stamp(d: Path) -> tuple:
    """What tells a changed file in ``d`` from an unchanged one without reading it.

    (name, size, mtime, ctime, inode) of every file: an in-place rewrite that restores size and
    mtime (``os.utime``) still changes ctime, which no user call can set back, so a cached identity
    or model is never reused for weights that changed.
    """
    out = []
    for p in sorted(d.iterdir()):
        st = p.stat()
        out.append((p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)


def _check_local_dir(name: str) -> Path:
    d = Path(name).expanduser()
    if not d.exists():
        raise ModelError(f"model directory {name!r} does not exist; give a directory saved with save_pretrained")
    if not d.is_dir():
        raise ModelError(f"model path {name!r} is a file; give the directory saved with save_pretrained")
    cfg = d / "config.json"
    if not cfg.exists():
        raise ModelError(f"{name!r} has no config.json, so it is not a saved transformers model; "
                         "give a directory saved with EncodecModel.save_pretrained")
    odd = sorted(p.name for p in d.iterdir()
                 if (p.name in _WEIGHT_FILES or p.suffix == ".safetensors") and not regular_file(p) and p.exists())
    if odd:
        raise ModelError(f"model directory {name!r}: {', '.join(odd)} is not a regular file (a pipe, socket or "
                         "device); reading it would wait forever. Give a directory saved with save_pretrained")
    try:
        doc = json.loads(read_regular(cfg))
        model_type = doc.get("model_type") if isinstance(doc, dict) else None
    except RecursionError:
        raise ModelError(f"{str(cfg)!r} is nested too deeply to be a model config; give a directory saved with "
                         "save_pretrained") from None
    except (ValueError, OSError) as exc:
        raise ModelError(f"{str(cfg)!r} is not valid JSON ({str(exc)[:200]})") from None
    if model_type != "encodec":
        raise ModelError(f"{name!r} holds a {model_type!r} model, not an EnCodec model (model_type 'encodec')")
    if not any(p.suffix == ".safetensors" for p in d.iterdir()):
        pickles = sorted(p.name for p in d.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
        found = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights file"
        raise ModelError(
            f"model directory {name!r} has {found}; giblet_store loads weights only from safetensors (a pickle "
            "can run code when loaded). Convert it once where you trust the file: `EncodecModel.from_pretrained"
            f"(dir).save_pretrained(dir, safe_serialization=True)`"
        )
    return d


def local_model_sha256(directory: str) -> str:
    """sha256 of a saved model directory's weight and config files (cached per file stamps).

    Raises
    ------
    ModelError
        Not a directory saved with ``EncodecModel.save_pretrained``.
    """
    d = _check_local_dir(directory)
    return _local_sha_cached(str(d.resolve()), _stamp(d))


def model_identity(name: str, revision: str | None = None) -> dict[str, Any]:
    """What identifies the weights, without running the model.

    Local directory: ``{"model_sha256": ...}`` over its weight and config files (the path is not
    part of it: moving the directory keeps the key). Hub name: ``{"model_id", "model_revision"}``
    with the revision resolved to a commit from the local hub cache when possible.
    """
    if _is_local(name):
        # not remembered here: a directory is registered only once its model has loaded (load_codec),
        # so a corrupt folder never lands in this machine's registry
        return {"model_sha256": local_model_sha256(name)}
    commit = _cached_hub_commit(name, revision)
    if commit is None:
        codec = load_codec(name, revision)
        commit = codec.identity.get("model_revision")
    return {"model_id": name, "model_revision": commit or revision or "main"}


def _cached_hub_commit(name: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(name, "config.json", revision=revision)
    except (OSError, ValueError):  # no readable cache, or not a valid repo id: ask the hub instead
        return None
    if isinstance(path, str):
        parts = Path(path).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


@dataclass
class Codec:
    """A loaded, frozen EnCodec model and what the store needs to know of it."""

    model: Any
    name: str
    identity: dict
    device: str

    @property
    def config(self):
        return self.model.config

    @property
    def spec(self) -> tuple:
        """``(name, revision, device)``: what a task in another thread or process passes to
        :func:`load_codec` to get this model (loaded once per process)."""
        revision = None if "model_sha256" in self.identity else self.identity.get("model_revision")
        return (self.name, revision, self.device)

    @property
    def sample_rate_hz(self) -> int:
        return int(self.config.sampling_rate)

    @property
    def channels(self) -> int:
        return int(self.config.audio_channels)

    @property
    def hop(self) -> int:
        return int(np.prod(self.config.upsampling_ratios))

    @property
    def frame_rate(self) -> Fraction:
        """Exact frames per second (24000/320 = 75)."""
        return Fraction(self.sample_rate_hz, self.hop)

    @property
    def codebook_size(self) -> int:
        return int(self.config.codebook_size)

    @property
    def bandwidths(self) -> list[float]:
        return [float(b) for b in self.config.target_bandwidths]

    def n_codebooks(self, bandwidth_kbps: float) -> int:
        """Codebooks the model uses at ``bandwidth_kbps``; error if it does not offer it."""
        if not any(math.isclose(bandwidth_kbps, b) for b in self.bandwidths):
            offered = ", ".join(f"{b:g}" for b in self.bandwidths)
            raise ParameterError(
                f"bandwidth {bandwidth_kbps:g} kbps is not offered by {self.name}; choose one of {offered}"
            )
        return int(self.model.quantizer.get_num_quantizers_for_bandwidth(bandwidth_kbps))


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, revision: str | None, device: str, stamp: tuple) -> Codec:
    import torch  # noqa: F401
    from transformers import EncodecModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    local = _is_local(name)
    if local:
        _check_local_dir(name)
    try:
        if local:
            model = EncodecModel.from_pretrained(str(Path(name).expanduser()), use_safetensors=True)
        else:
            try:
                model = EncodecModel.from_pretrained(name, revision=revision, local_files_only=True,
                                                     use_safetensors=True)
            except OSError:
                if not _hub_reachable():
                    raise ModelError(_no_weights_message(name, "it is not in the local hub cache and "
                                                         "huggingface.co cannot be reached")) from None
                model = EncodecModel.from_pretrained(name, revision=revision, use_safetensors=True)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(_no_weights_message(name, f"{type(exc).__name__}: {exc}")) from None
    if getattr(model.config, "model_type", None) != "encodec":
        raise ModelError(f"{name!r} is not an EnCodec model")
    if model.config.normalize and model.config.chunk_length_s is None:
        raise ModelError(
            f"{name!r} normalises audio (normalize=true) without chunk_length_s, so EncodecModel.decode has "
            "no per-chunk scale to undo it; set chunk_length_s and overlap in its config.json (the 48 kHz "
            "model: 1.0 and 0.01)"
        )
    try:
        model = model.to(device)
    except Exception as exc:
        raise ModelError(f"cannot move the model to device {device!r}: {exc}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if local:
        identity = {"model_sha256": _local_weights_sha256(name)}
    else:
        identity = {"model_id": name, "model_revision": getattr(model.config, "_commit_hash", None) or revision or "main"}
    return Codec(model=model, name=name, identity=identity, device=device)


def entry_model_name(attrs: dict, model: str | None = None) -> str:
    """The model to load for a codes entry: ``model`` if given, else the entry's hub name, else the
    directory this machine's model registry remembers for the entry's ``model_sha256``.

    Raises
    ------
    ParameterError
        The entry was made from a local directory and no ``model`` was given.
    """
    name = model or attrs.get("model_id")
    if name is None and attrs.get("model_sha256"):
        name = find_model_dir(attrs["model_sha256"])
    if name is None:
        stale = registered_model_dirs(str(attrs.get("model_sha256", "")))
        known = (f"remembers only {', '.join(stale)}, which no longer hold those weights (moved, deleted or "
                 "changed)" if stale else "does not know")
        raise ParameterError(
            f"entry {str(attrs.get('key', ''))[:16]} was made with a local model ({attrs.get('model')}, sha256 "
            f"{str(attrs.get('model_sha256', ''))[:12]}) that this machine's model registry ({registry_path()}) "
            f"{known}; give that directory once (model=..., CLI --model) and later commands find it"
        )
    return name


def codec_for_entry(attrs: dict, model: str | None = None, device: str = "cpu", purpose: str = "decode") -> "Codec":
    """Load the model that made a codes entry, refusing other weights.

    Raises
    ------
    ParameterError
        No model can be named (see :func:`entry_model_name`), or the given one has other weights.
    """
    name = entry_model_name(attrs, model)
    codec = load_codec(name, attrs.get("model_revision") if model is None else None, device)
    _check_same_architecture(attrs, codec, purpose)
    mine = {k: attrs[k] for k in ("model_sha256", "model_id") if k in attrs}
    if mine and not all(codec.identity.get(k) == v for k, v in mine.items()):
        raise ParameterError(
            f"model {name!r} is not the one that made entry {str(attrs.get('key', ''))[:16]} "
            f"(entry: {mine}, given: {codec.identity}); {purpose} with the same weights"
        )
    return codec


def _check_same_architecture(attrs: dict, codec: "Codec", purpose: str) -> None:
    """A clear error when an entry of one architecture (24 kHz mono, 48 kHz stereo) meets the other."""
    def describe(rate, channels, chunked):
        return f"{rate} Hz, {channels} channel(s), " + ("normalised overlapping chunks" if chunked else "one stream")

    theirs = (attrs.get("sample_rate_hz"), attrs.get("audio_channels"), "chunk_stride_samples" in attrs)
    given = (codec.sample_rate_hz, codec.channels, codec.config.chunk_length_s is not None)
    known = (theirs[0] is not None, theirs[1] is not None, attrs.get("kind") == "codes")  # what the entry says
    if any(k and t != g for k, t, g in zip(known, theirs, given)):
        raise ParameterError(
            f"entry {str(attrs.get('key', ''))[:16]} was made by a model of another architecture "
            f"({describe(*theirs)}; model {attrs.get('model')!r}) than {codec.name!r} ({describe(*given)}); "
            f"{purpose} with the model that made it"
        )


def load_codec(name: str = DEFAULT_MODEL, revision: str | None = None, device: str = "cpu") -> Codec:
    """Load (once per process) a frozen EnCodec model from the hub or a local directory.

    Raises
    ------
    ModelError
        The weights cannot be found, or the directory is not an EnCodec model.
    """
    stamp: tuple = ()
    if _is_local(name):
        d = _check_local_dir(name)
        stamp = _stamp(d)
        name = str(d.resolve())
    codec = _load_cached(name, revision, device, stamp)
    if "model_sha256" in codec.identity:  # registered only once it has loaded (a broken folder never is)
        remember_model(codec.identity["model_sha256"], name)
    return codec


def find_model_dir(sha256: str) -> str | None:
    """A remembered directory (:mod:`giblet_store.codec.registry`) whose weights still hash to ``sha256``, or None."""
    for d in registered_model_dirs(sha256):
        try:
            if local_model_sha256(d) == sha256:
                return d
        except (ModelError, OSError):  # moved, deleted or changed since: try the next one
            continue
    return None
