"""Codec comparison report: EnCodec at each bandwidth against mel + Griffin-Lim at each mel size.

For one audio file, every method goes through the store exactly as a user's data would: codes
entries (:func:`extract_codes`) and mel entries (:func:`extract_mel`). Each entry is scored against
the original with :func:`score_audio` (codes decoded with the entry's model, mel inverted with
Griffin-Lim from a seeded phase), on the entry's own TR grid, kept as ``quality`` entries whose
``degraded`` source is the entry's key, so a rerun is all cache hits. The report directory gets

- ``compare.csv`` and ``compare.md``: method, setting, bitrate (kbps: EnCodec's nominal bandwidth;
  mel: float32 values x bands x frames/s, uncompressed), bytes the entry takes in the store per
  minute of audio (compressed, measured on disk), ``embedding_snr_db`` (EnCodec rows: the encoder's
  output against its quantised value, the entry's codes dequantised; it rises with the bandwidth
  whatever the weights, where a random-weight decoder's audio hardly changes: its output is mostly
  its own biases) and every metric;
- ``compare.png``: spectrograms of the original, EnCodec at each bandwidth and Griffin-Lim at each
  mel size side by side, and each metric against bitrate.

A model whose reconstruction at its highest compared bandwidth has SI-SDR below -10 dB (a decoded
signal that hardly resembles its input; a trained waveform codec is far above that) is treated as
untrained, e.g. the random-weight test model (measured: -54 dB on speech, -66 dB on tones): the
report's first line says so and the report claims nothing about quality.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["CompareReport", "compare_codecs", "UNTRAINED_SI_SDR_DB"]

UNTRAINED_SI_SDR_DB = -10.0
_COLUMNS = ("method", "setting", "bitrate_kbps", "bytes_per_audio_minute", "embedding_snr_db")


@dataclass
class CompareReport:
    """What :func:`compare_codecs` wrote: the table rows, the files, and the verdict on the model."""

    rows: list[dict] = field(default_factory=list)
    csv: Path | None = None
    markdown: Path | None = None
    png: Path | None = None
    untrained: bool = False
    first_line: str = ""


def _entry_bytes(store, entry) -> int:
    root = Path(store.root) / entry.path
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _row(method, setting, kbps, nbytes, duration_s, result, variables) -> dict:
    row = {"method": method, "setting": setting, "bitrate_kbps": round(float(kbps), 3),
           "bytes_per_audio_minute": int(round(nbytes * 60.0 / duration_s))}
    for v in variables:
        x = result.metrics.get(v, float("nan"))
        row[v] = None if x is None or not np.isfinite(x) else round(float(x), 4)
    row["quality_key"] = result.entry.key if result.entry is not None else None
    return row


def _plot_trs(entry, seconds: float) -> str:
    """The first TRs covering ``seconds`` (the spectrogram panel), as "0:k"."""
    return f"0:{max(1, min(int(entry.attrs['n_trs']), int(np.ceil(seconds / float(entry.attrs['tr_s'])))))}"


def _encoder_output(codec, audio) -> np.ndarray | None:
    """(frame, dim) float32: the encoder's output for the whole file.

    A normalised, chunked model (48 kHz): the outputs of its chunks, each divided by its scale as the
    model encodes it, concatenated in chunk order (as :func:`_entry_quantised` orders the codes).
    """
    import torch

    from ..audio.load import load_audio
    from ..codec.encodec import aligned_tensor, reproducible_torch
    from ..codec.normalised import model_chunking

    y, _ = load_audio(audio, codec.sample_rate_hz, channels=codec.channels)
    ch = model_chunking(codec)
    pieces = [y] if ch is None else [y[:, s: s + ch.length] for s in ch.starts(y.shape[-1])]
    out = []
    with reproducible_torch(), torch.inference_mode():
        for p in pieces:
            x = aligned_tensor(p)[None]
            if ch is not None and ch.normalize:  # as EncodecModel._encode_frame
                x = x / ((torch.sum(x, 1, keepdim=True) / x.shape[1]).pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8)
            out.append(codec.model.encoder(x)[0].T.numpy())
    return np.concatenate(out)


def _entry_quantised(store, entry, codec) -> np.ndarray:
    """(frame, dim): the entry's codes dequantised, in stream order (a chunked entry: chunk by chunk)."""
    from ..grid import from_tr
    from ..features.quantise import dequantise

    ds = store.open(entry)
    if "chunk_stride_samples" in entry.attrs:
        from ..features.codes_normalised import entry_chunks

        codes = np.concatenate([c for c, _ in entry_chunks(ds)], axis=1)
    else:
        codes = from_tr(ds["codes"].values, ds["n_frames"].values)
    return dequantise(codes.astype(np.int64), model=codec)


