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
from ..errors import AudioError, DiskFullError
from ..store.hashing import HashedFile, SourceChangedError, changed_message
from ..store.disk_full import is_disk_full
from .sink import SampleSink, anonymous_file, no_room_for_samples

__all__ = ["AudioInfo", "load_audio", "audio_info", "mix_channels", "write_wav", "wav_writer", "ChannelsMixedWarning",
           "anonymous_file", "check_claim_fits"]

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
    #: soundfile's format and subtype (``WAV``/``PCM_16``, ``OGG``/``VORBIS`` ...): is the length a fact or a claim
    subtype: str | None = None
    file_format: str | None = None

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

    from .wavcheck import check_ogg_single, check_readable, check_wav_complete

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
        info = sf.info(os.fsencode(p))  # bytes: a name that is not UTF-8 still opens (not a detour to PyAV)
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
    check_sample_rate(p, int(info.samplerate), int(info.frames))
    check_wav_complete(p, int(info.samplerate))
    check_ogg_single(p, info.format)
    if info.format == "FLAC":  # WAV: check_wav_complete; FLAC's STREAMINFO total is a claim
        check_declared_length(p, int(info.frames), int(info.samplerate))
    check_claim_fits(p, int(info.frames), int(info.samplerate), int(info.channels), info.format, info.subtype)
    return AudioInfo(str(p), int(info.samplerate), int(info.channels), int(info.frames), subtype=info.subtype,
                     file_format=info.format)


#: bytes one sample of each uncompressed soundfile subtype takes: a file of N bytes holds at most N / (bytes x channels)
PCM_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "ULAW": 1,
             "ALAW": 1}

#: formats whose samples are compressed whatever soundfile's subtype says (a FLAC's subtype is PCM_16, its bit depth)
COMPRESSED_FORMATS = frozenset({"FLAC", "OGG", "MP3", "MPEG"})

#: most sample frames one byte of a compressed file can decode to: FLAC's largest block (65,535 samples) of a
#: constant signal takes more than one byte; lossy codecs (MP3, Vorbis, Opus) spend far more per frame
MAX_FRAMES_PER_BYTE = 65536


def check_claim_fits(path, frames: int, sample_rate_hz: int, channels: int, fmt: str, subtype: str) -> None:
    """Refuse a header whose length (``frames``) is more than a file of this size and subtype can hold.

    Uncompressed samples take a known number of bytes; compressed ones at least 1/:data:`MAX_FRAMES_PER_BYTE`
    of one. A 1 KB MP3 whose Xing header claims 10^12 frames (14,000 h: 4.5 TiB of float32) is refused
    here, before any buffer is sized from it.
    """
    size = os.path.getsize(path)
    per = None if fmt in COMPRESSED_FORMATS else PCM_BYTES.get(subtype)
    most = size // (per * max(channels, 1)) if per else size * MAX_FRAMES_PER_BYTE
    if frames > most:
        how = f"{per} byte(s) per sample" if per else f"at most {MAX_FRAMES_PER_BYTE:,} samples per byte"
        raise AudioError(
            f"{str(path)!r}: its {fmt} header declares {frames} samples at {sample_rate_hz} Hz "
            f"({frames / max(sample_rate_hz, 1) / 3600:.3g} h), but the {size:,}-byte file holds at most {most:,} "
            f"({subtype}, {how}); its header is damaged or the file is truncated. Re-export or re-download it")


