"""AAC priming and end padding (issue 20, item 5): an AAC track in mp4/m4a starts on the sample its
container declares, with the encoder's priming dropped, and ends where the encoded audio ends, not
after the decoder's last whole frame.

Tolerances: where a track starts and how long it is come from the container's tables (edit list,
sample durations), not from the lossy audio, so offsets and lengths are compared exactly. The sound
itself went through AAC (at 96 kbit/s a chirp keeps a correlation of 0.9995): it is located by cross-correlation
(best lag within 1 sample of 0, the issue's bar; a lossy peak may split between neighbours), its
correlation with the source at lag 0 must exceed 0.99, and codes may differ where the loss tips a
frame from one codeword to its neighbour (codebook 0 agreement >= 0.98, the issue's bar).
"""

import struct

import numpy as np
import pytest
import soundfile as sf

from giblet_store import CodecParams, TrGrid, extract_codes
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.audio.container import AAC_LC_PRIMING, EDIT_END_SLACK_S
from giblet_store.audio.load import load_audio
from giblet_store.testing.video import write_movie

from helpers import best_lag

SR = 48000  # AAC 48 kHz stereo, as films carry it
N = 3 * SR + 123  # not a whole number of 1024-sample AAC frames: the encoder pads the last one


@pytest.fixture(scope="module")
def sound() -> np.ndarray:
    """(2, N) float32: a rising (left) and a falling (right) chirp under a 2.5 Hz envelope, silent for
    the first 0.2 s: no period, so one sharp cross-correlation peak, and coded faithfully by AAC."""
    t = np.arange(N) / SR
    env = 0.3 * 0.5 * (1 + np.sin(2 * np.pi * 2.5 * t)) * (t > 0.2)

    def chirp(f0: float, f1: float) -> np.ndarray:
        return np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / t[-1] * t * t))

    return np.stack([env * chirp(200, 6000), env * chirp(5000, 300)]).astype(np.float32)


def _check_sound(got: np.ndarray, sound: np.ndarray, d: int) -> None:
    """``sound`` is in ``got`` from sample ``d`` on, both channels, lag 0, and nothing before it."""
    assert not got[:, :d].any()  # silence before the track: no priming placed there
    for ch in range(2):
        lag = best_lag(got[ch], np.concatenate([np.zeros(d, np.float32), sound[ch]]))
        assert abs(lag) <= 1, f"channel {ch} lands {lag} samples off"
        assert np.corrcoef(got[ch, d : d + sound.shape[1]], sound[ch])[0, 1] > 0.99


@pytest.mark.parametrize("suffix,video,delay_s", [("mp4", True, 0.5), ("mp4", True, 0.0), ("m4a", False, 0.0),
                                                  ("m4a", False, 0.5)])
