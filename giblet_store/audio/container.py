"""Audio from video and other containers (mp4, mov, mkv, webm, avi, m4a, aac, mp3, opus) with PyAV.

Soundfile stays the fast path for wav/flac/ogg (:mod:`giblet_store.audio.load`); anything it cannot read,
or any file read with an explicit ``audio_stream``, comes here. The stream is decoded packet by packet,
converted to float32, mixed to the model's channels and resampled on the fly with soxr's
``ResampleStream``, so memory stays flat in the film's length (with ``out`` the samples go to a
file-backed memory map, as for long wav files).

**Stimulus time 0 is the container's time 0** (timestamp 0). The first decoded frame's timestamp,
after FFmpeg has applied the stream's start time, edit lists and encoder-priming trims that the file
declares, is where the first sample goes: an audio track that starts 0.5 s into the video is
preceded by 0.5 s of silence (``offset_s`` = 0.5, recorded as ``audio_offset_s``); samples before
time 0 are dropped. Later frames are taken as contiguous (no gap filling). AAC-LC priming that the
file does not declare (FFmpeg's mp4 muxer for a late track, raw ADTS) is dropped, and in mp4/m4a/mov
samples past the sample table's or the edit list's end (the last AAC frame's padding) are cut; see
:class:`_Timeline`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import AudioError
from ..validate import is_integer
from .sink import SampleSink

__all__ = ["ContainerInfo", "probe_container", "decode_container"]

#: a decoded file may end this much before the duration its header declares before it counts as truncated
TRUNCATION_TOLERANCE_S = 0.25


@dataclass(frozen=True)
class ContainerInfo:
    """An audio stream of a container, as its headers describe it (before decoding).

    ``duration_s`` is the stream's declared end on the stimulus clock (its start time included),
    or None when the file does not declare one.
    """

    path: str
    stream: int  # container stream index, as ffprobe shows it (``Stream #0:N``)
    sample_rate_hz: int
    channels: int
    codec: str
    format: str
    start_s: float
    duration_s: float | None


def _av():
    try:
        import av
    except ImportError:
        raise AudioError("reading video and other containers needs PyAV: pip install av "
                         "(or the package's `video` extra), or convert the audio to flac/wav first") from None
    return av


def _open(path: str, source=None):
    av = _av()
    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file {path!r} does not exist; check the path")
    if p.is_dir():
        raise AudioError(f"{path!r} is a directory; expected an audio or video file")
    try:
        return av.open(str(p) if source is None else source.open(), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise AudioError(
            f"{path!r} cannot be opened as a media container ({exc}); the file is corrupt, truncated "
            "(an mp4 cut short loses its index) or not audio/video. Re-export or re-download it"
        ) from None


def _describe(streams) -> str:
    return ", ".join(f"#{s.index} {s.type} {s.codec_context.name}" for s in streams) or "none"


def _pick_stream(container, path: str, index: int | None):
    audio = list(container.streams.audio)
    if not audio:
        raise AudioError(
            f"{path!r} has no audio stream (streams: {_describe(container.streams)}); give a file with a "
            "soundtrack, or the separate audio file of the film"
        )
    if index is None:
        return container.streams.best("audio") or audio[0]
    if not is_integer(index):
        raise AudioError(f"audio_stream must be a stream index (an integer), got {index!r}")
    for s in audio:
        if s.index == int(index):
            return s
    listing = ", ".join(f"{s.index} ({s.codec_context.name}, {s.codec_context.channels} ch, {s.sample_rate} Hz)"
                        for s in audio)
    raise AudioError(
        f"{path!r} has no audio stream with index {index}; its audio streams are {listing} "
        f"(all streams: {_describe(container.streams)}); give one of those to --audio-stream"
    )


def _declared_duration(container, stream) -> float | None:
    """The stream's declared end (s): start + stream duration, else matroska's DURATION tag (the
    track's last timestamp as FFmpeg's muxer writes it), else None."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration is not None and stream.duration > 0:
        return start + float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            return None
    return None


def probe_container(path: str | os.PathLike, audio_stream: int | None = None, source=None) -> ContainerInfo:
    """Describe the audio stream ``audio_stream`` (default: the container's default one) of ``path``
    (read through ``source``, a :class:`~giblet_store.store.hashing.HashedFile` of it, when given).

    Raises
    ------
    AudioError
        Missing file, not a container FFmpeg can open (corrupt, truncated mp4), no audio stream, or no
        audio stream with that index.
    """
    path = os.fspath(path)
    with _open(path, source) as c:
        s = _pick_stream(c, path, audio_stream)
        cc = s.codec_context
        if not s.sample_rate or not cc.channels:
            raise AudioError(f"audio stream {s.index} of {path!r} declares no sample rate or channels; "
                             "the file is damaged; re-export it")
        start = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        return ContainerInfo(path, int(s.index), int(s.sample_rate), int(cc.channels), str(cc.name),
                             str(c.format.name), start, _declared_duration(c, s))


