"""The 48 kHz stereo model: our extract path against the model's own whole-file ``EncodecModel.encode``.

    python bench/encode48.py [--seconds 60,600] [--bandwidth 6] [--model DIR] [--modes extract,model,model1]
                             [--profile] [--chunk-threads]

Each path runs in its own subprocess (so peak RSS is its own) on the same synthetic stereo stimulus
(a 48 kHz PCM16 wav) and the same model (default: a random-weight model of the real 48 kHz
architecture -- 32 filters, 128-dim codebooks, normalised 1 s chunks with 1 % overlap -- saved once
under the system temp folder):

``extract``  ``extract_codes``: hash, load, encode one model chunk at a time, lay frames on the TR grid, write the entry
``model``    load the file (as the package does) and make one ``EncodecModel.encode`` call (oneDNN off, as the
             package encodes), on torch's default intra-op threads (one per core)
``model1``   the same call with ``torch.set_num_threads(1)``: the model's own output depends on the thread
             count (a chunk's scale is a mean, whose last bit torch rounds by the thread count; a scale one
             bit apart can flip a code), so "equal bit for bit" is to the model run on one thread, as the
             package runs every chunk

Codes and scales of every chunk are compared bit for bit. CPU time is the process's (all threads);
on a shared machine only the CPU-time ratio is comparable, so the load average is printed beside it.
``--chunk-threads`` also encodes every chunk with the model's own ``_encode_frame`` on 1 and on 2 threads and
says which scales and codes differ (:func:`chunk_threads`).
``--profile`` runs the extract path under cProfile and prints where its time went, split into the
model's own forward calls and everything else.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchjson: the shared bench helpers
from benchjson import cpu_s as _cpu_s, peak_rss as _peak_rss  # noqa: E402

GIB = 1024**3
SR = 48000


def model_dir() -> str:
    """A random-weight model of the real 48 kHz architecture (only the weights are random)."""
    from giblet_store.testing import STEREO_48KHZ, save_test_model

    d = Path(tempfile.gettempdir()) / "giblet-bench-encodec48-real-arch-v1"
    if not (d / "config.json").exists():
        narrow = ("num_filters", "hidden_size", "codebook_dim")
        save_test_model(d, seed=0, **{k: v for k, v in STEREO_48KHZ.items() if k not in narrow})
    return str(d)


def worker(mode: str, model: str, bandwidth: float, wav: str, out: str, profile: bool) -> None:
    import torch

    from giblet_store.audio.load import load_audio
    from giblet_store.codec.encodec import load_codec, reproducible_torch

    codec = load_codec(model)
    base = _peak_rss()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), _cpu_s()
    if mode in ("model", "model1"):
        if mode == "model1":
            torch.set_num_threads(1)
        audio, _ = load_audio(wav, SR, 2)
        with reproducible_torch(), torch.inference_mode():
            enc = codec.model.encode(torch.from_numpy(audio)[None], bandwidth=bandwidth)
        n_last = enc.audio_codes.shape[-1] - enc.last_frame_pad_length
        chunks = [c[0].numpy().astype(np.int16) for c in enc.audio_codes]
        chunks[-1] = chunks[-1][:, :n_last]
        scales = np.array([float(s) for s in enc.audio_scales], np.float32)
        np.save(out + ".scales1.npy", _one_thread_scales(audio))  # not timed (after the encode)
    else:
        from giblet_store import CodecParams, TrGrid, extract_codes, open_store
        from giblet_store.features.codes_normalised import entry_chunks

        store = open_store(tempfile.mkdtemp() + "/store")
        entry = extract_codes(store, wav, CodecParams(model, bandwidth), TrGrid(1.5)).entry
    dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
    if mode == "extract":
        got = entry_chunks(entry.open())  # read back for the comparison (not timed)
        chunks, scales = [c for c, _ in got], np.array([s for _, s in got], np.float32)
    if prof is not None:
        prof.disable()
        _print_profile(prof)
    np.savez(out, scales=scales, **{f"c{k}": c for k, c in enumerate(chunks)})
    print(json.dumps({"seconds": dt, "cpu_s": cpu, "peak_rss": _peak_rss(), "rss_before": base,
                      "chunks": len(chunks)}))


def _one_thread_scales(audio: np.ndarray) -> np.ndarray:
    """Each chunk's scale as ``EncodecModel._encode_frame`` computes it, on one torch intra-op thread."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = []
        for s in range(0, audio.shape[-1], 47520):
            x = torch.tensor(audio[:, s: s + 48000])[None]
            out.append(float((torch.sum(x, 1, keepdim=True) / 2).pow(2).mean(dim=-1).sqrt() + 1e-8))
    finally:
        torch.set_num_threads(saved)
    return np.array(out, np.float32)