def _embedding_snr_db(store, entry, codec, emb) -> float | None:
    """10 log10(|E|^2 / |E - Q|^2), dB: E the encoder output, Q its quantised value (the entry's codes dequantised).

    What a bandwidth buys inside the codec, for any weights (the audio metrics of a random-weight
    decoder do not move with the bandwidth: its output is mostly its own biases).
    """
    if emb is None:
        return None
    q = _entry_quantised(store, entry, codec)
    n = min(len(q), len(emb))
    e, err = emb[:n].astype(np.float64), emb[:n].astype(np.float64) - q[:n]
    den = float(np.sum(err ** 2))
    return None if n == 0 or den == 0.0 else round(10.0 * np.log10(float(np.sum(e ** 2)) / den), 4)


def _encodec_rows(store, audio, codec, model, bandwidths, grid, params, info, work, scheduler):
    from ..codec.encodec import CodecParams
    from .compare_plot import SHOW_S
    from ..features.codes import decode_entry, extract_codes
    from .run import score_audio

    rows, decoded = [], []
    emb = _encoder_output(codec, audio)
    for bw in bandwidths:
        entry = extract_codes(store, audio, CodecParams(model=model, bandwidth_kbps=bw), grid).entry
        # the codes entry itself is the degraded source: decoded on its own grid, cached by its key
        r = score_audio(audio, entry, store=store, params=params, align=True, model=model, scheduler=scheduler)
        rows.append(_row("encodec", f"{bw:g} kbps", bw, _entry_bytes(store, entry), info.duration_s, r,
                         params.variables))
        rows[-1]["embedding_snr_db"] = _embedding_snr_db(store, entry, codec, emb)
        wav = decode_entry(store, entry, Path(work) / f"encodec_{bw:g}kbps.wav", trs=_plot_trs(entry, SHOW_S),
                           model=model)
        decoded.append((f"EnCodec {bw:g} kbps", wav))
    return rows, decoded


def _mel_rows(store, audio, n_mels_list, grid, params, info, work, scheduler):
    import soundfile as sf

    from .compare_plot import SHOW_S
    from ..grid import parse_tr_range
    from ..grid import from_tr
    from ..features.mel import MelParams, extract_mel
    from .run import score_audio
    from .sources import GRIFFIN_LIM, griffin_lim

    rows, decoded = [], []
    for n in n_mels_list:
        mp = MelParams(n_mels=n)  # n_mels > 1025 (n_fft 2048): ParameterError before any work
        entry = extract_mel(store, audio, mp, grid).entry
        r = score_audio(audio, entry, store=store, params=params, align=True, scheduler=scheduler)
        kbps = n * float(mp.frame_rate) * 32 / 1000  # float32 values
        rows.append(_row("mel+griffin-lim", f"{n} mels", kbps, _entry_bytes(store, entry), info.duration_s, r,
                         params.variables))
        part = store.open(entry).isel(tr=parse_tr_range(_plot_trs(entry, SHOW_S), int(entry.attrs["n_trs"])))
        y = griffin_lim(entry.attrs, from_tr(part["mel"].values, part["n_frames"].values), GRIFFIN_LIM["n_iter"],
                        GRIFFIN_LIM["seed"])
        wav = Path(work) / f"mel{n}_griffinlim.wav"
        sf.write(str(wav), y, mp.sample_rate_hz, subtype="FLOAT", format="WAV")
        decoded.append((f"Griffin-Lim {n} mels", wav))
    return rows, decoded