def _frame_samples(frame) -> np.ndarray:
    """A decoded audio frame as (sample, channel) float32 in [-1, 1], scaled as soundfile scales PCM."""
    x = frame.to_ndarray()
    ch = len(frame.layout.channels)
    x = x if frame.format.is_planar else x.reshape(-1, ch).T  # (channel, sample)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / np.float32(32768.0)
    elif x.dtype == np.int32:
        x = (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / np.float32(128.0)
    else:
        x = x.astype(np.float32, copy=False)
    return np.ascontiguousarray(x.T)


class _Feed:
    """Source-rate blocks -> mixed to ``channels`` -> soxr stream -> sink, counting source samples."""

    def __init__(self, path: str, sr_in: int, sr_out: int, channels: int, sink: SampleSink):
        import soxr

        from .channels import mix_channels

        self.path, self.sr_in, self.channels, self.sink, self.n_in = path, sr_in, channels, sink, 0
        self.mix = mix_channels
        self.rs = None if sr_in == sr_out else soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32")

    def __call__(self, block: np.ndarray) -> None:
        if not np.isfinite(block).all():
            bad = self.n_in + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise AudioError(f"{self.path!r} has NaN or infinite samples (first at {bad / self.sr_in:.3f} s); "
                             "repair or re-export the audio")
        block = self.mix(block, self.channels, self.path)
        self.n_in += len(block)
        self.sink.put(block if self.rs is None else self.rs.resample_chunk(block))

    def flush(self) -> None:
        if self.rs is not None:
            self.sink.put(self.rs.resample_chunk(np.zeros((0, self.channels), np.float32), last=True))


#: how far past the end an edit list declares samples are kept: its ticks (1 ms in FFmpeg's mp4, 1/600 s
#: in Apple's) round the end, and a real sample must never be cut (at 48 kHz: 96 samples)
EDIT_END_SLACK_S = 0.002

#: AAC-LC's encoder delay (priming) as FFmpeg's encoder writes it: one 1024-sample frame
AAC_LC_PRIMING = 1024


def _undeclared_priming(stream, first_packet) -> int:
    """Priming samples to drop that the container does not declare.

    FFmpeg trims the priming a file declares (mp4/m4a/mov edit list ``media_time``, ``iTunSMPB``,
    matroska ``CodecDelay``, Opus pre-skip, LAME headers) with ``skip_samples`` side data on the first
    packet. FFmpeg's mp4 muxer declares none when a track starts late (a positive first timestamp),
    and a raw ADTS stream cannot: then the first 1024 samples of an AAC-LC stream are the encoder's
    priming (FFmpeg's encoder delay) and are dropped, not placed. Other codecs: nothing assumed.
    """
    cc = stream.codec_context
    declared = getattr(first_packet, "has_sidedata", None)  # a PyAV without packet side data: assume none
    if cc.name != "aac" or cc.profile != "LC" or declared is None or declared("skip_samples"):
        return 0
    return AAC_LC_PRIMING


class _Timeline:
    """Places decoded blocks on the stimulus clock (source rate): the first at its timestamp, later
    ones contiguous; drops undeclared priming, samples before time 0 and, in mp4/m4a/mov, samples
    after the packets' declared end or the edit list's (end padding)."""

    def __init__(self, stream, sr: int, feed: _Feed, container_format: str = ""):
        self.sr, self.feed, self.tb = sr, feed, stream.time_base
        # the end is cut only in mp4/m4a/mov, whose sample table makes timestamps contiguous and exact
        # (ticks of 1/rate); matroska's 1 ms ticks would cut real samples, an MPEG-TS timestamp jump or
        # an mp3's duration estimated from its bit rate could cut whole stretches: taken as decoded
        self.exact = "mp4" in container_format.split(",") and self.tb is not None and self.tb * sr <= 1
        self.end: int | None = None  # the packets' declared end (samples), when exact
        self.limit = self._edit_end(stream) if self.exact else None
        self.priming: int | None = None  # undeclared priming still to drop; None before the first packet
        self.pos: int | None = None  # stimulus position of the next decoded sample
        self.offset: int | None = None  # position of the first sound sample (after the priming)

    def _edit_end(self, stream) -> int | None:
        """The end the stream declares (mp4: its edit list, in the movie's ticks, FFmpeg's 1 ms by
        default), plus EDIT_END_SLACK_S for those ticks' rounding; None when it declares none. It cuts
        the padding a sample table keeps whole (Apple's encoders store every AAC frame as 1024)."""
        if not stream.duration or stream.duration <= 0:
            return None
        end = ((stream.start_time or 0) + stream.duration) * self.tb * self.sr
        return int(round(end + EDIT_END_SLACK_S * self.sr))

    def packet(self, stream, packet) -> None:
        if self.priming is None:
            self.priming = _undeclared_priming(stream, packet)
        if packet.size == 0 or not self.exact:
            return
        if packet.pts is None or not packet.duration:
            self.exact, self.end = False, None  # an undeclared length: the end is taken as decoded
            return
        e = int(round((packet.pts + packet.duration) * self.tb * self.sr))
        self.end = e if self.end is None else max(self.end, e)

    def frame(self, frame, block: np.ndarray) -> None:
        if self.pos is None:
            t = Fraction(frame.pts) * frame.time_base if frame.pts is not None else Fraction(0)
            self.pos = round(t * self.sr)
            self.offset = self.pos + (self.priming or 0)  # the first sound sample (< 0: cut at time 0)
            if self.offset > 0:
                self.feed(np.zeros((self.offset, block.shape[1]), np.float32))
        lo = max(self.priming or 0, -self.pos, 0)
        ends = [e for e in (self.end, self.limit) if e is not None]
        hi = max(min([len(block)] + [e - self.pos for e in ends]), 0)
        self.priming = max((self.priming or 0) - len(block), 0)
        self.pos += len(block)
        if lo < hi:
            self.feed(block[lo:hi])


def _decode_frames(container, stream, path: str, feed: _Feed) -> float | None:
    """Decode ``stream`` into ``feed`` on the stimulus clock (:class:`_Timeline`); returns the offset (s)
    of its first sound sample, or None when it decoded nothing."""
    av = _av()

    sr = feed.sr_in
    line = _Timeline(stream, sr, feed, container.format.name)
    try:
        for packet in container.demux(stream):
            line.packet(stream, packet)
            for frame in packet.decode():
                if frame.sample_rate != sr:
                    raise AudioError(f"audio stream {stream.index} of {path!r} changes sample rate from {sr} "
                                     f"to {frame.sample_rate} Hz mid-stream; re-export it at one rate")
                line.frame(frame, _frame_samples(frame))
    except av.FFmpegError as exc:
        at = feed.n_in / sr
        raise AudioError(f"{path!r}: audio stream {stream.index} is corrupt at about {at:.2f} s ({exc}); "
                         "re-export or re-download the file") from None
    feed.flush()
    return None if line.offset is None else line.offset / sr


def decode_container(
    path: str | os.PathLike, sample_rate_hz: int, channels: int = 1, audio_stream: int | None = None,
    out: str | os.PathLike | None = None, source=None,
) -> tuple[np.ndarray, ContainerInfo, float, int]:
    """Decode one audio stream of a container onto the stimulus clock at ``sample_rate_hz``.

    Parameters
    ----------
    path : a container FFmpeg reads (mp4, mov, mkv, webm, avi, m4a, mp3, opus, wav, ...)
    sample_rate_hz : target rate; channels : 1 (mean of all channels) or 2 (mono duplicated)
    audio_stream : container stream index; default the container's default audio stream
    out : folder for a nameless raw float32 file of the samples; the result is then a read-only memory map of it
    source : a :class:`~giblet_store.store.hashing.HashedFile` of ``path``: every byte is read through it

    Returns
    -------
    audio : (channel, sample) float32, ``round(n_source * sample_rate_hz / source_rate)`` samples, where
        ``n_source`` counts the leading silence of the offset and every decoded sample
    info : ContainerInfo of the stream read
    offset_s : stimulus time of the stream's first sound sample, after its priming (silence before it;
        < 0: samples before time 0 were cut)
    n_source : samples on the stimulus clock at the source rate (offset included)

    Raises
    ------
    AudioError
        See :func:`probe_container`; also a stream that is corrupt, holds no samples, or ends well
        before the duration its header declares (truncated).
    """
    path = os.fspath(path)
    info = probe_container(path, audio_stream, source)
    sink = SampleSink(channels, None if out is None else os.fspath(out), path)
    try:
        with _open(path, source) as c:
            stream = c.streams[info.stream]
            feed = _Feed(path, info.sample_rate_hz, sample_rate_hz, channels, sink)
            offset_s = _decode_frames(c, stream, path, feed)
        if offset_s is None or feed.n_in == 0:
            raise AudioError(f"audio stream {info.stream} of {path!r} holds no samples; nothing to encode")
        end = feed.n_in / info.sample_rate_hz
        if info.duration_s is not None and end < info.duration_s - TRUNCATION_TOLERANCE_S:
            raise AudioError(
                f"{path!r}: audio stream {info.stream} ends at {end:.2f} s but the file declares "
                f"{info.duration_s:.2f} s; the file is truncated (an interrupted copy or download); "
                "re-export or re-download it")
        n_out = int(round(feed.n_in * sample_rate_hz / info.sample_rate_hz))
        return sink.finish(n_out), info, float(offset_s), feed.n_in
    finally:
        sink.close()