def _print_profile(prof) -> None:
    """Own time of the heaviest functions, to stderr: the model's forward passes and the rest."""
    import pstats

    st = pstats.Stats(prof)
    rows = sorted(((v[2], k) for k, v in st.stats.items()), reverse=True)  # (tottime, (file, line, name))
    total = sum(t for t, _ in rows)
    print(f"profile: {total:.2f} s own time in all functions; the top 25:", file=sys.stderr)
    for t, (f, line, name) in rows[:25]:
        print(f"  {t:8.3f} s  {name}  ({Path(f).name}:{line})", file=sys.stderr)


def _run(mode: str, a, model: str, wav: Path, tmp: Path, seconds: float) -> dict | None:
    out = tmp / f"{mode}-{seconds:g}.npz"
    cmd = [sys.executable, __file__, "--worker", mode, "--model", model, "--bandwidth", str(a.bandwidth),
           "--wav", str(wav), "--out", str(out)] + (["--profile"] if a.profile and mode == "extract" else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if a.profile and mode == "extract":
        print(proc.stderr[-6000:])
    if proc.returncode != 0:
        print(f"{mode}: failed (exit {proc.returncode}): {proc.stderr[-800:]}")
        return None
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["load"] = os.getloadavg()[0]
    with np.load(out) as z:
        r["scales"] = z["scales"]
        r["codes"] = [z[f"c{k}"] for k in range(r["chunks"])]
    if mode == "model":
        r["scales1"] = np.load(str(out) + ".scales1.npy")
    return r


def chunk_threads(wav: Path, model: str, bandwidth: float) -> None:
    """The model's own ``_encode_frame`` of every chunk on 1 vs 2 intra-op threads (oneDNN off): which scales
    and codes differ. Chunks whose scale differs are screened on one thread (the chunk divided by each
    scale), and those whose codes change are confirmed with ``_encode_frame`` on 1 and on 2 threads."""
    import torch

    from giblet_store.audio.load import load_audio
    from giblet_store.codec.encodec import load_codec, reproducible_torch

    m = load_codec(model).model
    audio, _ = load_audio(str(wav), SR, 2)
    x = torch.from_numpy(np.ascontiguousarray(audio))[None]

    def scale(fr):  # as EncodecModel._encode_frame
        return (torch.sum(fr, 1, keepdim=True) / fr.shape[1]).pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8

    starts, n_scales, flipped = range(0, x.shape[-1], 47520), 0, []
    saved = torch.get_num_threads()
    try:
        with reproducible_torch(), torch.inference_mode():
            for k, s in enumerate(starts):
                fr = x[..., s: s + 48000]
                torch.set_num_threads(1)
                s1 = scale(fr)
                torch.set_num_threads(2)
                s2 = scale(fr)
                if torch.equal(s1, s2):
                    continue
                n_scales += 1
                torch.set_num_threads(1)
                if torch.equal(*(m.quantizer.encode(m.encoder(fr / v), bandwidth) for v in (s1, s2))):
                    continue
                c1, _ = m._encode_frame(fr, bandwidth)
                torch.set_num_threads(2)
                c2, _ = m._encode_frame(fr, bandwidth)
                if not torch.equal(c1, c2):
                    flipped.append((k, int((c1 != c2).sum()), int(c1.numel())))
    finally:
        torch.set_num_threads(saved)
    print(f"the model's own chunks, 1 vs 2 threads: scales differ in {n_scales} of {len(starts)}; codes differ in "
          f"{len(flipped)} (chunk, codes changed, codes): {flipped}")


def _stimulus(path: Path, seconds: float) -> Path:
    """A synthetic 48 kHz stereo PCM16 wav, written a minute at a time."""
    import soundfile as sf

    from giblet_store.testing import synth_audio

    with sf.SoundFile(str(path), "w", SR, 2, subtype="PCM_16") as f:
        done, i = 0.0, 0
        while done < seconds:
            block = min(60.0, seconds - done)
            x = synth_audio(block, SR, seed=7 + i, channels=2)
            x[1] *= 0.6
            f.write(x.T)
            done, i = done + block, i + 1
    return path


def _same_codes(x: dict, y: dict) -> tuple[int, int]:
    """(chunks whose codes are equal bit for bit, chunks) of two runs."""
    if len(x["codes"]) != len(y["codes"]):
        return 0, max(len(x["codes"]), len(y["codes"]))
    return sum(bool(np.array_equal(p, q)) for p, q in zip(x["codes"], y["codes"])), len(x["codes"])


def _report_threads(e: dict | None, m: dict | None, m1: dict | None) -> None:
    """The model's own call on default threads vs on one thread, and ours vs each."""
    for name, x, y in (("model (default threads) vs model1 (1 thread)", m, m1), ("extract vs model1", e, m1),
                       ("extract vs model (default threads)", e, m)):
        if x and y:
            eq, n = _same_codes(x, y)
            s_eq = int((x["scales"] == y["scales"]).sum()) if x["scales"].shape == y["scales"].shape else 0
            print(f"{name}: codes equal in {eq} of {n} chunks, scales equal in {s_eq} of {len(y['scales'])}")


def _report(seconds: float, a, results: dict) -> None:
    e, m = results.get("extract"), results.get("model")
    _report_threads(e, m, results.get("model1"))
    print(f"\n{seconds:g} s of 48 kHz stereo, {a.bandwidth:g} kbps")
    print(f"{'':10s}{'wall s':>10s}{'CPU s':>10s}{'peak RSS GiB':>15s}{'load avg':>10s}")
    for name, r in results.items():
        if r:
            print(f"{name:10s}{r['seconds']:10.2f}{r['cpu_s']:10.2f}{r['peak_rss'] / GIB:15.2f}{r['load']:10.1f}")
    if e and m:
        same = len(e["codes"]) == len(m["codes"]) and all(np.array_equal(x, y) for x, y in zip(e["codes"], m["codes"]))
        eq = int((e["scales"] == m["scales"]).sum()) if e["scales"].shape == m["scales"].shape else 0
        rel = float(np.max(np.abs(e["scales"] / m["scales"] - 1))) if eq or e["scales"].shape == m["scales"].shape \
            else float("nan")
        print(f"codes equal bit for bit: {same}; scales equal to the model's call: {eq} of {len(m['scales'])} "
              f"bit for bit (max relative difference {rel:.1e}; its mean rounds by thread count); equal to its "
              f"scales on one thread: {np.array_equal(e['scales'], m['scales1'])}")
        print(f"throughput extract / model: {m['cpu_s'] / e['cpu_s']:.2f}x by CPU time, "
              f"{m['seconds'] / e['seconds']:.2f}x by wall time (targets: >= 1.0x at 60 s, >= 1.2x at 600 s)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", default="60,600", help="comma-separated stimulus lengths")
    p.add_argument("--bandwidth", type=float, default=6.0)
    p.add_argument("--model", default=None)
    p.add_argument("--modes", default="extract,model", help="of extract, model, model1 (comma-separated)")
    p.add_argument("--profile", action="store_true", help="cProfile the extract path (its own time per function)")
    p.add_argument("--chunk-threads", action="store_true",
                   help="also: the model's own chunk encode on 1 vs 2 threads, which scales and codes differ")
    p.add_argument("--worker", default=None)
    p.add_argument("--wav", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.model, a.bandwidth, a.wav, a.out, a.profile)
    model = a.model or model_dir()
    with tempfile.TemporaryDirectory(prefix="bench_encode48_") as d:
        tmp = Path(d)
        for seconds in (float(s) for s in a.seconds.split(",")):
            wav = _stimulus(tmp / f"stim{seconds:g}.wav", seconds)
            results = {}
            for m in filter(None, a.modes.split(",")):  # --modes "" --chunk-threads: only the per-chunk check
                results[m] = r = _run(m, a, model, wav, tmp, seconds)
                if r:  # as each finishes: a long run shows its progress
                    print(f"{m} ({seconds:g} s): {r['cpu_s']:.1f} CPU s, {r['seconds']:.1f} s wall", flush=True)
            _report(seconds, a, results)
            if a.chunk_threads:
                chunk_threads(wav, model, a.bandwidth)


if __name__ == "__main__":
    main()
