"""``giblet-store demo``: the main job on a bundled default stimulus, offline if need be."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ..errors import ModelError

__all__ = ["run_demo", "random_model_dir", "example_model", "add_demo"]

DEMO_SECONDS = 30.0
RANDOM_MODEL = "random-encodec-24khz-seed0-v2"  # save_test_model(seed=0), in the user cache


def random_model_dir() -> Path:
    """A random-weight EnCodec (24 kHz architecture, filled codebooks) saved once in the user cache."""
    from ..testing import save_test_model

    from ..codec.registry import cache_dir

    root = cache_dir()
    d = root / RANDOM_MODEL
    if not (d / "config.json").exists():
        tmp = Path(tempfile.mkdtemp(dir=root.mkdir(parents=True, exist_ok=True) or root))
        save_test_model(tmp, seed=0)
        try:
            os.replace(tmp, d)
        except OSError:
            if not (d / "config.json").exists():  # not another process that made it first: a real failure
                raise
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)  # ours is a duplicate of theirs
    return d


def example_model(model: str | None = None, hub: str | None = None) -> str:
    """The model an example runs with, said in the first line it prints (the same rule for every example).

    Parameters
    ----------
    model : str or None
        What the user passed as ``--model`` (a hub name or a save_pretrained directory): used as given;
        if it cannot be loaded the example stops with the reason (stderr, exit status 2, no traceback).
    hub : str or None
        The model tried when ``model`` is None (default ``facebook/encodec_24khz``); when it cannot be
        loaded (offline, not in the local hub cache) a random-weight EnCodec of the 24 kHz architecture
        (:func:`random_model_dir`) is used instead, and the line says so.

    Returns
    -------
    str
        The model name or directory to pass on.
    """
    from ..codec.encodec import DEFAULT_MODEL, load_codec

    name = model if model is not None else (hub or DEFAULT_MODEL)
    try:
        load_codec(name)
    except ModelError as exc:
        if model is not None:
            print(f"model: {model} cannot be loaded: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        fallback = str(random_model_dir())
        print(f"model: {name} unavailable offline; using a random-weight EnCodec (codes are not meaningful) "
              f"-- pass --model DIR for real weights ({fallback})", flush=True)
        return fallback
    print(f"model: {name}", flush=True)
    return name


def _banner(text: str) -> None:
    line = "!" * 78
    print(f"\n{line}\n{text}\n{line}\n", file=sys.stderr)


def run_demo(store_path: str = "demo_store", model: str = "facebook/encodec_24khz") -> int:
    from ..codec.encodec import CodecParams, load_codec
    from ..features.codes import decode_entry, extract_codes
    from ..grid import TrGrid
    from ..store.core import open_store
    from ..testing import synth_audio, write_wav
    from .display import print_table

    try:
        load_codec(model)
    except ModelError as exc:
        _banner(
            "OFFLINE DEMO: the pretrained EnCodec weights could not be loaded\n"
            f"  ({str(exc)[:200]}...)\n"
            "Using a RANDOM-WEIGHT model of the real 24 kHz architecture (codebooks filled from\n"
            "encoder outputs). Codes, shapes and the store are real; decoded audio is NOT\n"
            "meaningful. Give --model DIR (a save_pretrained directory) for real codes."
        )
        model = str(random_model_dir())
    store = open_store(store_path)
    stim_dir = Path(store.url).parent if store.local else Path.cwd()  # beside the store, not in /tmp
    wav = write_wav(stim_dir / "demo_stimulus.wav", synth_audio(DEMO_SECONDS, 24000, seed=1), 24000)
    print(f"store: {store.url}\nstimulus: {wav} ({DEMO_SECONDS:g} s synthesised tones, noise and clicks)\n")
    for bw in (1.5, 6.0):
        r = extract_codes(store, wav, CodecParams(model=model, bandwidth_kbps=bw), TrGrid(tr_s=1.5))
        print(f"{r.entry.key}  {'created' if r.created else 'cached'}  {r.entry.path}  ({bw:g} kbps)")
    entry = store.find(kind="codes", bandwidth_kbps=6, tr_s=1.5, source_name="demo_stimulus.wav")[0]
    ds = entry.open()
    print("\nstore.find(kind='codes', bandwidth_kbps=6, tr_s=1.5)[0].open():\n")
    print(ds)
    print(f"\nframes per TR (n_frames[:6]): {ds.n_frames.values[:6].tolist()}  "
          f"(1.5 s x 75 Hz = 112.5: TRs alternate 113/112, none dropped)")
    out = decode_entry(store, entry, stim_dir / "demo_decoded_tr0-4.wav", trs="0:4", model=model)
    print(f"decoded TRs 0:4 -> {out}\n\ngiblet-store ls {store.url}\n")
    print_table(store.entries())
    return 0


def add_demo(sub) -> None:
    """Register ``giblet-store demo`` (called by :mod:`giblet_store.cli`)."""
    from .util import field_default
    from ..codec.encodec import CodecParams

    p = sub.add_parser("demo", help="encode a bundled stimulus into a local store and show it")
    p.add_argument("--store", default="demo_store",
                   help="store directory; the stimulus and decoded wav files are written beside it")
    p.add_argument("--model", default=field_default(CodecParams, "model"), help="hub name or save_pretrained directory")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    return run_demo(args.store, args.model)