def check_declared_length(path, frames: int, sample_rate_hz: int) -> None:
    """Seek to the last sample a (FLAC) header declares: a file that ends before it is refused before
    a buffer the declared size is allocated (a 41 KB FLAC may declare 795 h, 256 GiB of float32)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(frames - 1)
            got = len(f.read(1, dtype="float32"))
    except Exception as exc:  # LibsndfileError "Internal psf_fseek() failed", RuntimeError
        got, why = 0, f" ({exc})"
    else:
        why = ""
    if got != 1:
        raise AudioError(
            f"{str(path)!r}: its header declares {frames} samples at {sample_rate_hz} Hz "
            f"({frames / sample_rate_hz / 3600:.3g} h) but the {os.path.getsize(path):,}-byte file ends before the "
            f"last of them{why}; the file is truncated or its header is damaged. Re-export or re-download it")


#: Lowest sample rate read as audio: below it a header's rate is damage (a "1 Hz" file of two samples
#: would become 2 s of audio), not a recording.
MIN_SAMPLE_RATE_HZ = 1000


def check_sample_rate(path, sample_rate_hz: int, frames: int) -> None:
    """Refuse a header whose sample rate no recording has (below :data:`MIN_SAMPLE_RATE_HZ`)."""
    if sample_rate_hz < MIN_SAMPLE_RATE_HZ:
        raise AudioError(
            f"{str(path)!r} declares {sample_rate_hz} Hz ({frames} samples = {frames / max(sample_rate_hz, 1):g} s); "
            f"audio is sampled at {MIN_SAMPLE_RATE_HZ} Hz or more (speech 8-16 kHz, music 44.1-48 kHz), so the "
            "header is damaged. Re-export the file with its real sample rate")


def _container_info(path, audio_stream: int | None) -> AudioInfo:
    from .container import probe_container

    c = probe_container(path, audio_stream)
    n = round((c.duration_s or 0.0) * c.sample_rate_hz)  # unknown: 1 (the decode gives the real length)
    check_sample_rate(path, int(c.sample_rate_hz), int(n))
    return AudioInfo(str(path), c.sample_rate_hz, c.channels, max(int(n), 1), c.stream, max(c.start_s, 0.0),
                     "pyav", c.codec, c.format)


def _load_container(path, sample_rate_hz: int, channels: int, out, audio_stream, source) -> tuple[np.ndarray, AudioInfo]:
    from .container import decode_container

    audio, c, offset_s, n_source = decode_container(path, sample_rate_hz, channels, audio_stream, out, source)
    info = AudioInfo(str(path), c.sample_rate_hz, c.channels, n_source, c.stream, offset_s, "pyav", c.codec, c.format)
    return audio, info


def load_audio(
    path: str | os.PathLike, sample_rate_hz: int, channels: int = 1, out: str | os.PathLike | None = None,
    audio_stream: int | None = None, source: "HashedFile | None" = None, purpose: str = "encode",
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
    out : folder, optional
        Write the samples to a nameless file in this folder (:func:`anonymous_file`) and return a
        read-only memory map of it (resident memory does not grow with the file's length; nothing is
        left in the folder, even when the process is killed).
    audio_stream : int, optional
        Container stream index (read with PyAV); default: soundfile, else the default audio stream.
    source : HashedFile, optional
        ``path`` opened and hashed (:class:`giblet_store.store.hashing.HashedFile`): the samples are
        decoded from exactly the bytes it hashed, or :class:`~giblet_store.store.hashing.SourceChangedError`.
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
    with _hashed_bytes_only(source):
        if info.reader != "soundfile":
            return _load_container(path, sample_rate_hz, channels, out, audio_stream, source)
        return _load_soundfile(path, info, sample_rate_hz, channels, out, source)


@contextlib.contextmanager
def _hashed_bytes_only(source):
    """Decoding through ``source``: a block that changed since it was hashed is the error, whatever the
    decoder made of it (it reads as the end of the file: a shorter result, or a "corrupt" file)."""
    try:
        yield
    except Exception:
        if source is not None:
            source.raise_if_changed()
        raise
    if source is not None:
        source.raise_if_changed()


def _load_soundfile(path, info: AudioInfo, sample_rate_hz: int, channels: int, out, source):
    """Uncompressed audio into one buffer of the size its header gives (bounded by the file's size:
    :func:`check_claim_fits`); compressed audio into a :class:`SampleSink` that grows with what decodes."""
    n_out = int(round(info.n_samples * sample_rate_hz / info.sample_rate_hz))
    exact = info.subtype in PCM_BYTES and info.file_format not in COMPRESSED_FORMATS
    tmp = buf = sink = None
    if exact:
        tmp = None if out is None else anonymous_file(out)
        if tmp is not None:
            try:
                reserve(tmp, n_out * channels * 4, path, out)  # a full disk says so now, not as SIGBUS in the map
            except BaseException:
                tmp.close()
                raise
        shape = (n_out, channels)
        buf = np.zeros(shape, np.float32) if tmp is None else np.memmap(tmp, np.float32, "w+", shape=shape)
    else:
        sink = SampleSink(channels, None if out is None else os.fspath(out), str(path))
    try:
        try:
            n_read = _read_resampled(path, info, sample_rate_hz, channels, buf if exact else sink, source)
        except Exception as exc:
            if isinstance(exc, (AudioError, SourceChangedError, DiskFullError)):
                raise
            hours = info.n_samples / info.sample_rate_hz / 3600
            raise AudioError(
                f"could not decode {str(path)!r} ({exc}); its header declares {info.n_samples} samples at "
                f"{info.sample_rate_hz} Hz ({hours:.3g} h) in a {os.path.getsize(path):,}-byte file, so the file is "
                "truncated or its header is damaged. Re-export or re-download it") from None
        if n_read < info.n_samples:
            raise AudioError(
                f"{str(path)!r} is truncated: its header promises {info.n_samples} samples "
                f"({info.duration_s:.3f} s) but only {n_read} could be read; re-export or repair the file"
            )
        if sink is not None:
            return sink.finish(n_out), info
    finally:
        if sink is not None:
            sink.close()  # a map made by finish keeps the (nameless) file alive
    if tmp is None:
        return np.ascontiguousarray(buf.T), info
    buf.flush()
    tmp.close()  # the map keeps the (nameless) file alive until it is dropped
    view = buf.T
    view.flags.writeable = False
    return view, info


def reserve(f, nbytes: int, path, folder) -> None:
    """Allocate ``nbytes`` of the temporary file ``f`` (in ``folder``) for the samples of ``path`` now.

    A map of a file whose blocks cannot be allocated kills the process (SIGBUS) when written;
    allocated first, a full disk or the file-size limit (``ulimit -f``) is a
    :class:`~giblet_store.errors.DiskFullError` before any sample is decoded.
    """
    try:
        os.posix_fallocate(f.fileno(), 0, max(int(nbytes), 1))
    except OSError as exc:
        if is_disk_full(exc):
            raise no_room_for_samples(exc, nbytes, path, folder) from None
        # a filesystem without fallocate (EOPNOTSUPP): the map is written as before


def _read_resampled(path, info: AudioInfo, sample_rate_hz: int, channels: int, buf, source=None) -> int:
    """Read ``path`` (through ``source`` when given) block by block, mix, resample into ``buf`` ((sample,
    channel) array, or a :class:`SampleSink`); source samples read."""
    import soundfile as sf
    import soxr

    stream = None
    if info.sample_rate_hz != sample_rate_hz:
        stream = soxr.ResampleStream(info.sample_rate_hz, sample_rate_hz, channels, dtype="float32")
    pos = n_read = 0

    def _put(block: np.ndarray) -> None:
        nonlocal pos
        if isinstance(buf, SampleSink):
            buf.put(block)
            return
        take = min(len(block), len(buf) - pos)
        if take > 0:
            buf[pos : pos + take] = block[:take]
        pos += max(take, 0)

    with sf.SoundFile(os.fsencode(path) if source is None else source.open()) as f:
        _check_header(f, info, source)
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


def _check_header(f, info: AudioInfo, source) -> None:
    """The header as decoded from the hashed bytes must say what :func:`audio_info` read at the path."""
    if source is not None and (f.samplerate, f.channels, f.frames) != (info.sample_rate_hz, info.channels,
                                                                        info.n_samples):
        raise SourceChangedError(changed_message(info.path))


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
