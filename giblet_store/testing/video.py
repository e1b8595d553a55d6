"""Small movie files made in code with PyAV, for tests and benches of :mod:`giblet_store.audio.container`.

The video is a few-pixel MPEG-4 picture (a grey level per frame); the audio is what the caller gives,
encoded as AAC (lossy, with 1024 samples of encoder priming) or PCM. ``delay_s`` starts the audio
track that long after the video, as an audio stream that starts late in a real film. mp4/m4a/mov
files get the sample rate as movie timescale, so their edit lists are sample-exact; FFmpeg's mp4
muxer declares the priming (edit list ``media_time``) only for a track that does not start late.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["write_movie"]


def _pcm16(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.dtype.kind == "f":
        a = np.clip(np.round(a * 32768.0), -32768, 32767)
    return np.ascontiguousarray(a.astype(np.int16))


def _add_audio(c, codec: str, sample_rate_hz: int, channels: int, bit_rate: int):
    layout = "mono" if channels == 1 else "stereo"
    s = c.add_stream(codec, rate=sample_rate_hz, layout=layout)
    if codec != "pcm_s16le":
        s.bit_rate = bit_rate
    return s, layout


def _encode_audio(c, stream, layout: str, x: np.ndarray, sample_rate_hz: int, delay: int, block: int) -> None:
    import av

    for i in range(0, x.shape[1], block):
        piece = x[:, i : i + block].T.reshape(1, -1)  # packed s16: (1, sample * channel)
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="s16", layout=layout)
        f.sample_rate, f.pts, f.time_base = sample_rate_hz, delay + i, Fraction(1, sample_rate_hz)
        for p in stream.encode(f):
            c.mux(p)
    for p in stream.encode(None):
        c.mux(p)


#: suffixes FFmpeg writes with its mov/mp4 muxer
MOV_SUFFIXES = {".mp4", ".m4a", ".m4v", ".mov", ".3gp"}


def _muxer_options(path, timescale: int) -> dict[str, str]:
    """The mp4 muxer writes edit lists in the movie timescale, 1/1000 s by FFmpeg's default: a late
    track's start is floored to the millisecond (at 48 kHz, 0.5 s less 1024 samples of priming lands
    32 samples early). The sample rate as movie timescale keeps it sample-exact."""
    return {"movie_timescale": str(timescale)} if Path(path).suffix.lower() in MOV_SUFFIXES else {}


def write_movie(
    path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, codec: str = "aac", delay_s: float = 0.0,
    video: bool = True, video_s: float | None = None, fps: int = 25, bit_rate: int = 96000,
    block: int = 1024, movie_timescale: int | None = None,
) -> Path:
    """Write a movie (format from the suffix: mp4, mkv, mov, ...) holding ``audio``.

    Parameters
    ----------
    audio : (channel, sample) float in [-1, 1] or int16, at ``sample_rate_hz``; 1 or 2 channels.
        A list of such arrays writes one audio stream each (streams 1, 2, ... after the video); an
        empty list writes a video without sound (give ``video_s``).
    codec : audio codec (``aac``, ``pcm_s16le``, ``libopus``, ...)
    delay_s : the audio's first sample is at this container time (whole samples)
    video : add a small video stream (before the audio stream: audio is stream 1)
    video_s : video length (s); default the audio's end
    block : samples per audio frame given to the encoder
    movie_timescale : mp4/mov edit-list ticks per second; default ``sample_rate_hz`` (sample-exact);
        1000 writes what FFmpeg writes by default

    Returns
    -------
    Path of the file written.
    """
    import av

    tracks = [_pcm16(a) for a in (audio if isinstance(audio, (list, tuple)) else [audio])]
    n = max((t.shape[1] for t in tracks), default=0)
    delay = int(round(delay_s * sample_rate_hz))
    with av.open(str(path), "w", options=_muxer_options(path, movie_timescale or sample_rate_hz)) as c:
        vs = None
        if video:
            vs = c.add_stream("mpeg4", rate=fps)
            vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
        streams = [_add_audio(c, codec, sample_rate_hz, t.shape[0], bit_rate) for t in tracks]
        for x, (a, layout) in zip(tracks, streams):
            _encode_audio(c, a, layout, x, sample_rate_hz, delay, block)
        if vs is not None:
            n_video = int(np.ceil((video_s if video_s is not None else (delay + n) / sample_rate_hz) * fps))
            for k in range(n_video):
                img = np.full((24, 32, 3), (k * 7) % 256, np.uint8)
                fr = av.VideoFrame.from_ndarray(img, format="rgb24")
                fr.pts = k
                for p in vs.encode(fr):
                    c.mux(p)
            for p in vs.encode(None):
                c.mux(p)
    return Path(path)