def _verdict(rows: list[dict], model: str) -> tuple[bool, str]:
    enc = [r for r in rows if r["method"] == "encodec"]
    top = max(enc, key=lambda r: r["bitrate_kbps"])
    si = top.get("si_sdr_db")
    if "si_sdr_db" not in top:
        return False, (f"Codec comparison with model {model} (SI-SDR not computed, so whether its weights are "
                       "trained was not checked): measured on one file; the table claims nothing beyond it.")
    if si is None or si < UNTRAINED_SI_SDR_DB:
        return True, (f"RANDOM-WEIGHT (UNTRAINED) MODEL {model}: EnCodec at {top['setting']} reconstructs with "
                      f"SI-SDR {si} dB (below {UNTRAINED_SI_SDR_DB:g} dB); these numbers test the pipeline only "
                      "and say nothing about EnCodec's audio quality.")
    return False, (f"Codec comparison with model {model}: measured on one file; see the table for every metric "
                   "(higher is better except lsd_db and mel_distance_db).")


def compare_codecs(audio: str | os.PathLike, out_dir: str | os.PathLike, model: str = "facebook/encodec_24khz",
                   bandwidths: Sequence[float] | None = None, n_mels: Sequence[int] = (64, 128, 512),
                   store=None, params=None, tr_s: float = 1.5, scheduler: Any = None) -> CompareReport:
    """Compare EnCodec bandwidths with mel + Griffin-Lim on ``audio``; write CSV, Markdown and PNG.

    Parameters
    ----------
    audio : wav/flac/ogg file
    out_dir : report directory (created)
    model : EnCodec hub name or save_pretrained directory
    bandwidths : kbps to compare (default: every bandwidth the model offers)
    n_mels : mel sizes for the Griffin-Lim path (MelParams defaults otherwise: 22.05 kHz, n_fft 2048, hop 512)
    store : Store for the entries (default: ``out_dir/store``, so a rerun is all cache hits)
    params : QualityParams (default: every metric)
    tr_s : TR of the entries (per-TR scores are kept in the quality entries)
    scheduler : where the per-TR scoring tasks run (``score_audio``'s ``scheduler``; None: its default)

    Returns
    -------
    CompareReport
    """
    from ..audio.load import audio_info
    from ..codec.encodec import load_codec
    from ..grid import TrGrid
    from .metrics import QualityParams
    from ..store.core import open_store

    info = audio_info(audio)
    params = params or QualityParams()
    codec = load_codec(model)
    bws = [float(b) for b in (bandwidths or codec.bandwidths)]
    for b in bws:
        codec.n_codebooks(b)  # an unsupported bandwidth: error before any work
    grid = TrGrid(tr_s)
    out = Path(out_dir)  # created only once every input checked out: a refused report leaves no folder
    out.mkdir(parents=True, exist_ok=True)
    store = store or open_store(out / "store")
    with tempfile.TemporaryDirectory(prefix="giblet_compare_") as work:
        rows, dec = _encodec_rows(store, audio, codec, model, bws, grid, params, info, work, scheduler)
        mrows, mdec = _mel_rows(store, audio, [int(n) for n in n_mels], grid, params, info, work, scheduler)
        rows += mrows
        untrained, first = _verdict(rows, str(model))
        rep = CompareReport(rows=rows, untrained=untrained, first_line=first)
        rep.csv, rep.markdown = _write_tables(out, rows, params.variables, first, info)
        from .compare_plot import plot_report

        rep.png = plot_report(out / "compare.png", audio, dec + mdec, rows, params.variables, first)
    return rep


def _write_tables(out: Path, rows: list[dict], variables, first_line: str, info) -> tuple[Path, Path]:
    cols = [*_COLUMNS, *variables]
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*cols, "quality_key"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in [*cols, "quality_key"]})
    lines = [first_line, "",
             f"Source: {Path(info.path).name}, {info.duration_s:.2f} s at {info.sample_rate_hz} Hz. "
             "bitrate: EnCodec nominal bandwidth; mel: float32 x bands x frames/s, uncompressed. "
             "bytes/audio minute: the entry on disk (compressed). embedding_snr_db: the encoder's output against its "
             "quantised value (the entry's codes), what the bandwidth buys inside the codec for any weights; blank for "
             "mel. Undefined metrics are blank.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    return out / "compare.csv", out / "compare.md"