def test_aac_track_starts_on_its_sample_and_ends_with_its_audio(tmp_path, sound, suffix, video, delay_s):
    movie = write_movie(tmp_path / f"m.{suffix}", sound, SR, codec="aac", delay_s=delay_s, video=video)
    got, info = load_audio(movie, SR, channels=2)
    d = int(delay_s * SR)
    assert round(info.offset_s * SR) == d and info.container_attrs()["audio_offset_s"] == delay_s
    assert info.n_samples == d + N and got.shape == (2, d + N)  # the 261 samples of end padding are gone
    _check_sound(got, sound, d)
    at24, info24 = load_audio(movie, 24000, channels=2)  # the model's rate: the same place and length
    assert info24.offset_s == info.offset_s and at24.shape[1] == round((d + N) / 2)
    assert not at24[:, : max(d // 2 - 64, 0)].any()  # the resampler's filter may ring just before the track


def test_a_millisecond_edit_list_is_honoured_to_the_sample(tmp_path, sound):
    """FFmpeg's default mp4 timescale (1/1000 s) floors a late track's start, priming included, to the
    millisecond, and declares no priming: the sound lands where the file says, up to 1 ms early."""
    movie = write_movie(tmp_path / "ms.mp4", sound, SR, codec="aac", delay_s=0.5,
                        movie_timescale=1000)
    d = SR // 2
    first_packet = (d - AAC_LC_PRIMING) * 1000 // SR * SR // 1000  # the empty edit, floored to the ms
    start = first_packet + AAC_LC_PRIMING
    assert d - start == 32  # 0.5 s less the priming is 478.67 ms; the file says 478 ms
    got, info = load_audio(movie, SR, channels=2)
    assert round(info.offset_s * SR) == start and info.n_samples == start + N
    _check_sound(got, sound, start)


def test_aac_end_padding_adds_no_tr(tmp_path, sound, model_dir, store):
    """3.0 s of audio on a 1.5 s grid is 2 whole TRs (decoded to the last whole frame it was 3.008 s: a
    third TR of 1 frame, and an fMRI run of 2 volumes warned of 1.5 s more stimulus)."""
    movie = write_movie(tmp_path / "three.m4a", sound[:, : 3 * SR], SR, codec="aac", video=False)
    with pytest.warns(ChannelsMixedWarning):  # stereo film, mono model
        e = extract_codes(store, movie, CodecParams(model=str(model_dir), bandwidth_kbps=1.5), TrGrid(tr_s=1.5)).entry
    assert e.attrs["duration_s"] == 3.0 and e.attrs["audio_offset_s"] == 0.0
    ds = store.open(e)
    assert ds.sizes["tr"] == 2 and int(ds["n_frames"].sum()) == 225  # 3.0 s x 75 frames/s


def test_codes_of_a_late_aac_track_agree_with_the_padded_wav(tmp_path, shared_data, model_dir, store):
    """A film's soundtrack (speech, AAC 128 kbit/s 48 kHz stereo, starting 0.5 s after the video): its
    codes at lag 0 match those of the same audio written as a wav padded with 0.5 s of silence (0.994
    of codebook-0 frames; 0.988 at 96 kbit/s; 0.79 when the sound sat 32 samples early)."""
    import soxr

    x, sr = sf.read(str(shared_data / "arctic_a0007.wav"), dtype="float32")
    x = soxr.resample(x, sr, SR)
    stereo = np.stack([x, 0.8 * x]).astype(np.float32)
    movie = write_movie(tmp_path / "film.mp4", stereo, SR, codec="aac", delay_s=0.5, bit_rate=128000)
    padded = tmp_path / "padded.wav"
    sf.write(str(padded), np.concatenate([np.zeros((SR // 2, 2), np.float32), stereo.T]), SR, subtype="PCM_16")
    codec, grid = CodecParams(model=str(model_dir), bandwidth_kbps=1.5), TrGrid(tr_s=1.5)
    with pytest.warns(ChannelsMixedWarning):  # stereo film, mono model: both are mixed the same way
        m, w = (extract_codes(store, p, codec, grid).entry for p in (movie, padded))
    assert m.attrs["audio_offset_s"] == 0.5 and m.attrs["duration_s"] == w.attrs["duration_s"] == 4.5
    cm, cw = (store.open(e)["codes"].isel(codebook=0).values for e in (m, w))
    assert cm.shape == cw.shape
    real = cw >= 0  # padding frames of the last TR
    np.testing.assert_array_equal(cm >= 0, real)
    assert np.mean(cm[real] == cw[real]) >= 0.98


def test_raw_adts_keeps_its_clock_and_drops_its_undeclared_priming(tmp_path, sound):
    """A raw ADTS stream cannot declare priming and FFmpeg times its first (priming) frame from 0: the
    priming is dropped, not placed, so the sound lands 1024 samples late after exact silence."""
    got, info = load_audio(write_movie(tmp_path / "raw.aac", sound, SR, codec="aac", video=False), SR, channels=2)
    assert info.container_attrs()["container_format"] == "aac"
    assert round(info.offset_s * SR) == AAC_LC_PRIMING and not got[:, :AAC_LC_PRIMING].any()
    ref = np.concatenate([np.zeros(AAC_LC_PRIMING, np.float32), sound[0]])
    assert best_lag(got[0], ref) == 0  # where FFmpeg puts it: 1024 samples after the source's start


def _store_last_frame_whole(path) -> None:
    """Rewrite an FFmpeg m4a as Apple's encoders store AAC: every frame 1024 long in the sample table
    (``stts``), the real end only in the edit list."""
    b = bytearray(path.read_bytes())
    i = b.index(b"stts")
    n = struct.unpack(">I", b[i + 8 : i + 12])[0]
    last = i + 12 + 8 * (n - 1)
    count, short = struct.unpack(">II", b[last : last + 8])
    b[last : last + 8] = struct.pack(">II", count, 1024)
    j = b.index(b"mdhd") + 16  # version 0: timescale, duration
    scale, dur = struct.unpack(">II", b[j : j + 8])
    b[j : j + 8] = struct.pack(">II", scale, dur + 1024 - short)
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("timescale", [SR, 1000])
def test_an_edit_list_end_cuts_padding_the_sample_table_keeps(tmp_path, sound, timescale):
    """The edit list's end bounds the track, with EDIT_END_SLACK_S for its ticks (FFmpeg's 1 ms floors
    and ceils it), so no real sample is cut and at most 96 padding samples (48 kHz) stay (261 before)."""
    movie = write_movie(tmp_path / "whole.m4a", sound, SR, codec="aac", video=False, movie_timescale=timescale)
    _store_last_frame_whole(movie)
    got, info = load_audio(movie, SR, channels=2)
    assert N <= info.n_samples <= N + EDIT_END_SLACK_S * SR and info.offset_s == 0.0
    _check_sound(got, sound, 0)
