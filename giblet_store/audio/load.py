"""Audio in: load, mix, resample exactly, and hash the source.

Files are read block by block with soundfile and resampled with a streaming soxr resampler, so
reading never holds more than the decoded output plus one block. The output is trimmed (or
zero-padded by at most a sample) to exactly ``round(n * target_sr / sr)`` samples: an extra sample
would add an EnCodec frame, and frames are what the TR grid counts.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .channels import ChannelsMixedWarning, check_channels, mix_channels
from ..errors import AudioError

__all__ = ["AudioInfo", "load_audio", "audio_info", "mix_channels", "write_wav", "wav_writer", "ChannelsMixedWarning"]

_BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class AudioInfo:
    """What the source file holds (before resampling)."""

    path: str
    sample_rate_hz: int
    channels: int
    n_samples: int
    #: containers read with PyAV (:mod:`giblet_store.audio.container`): stream index, offset of its first
    #: sample on the stimulus clock (s; included in ``n_samples`` as leading silence), codec, format
    stream: int | None = None
    offset_s: float = 0.0
    reader: str = "soundfile"
    codec: str | None = None
    container_format: str | None = None

    def container_attrs(self) -> dict:
        """Attributes of an entry made from a container (empty for files soundfile reads)."""
        if self.reader == "soundfile":
            return {}
        return {"audio_stream": self.stream, "audio_offset_s": self.offset_s, "audio_codec": self.codec,
                "container_format": self.container_format}

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz


def audio_info(path: str | os.PathLike, audio_stream: int | None = None) -> AudioInfo:
    """Describe ``path`` (soundfile; PyAV for containers and when ``audio_stream`` is given).

    For a container the length is what its headers declare (offset included); :func:`load_audio`
    returns the exact one.

    Raises
    ------
    AudioError
        The file is missing, is not a readable audio file, or holds no samples.
    """
    import soundfile as sf

    from .wavcheck import check_readable, check_wav_complete

    p = Path(path)
    if p.exists() and not p.is_dir():
        check_readable(p)  # a pipe or an unreadable file, before anything opens it
    if audio_stream is not None:
        return _container_info(path, audio_stream)
    if not p.exists():
        raise AudioError(f"audio file {str(p)!r} does not exist; check the path")
    if p.is_dir():
        raise AudioError(f"{str(p)!r} is a directory; expected an audio file (wav, flac, ogg)")
    try:
        info = sf.info(str(p))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        try:
            return _container_info(p, None)
        except AudioError as cexc:
            raise AudioError(
                f"{str(p)!r} is not an audio file soundfile can read ({exc}), nor a media file with audio "
                f"that FFmpeg reads: {cexc}"
            ) from None
    if info.frames <= 0:
        raise AudioError(f"{str(p)!r} holds no samples (zero-length audio); nothing to encode. "
                         "Give a file that holds audio")
    check_wav_complete(p, int(info.samplerate))
    return AudioInfo(str(p), int(info.samplerate), int(info.channels), int(info.frames))


def _container_info(path, audio_stream: int | None) -> AudioInfo:
    from .container import probe_container

    c = probe_container(path, audio_stream)
    n = round((c.duration_s or 0.0) * c.sample_rate_hz)  # unknown: 1 (the decode gives the real length)
    return AudioInfo(str(path), c.sample_rate_hz, c.channels, max(int(n), 1), c.stream, max(c.start_s, 0.0),
                     "pyav", c.codec, c.format)


def _load_container(path, sample_rate_hz: int, channels: int, out, audio_stream) -> tuple[np.ndarray, AudioInfo]:
    from .container import decode_container

    raw = None if out is None else os.fspath(out) + ".f32"
    audio, c, offset_s, n_source = decode_container(path, sample_rate_hz, channels, audio_stream, raw)
    info = AudioInfo(str(path), c.sample_rate_hz, c.channels, n_source, c.stream, offset_s, "pyav", c.codec, c.format)
    return audio, info


def load_audio(
    path: str | os.PathLike, sample_rate_hz: int, channels: int = 1, out: str | os.PathLike | None = None,
    audio_stream: int | None = None, purpose: str = "encode",
) -> tuple[np.ndarray, AudioInfo]:
    """Load ``path`` as float32 at ``sample_rate_hz`` with ``channels`` channels.

    Parameters
    ----------
    path : str or PathLike
        A wav, flac or ogg file (soundfile), or any container FFmpeg reads (mp4, mkv, mov, webm, avi,
        m4a, mp3, opus: PyAV, see :mod:`giblet_store.audio.container`).
    sample_rate_hz : int
        Target rate (24000 for ``facebook/encodec_24khz``).
    channels : {1, 2}
        1 mixes every channel to mono (mean); 2 keeps stereo (a mono file is duplicated); either mix
        warns (:class:`ChannelsMixedWarning`), and more than 2 channels for 2 is an error
        (:mod:`giblet_store.audio.channels`).
    out : path, optional
        Write the samples to this ``.npy`` file and return a read-only memory map of it (resident
        memory does not grow with the file's length).
    audio_stream : int, optional
        Container stream index (read with PyAV); default: soundfile, else the default audio stream.
    purpose : {"encode", "mel", "score"}, what the audio is read for (words the channel-mix warning)

    Returns
    -------
    audio : (channel, sample) float32
        Exactly ``round(info.n_samples * sample_rate_hz / info.sample_rate_hz)`` samples.
    info : AudioInfo
        The source as read.

    Raises
    ------
    AudioError
        Missing, unreadable, empty, or non-finite (NaN/inf) audio; more than 2 channels for stereo.
    """
    if channels not in (1, 2):
        raise AudioError(f"channels must be 1 (mono) or 2 (stereo), got {channels}")
    info = audio_info(path, audio_stream)
    check_channels(info.channels, channels, path, purpose)  # the channel rule: warn what is done, or refuse
    if info.reader != "soundfile":
        return _load_container(path, sample_rate_hz, channels, out, audio_stream)
    n_out = int(round(info.n_samples * sample_rate_hz / info.sample_rate_hz))
    shape = (n_out, channels)
    buf = np.zeros(shape, np.float32) if out is None else np.lib.format.open_memmap(
        os.fspath(out), mode="w+", dtype=np.float32, shape=shape)
    try:
        n_read = _read_resampled(path, info, sample_rate_hz, channels, buf)
    except Exception as exc:
        raise exc if isinstance(exc, AudioError) else AudioError(f"could not decode {str(path)!r}: {exc}") from None
    if n_read < info.n_samples:
        raise AudioError(
            f"{str(path)!r} is truncated: its header promises {info.n_samples} samples "
            f"({info.duration_s:.3f} s) but only {n_read} could be read; re-export or repair the file"
        )
    if out is None:
        return np.ascontiguousarray(buf.T), info
    buf.flush()
    del buf
    return np.load(os.fspath(out), mmap_mode="r").T, info


def _read_resampled(path, info: AudioInfo, sample_rate_hz: int, channels: int, buf: np.ndarray) -> int:
    """Read ``path`` block by block, mix, resample into ``buf`` (sample, channel); source samples read."""
    import soundfile as sf
    import soxr

    stream = None
    if info.sample_rate_hz != sample_rate_hz:
        stream = soxr.ResampleStream(info.sample_rate_hz, sample_rate_hz, channels, dtype="float32")
    pos = n_read = 0

    def _put(block: np.ndarray) -> None:
        nonlocal pos
        take = min(len(block), len(buf) - pos)
        if take > 0:
            buf[pos : pos + take] = block[:take]
        pos += max(take, 0)

    with sf.SoundFile(str(path)) as f:
        for start in range(0, info.n_samples, _BLOCK_FRAMES):
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            n_read += len(block)
            if not np.isfinite(block).all():
                bad = int(start + np.argwhere(~np.isfinite(block))[0, 0])
                raise AudioError(
                    f"{str(path)!r} has NaN or infinite samples (first at sample {bad}, "
                    f"{bad / info.sample_rate_hz:.3f} s); repair or re-export the audio"
                )
            block = mix_channels(block, channels, path)
            _put(block if stream is None else stream.resample_chunk(np.ascontiguousarray(block)))
        if stream is not None:
            _put(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True))
    return n_read


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, comment: str | None = None) -> Path:
    """Write ``audio`` (channel, sample) or (sample,) float to a float32 WAV, atomically.

    The samples go to ``PATH.tmp`` first and are renamed over ``path``, so a reader (or a crash)
    never sees half a file. ``comment`` goes to the WAV's comment string (:mod:`giblet_store.audio.start`).
    """
    data = np.asarray(audio, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    with wav_writer(path, int(sample_rate_hz), 1 if data.ndim == 1 else data.shape[1], comment) as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def wav_writer(path: str | os.PathLike, sample_rate_hz: int, channels: int, comment: str | None = None):
    """An open float32 WAV writer (``soundfile.SoundFile``) on ``PATH.tmp``, renamed over ``path`` at the end.

    Write (sample, channel) float32 blocks to it. Nothing is left behind when the block fails; a file
    that cannot be written (a full disk, a folder this process cannot write to) raises
    :class:`~giblet_store.errors.AudioError` naming it, not libsndfile's bare "System error".
    """
    import soundfile as sf

    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with sf.SoundFile(str(tmp), "w", int(sample_rate_hz), int(channels), subtype="FLOAT", format="WAV") as f:
            if comment:
                f.comment = comment  # written as the RIFF INFO comment (ICMT)
            yield f
        os.replace(tmp, out)
    except (sf.LibsndfileError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename != str(tmp):  # not this file's: a read in the block failed
            raise
        raise AudioError(f"cannot write output wav {str(out)!r}: {exc} (a full disk, or a folder you cannot write "
                         "to); free some space or choose another folder") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
