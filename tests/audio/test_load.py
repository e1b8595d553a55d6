"""Audio in: real files through soundfile, exact resampled length, clear errors."""

import numpy as np
import pytest
import soundfile as sf

from giblet_store.audio.load import audio_info, load_audio
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.store.hashing import sha256_file
from giblet_store.errors import AudioError
from giblet_store.testing import synth_audio, write_wav


def test_resample_length_is_exact(shared_data):
    audio, info = load_audio(shared_data / "arctic_a0007.wav", 24000)
    assert info.sample_rate_hz == 16000 and info.channels == 1
    assert audio.shape == (1, round(info.n_samples * 24000 / 16000))
    assert audio.dtype == np.float32 and np.isfinite(audio).all()


@pytest.mark.parametrize("sr", [16000, 22050, 44100, 48000])
def test_resample_preserves_a_tone(tmp_path, sr):
    t = np.arange(sr) / sr
    write_wav(tmp_path / "a.wav", (0.5 * np.sin(2 * np.pi * 440 * t))[None], sr)
    audio, _ = load_audio(tmp_path / "a.wav", 24000)
    assert audio.shape[1] == 24000
    spectrum = np.abs(np.fft.rfft(audio[0]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins: the tone is where it was


def test_the_mix_warning_says_what_the_mean_is_for(tmp_path, run):
    """Issue 20 item 10: quality and mel said "the model takes mono: their mean is encoded", where no model
    encodes anything."""
    write_wav(tmp_path / "s.wav", synth_audio(1.0, 16000, channels=2), 16000)
    with pytest.warns(ChannelsMixedWarning, match=r"has 2 channels and the mel spectrogram is taken of their mean "
                                                  r"\(mono\) \(source_channels=2 in the entry's attributes\)$"):
        load_audio(tmp_path / "s.wav", 16000, channels=1, purpose="mel")
    with pytest.warns(ChannelsMixedWarning, match=r"has 2 channels and the quality metrics score their mean \(mono\)$"):
        load_audio(tmp_path / "s.wav", 16000, channels=1, purpose="score")
    code, _, err = run("mel", tmp_path / "s.wav", "--store", tmp_path / "st")
    assert code == 0 and "the mel spectrogram is taken of their mean" in err and "encoded" not in err, err
    code, _, err = run("quality", tmp_path / "s.wav", tmp_path / "s.wav", "--metrics", "snr")
    assert code == 0 and err.count("the quality metrics score their mean") == 2 and "model" not in err, err


def test_stereo_is_mixed_to_mono_and_kept_for_stereo(tmp_path):
    x = synth_audio(1.0, 24000, channels=2)
    x[1] *= 0.5
    write_wav(tmp_path / "s.flac", x, 24000)
    with pytest.warns(ChannelsMixedWarning, match="has 2 channels and the model takes mono: their mean is encoded"):
        mono, info = load_audio(tmp_path / "s.flac", 24000, channels=1)
    assert info.channels == 2
    np.testing.assert_allclose(mono[0], x.mean(axis=0), atol=2 / 32768)
    stereo, _ = load_audio(tmp_path / "s.flac", 24000, channels=2)  # as it is: no warning
    assert stereo.shape == (2, 24000)


def test_mono_is_duplicated_for_stereo_and_many_channels_refused(tmp_path):
    x = synth_audio(0.5, 24000, seed=1)
    write_wav(tmp_path / "m.wav", x, 24000)
    with pytest.warns(ChannelsMixedWarning, match="is mono and the model takes stereo: the channel is encoded on both"):
        both, _ = load_audio(tmp_path / "m.wav", 24000, channels=2)
    np.testing.assert_array_equal(both[0], both[1])
    write_wav(tmp_path / "six.wav", np.tile(x, (6, 1)), 24000)
    with pytest.raises(AudioError, match="has 6 channels; a stereo model takes 1 or 2. Mix it down to stereo"):
        load_audio(tmp_path / "six.wav", 24000, channels=2)
    with pytest.warns(ChannelsMixedWarning, match="has 6 channels and the model takes mono"):
        mono, _ = load_audio(tmp_path / "six.wav", 24000, channels=1)
    np.testing.assert_allclose(mono[0], x[0], atol=2 / 32768)


def test_ogg_reads(tmp_path):
    write_wav(tmp_path / "a.ogg", synth_audio(0.5, 24000), 24000, subtype="VORBIS")
    audio, info = load_audio(tmp_path / "a.ogg", 24000)
    assert audio.shape == (1, info.n_samples)


def test_sha256_changes_with_bytes(tmp_path):
    a = write_wav(tmp_path / "a.wav", synth_audio(0.2, 24000, seed=1), 24000)
    h1 = sha256_file(a)
    write_wav(a, synth_audio(0.2, 24000, seed=2), 24000)
    assert sha256_file(a) != h1 and len(h1) == 64


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        audio_info(tmp_path / "nope.wav")


def test_not_audio(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio")
    with pytest.raises(AudioError, match="not an audio file"):
        audio_info(tmp_path / "notes.wav")


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        audio_info(tmp_path)


def test_zero_length(tmp_path):
    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 1), np.float32), 24000)
    with pytest.raises(AudioError, match="no samples"):
        audio_info(tmp_path / "empty.wav")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = synth_audio(0.5, 24000)
    x[0, 1234] = bad
    sf.write(str(tmp_path / "bad.wav"), x.T, 24000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite samples .first at sample 1234"):
        load_audio(tmp_path / "bad.wav", 24000)


def test_memory_mapped_output_equals_in_memory(tmp_path, shared_data):
    mem, _ = load_audio(shared_data / "arctic_a0007.wav", 24000)
    mm, _ = load_audio(shared_data / "arctic_a0007.wav", 24000, out=tmp_path)
    assert isinstance(mm.base, np.memmap)  # file-backed: resident memory does not grow with length
    assert list(tmp_path.iterdir()) == []  # the file has no name: a killed extract leaves nothing (issue 21 #14)
    assert not mm.flags.writeable
    np.testing.assert_array_equal(np.asarray(mm), mem)


# ------------------------------------------------------------------------ issue 21 #6: chained Ogg
@pytest.mark.parametrize("rates", [(24000, 24000), (24000, 16000)], ids=["same-rate", "second-rate-differs"])
def test_a_chained_ogg_is_refused_not_truncated(tmp_path, rates):
    from helpers import write_chained_ogg

    p = write_chained_ogg(tmp_path / "joined.ogg", [(2.67, rates[0], 1), (2.67, rates[1], 2)])
    assert abs(sf.info(str(p)).duration - 2.67) < 0.01  # libsndfile sees only the first part: the trap
    with pytest.raises(AudioError, match="is a chained Ogg file: 2 streams one after another"):
        audio_info(p)
    with pytest.raises(AudioError, match="chained Ogg"):
        load_audio(p, 24000)


def test_a_single_ogg_is_read_whole(tmp_path):
    from helpers import write_chained_ogg

    p = write_chained_ogg(tmp_path / "one.ogg", [(2.67, 24000, 1)])
    audio, info = load_audio(p, 24000)
    assert abs(info.duration_s - 2.67) < 0.01 and audio.shape[-1] == info.n_samples


def test_a_flac_header_declaring_795_hours_is_named_as_damage(tmp_path):
    """issue 21: soundfile's "Internal psf_fseek() failed" alone did not say what is wrong or what to do."""
    from helpers import write_long_header_flac

    p = write_long_header_flac(tmp_path / "long.flac")
    with pytest.raises(AudioError) as err:
        load_audio(p, 24000, 1)  # before: a 256 GiB buffer, then "Internal psf_fseek() failed"
    text = str(err.value)
    assert "long.flac" in text and "declares 68688000000 samples at 24000 Hz (795 h)" in text
    assert "ends before the last of them" in text and "truncated or its header is damaged. Re-export" in text
    good = tmp_path / "good.flac"
    sf.write(good, synth_audio(1.0, 24000, seed=3).T, 24000, format="FLAC")
    assert audio_info(good).n_samples == 24000


def test_a_one_hertz_header_is_refused_with_its_numbers(tmp_path):
    sf.write(tmp_path / "one.wav", np.array([0.1, -0.1], np.float32), 1, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"declares 1 Hz \(2 samples = 2 s\); audio is sampled at 1000 Hz or more"):
        audio_info(tmp_path / "one.wav")
    sf.write(tmp_path / "ok.wav", np.zeros(8, np.float32), 1000, subtype="FLOAT")
    assert audio_info(tmp_path / "ok.wav").sample_rate_hz == 1000


# ------------------------------------------------------------------------------ issue 21: buffers sized by a header
def _peak_bytes(fn) -> tuple[int, BaseException | None]:
    """Peak bytes Python and numpy allocated while ``fn`` ran (tracemalloc traces numpy's buffers), and its error."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        err = None
    except BaseException as exc:  # noqa: BLE001 - returned to the test to assert on
        err = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, err


def test_tracemalloc_sees_numpy_buffers():
    peak, _ = _peak_bytes(lambda: np.zeros(10_000_000, np.float32).sum())
    assert peak >= 40_000_000


@pytest.mark.parametrize("out", [False, True], ids=["ram", "memmap"])
def test_an_mp3_header_claiming_14000_hours_is_refused_before_any_buffer(tmp_path, out):
    """A 1.2 KB MP3 whose Xing header claims 1.2e12 samples: before, load_audio asked numpy for 4.50 TiB."""
    from helpers import write_claiming_mp3

    p = write_claiming_mp3(tmp_path / "claim.mp3")
    peak, err = _peak_bytes(lambda: load_audio(p, 24000, out=tmp_path if out else None))
    assert isinstance(err, AudioError), err
    text = str(err)
    assert "claim.mp3" in text and "its MP3 header declares 1236950579" in text and "(1.43e+04 h)" in text
    assert "but the 1,2" in text and "-byte file holds at most" in text and "Re-export or re-download it" in text
    assert peak < 8_000_000
    assert list(tmp_path.iterdir()) == [p]


@pytest.mark.parametrize("out", [False, True], ids=["ram", "memmap"])
def test_a_compressed_claim_below_the_bound_costs_only_what_decodes(tmp_path, out):
    """A claim of 5.76e7 samples (40 min) passes the bytes bound; the samples go to a buffer that grows with what
    decodes (1000 samples), and the short decode is then refused as truncated. Before: a 230 MB buffer first."""
    from helpers import write_claiming_mp3

    p = write_claiming_mp3(tmp_path / "claim.mp3", mpeg_frames=100_000)
    peak, err = _peak_bytes(lambda: load_audio(p, 24000, out=tmp_path if out else None))
    assert isinstance(err, AudioError) and "is truncated: its header promises 57598696 samples" in str(err), err
    assert peak < 8_000_000


def test_an_rf64_whose_ds64_claims_795_hours_is_refused_as_truncated(tmp_path):
    """libsndfile reads the 1000 samples a 2 KB RF64 holds and calls it complete; the ds64 chunk declares 795 h."""
    from helpers import write_claiming_rf64

    p = write_claiming_rf64(tmp_path / "claim.wav")
    peak, err = _peak_bytes(lambda: load_audio(p, 24000))
    assert isinstance(err, AudioError), err
    assert "claim.wav' is truncated: its WAV header declares 68688000000 samples" in str(err)
    assert "holds 1000" in str(err) and peak < 8_000_000
    sf.write(tmp_path / "good.wav", np.zeros(1000, np.float32), 24000, format="RF64", subtype="PCM_16")
    assert load_audio(tmp_path / "good.wav", 24000)[0].shape == (1, 1000)


def test_an_uncompressed_claim_is_bounded_by_bytes_per_sample(tmp_path):
    from giblet_store.audio.load import check_claim_fits

    p = tmp_path / "x.raw"
    p.write_bytes(bytes(2048))
    check_claim_fits(p, 1024, 24000, 1, "WAV", "PCM_16")  # exactly what 2048 bytes of PCM_16 mono hold
    with pytest.raises(AudioError, match=r"declares 1025 samples at 24000 Hz .* holds at most 1,024 \(PCM_16, 2 byte"):
        check_claim_fits(p, 1025, 24000, 1, "WAV", "PCM_16")


def test_compressed_audio_decoded_into_a_growing_buffer_is_unchanged(tmp_path):
    """Ogg Vorbis and MP3 go through the growing buffer (RAM or the nameless file): the same samples either way."""
    x = synth_audio(1.5, 24000, seed=8)
    for fmt, sub in (("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")):
        p = tmp_path / f"x.{fmt.lower()}"
        sf.write(p, x.T, 24000, format=fmt, subtype=sub)
        ref = sf.read(p, dtype="float32", always_2d=True)[0].T
        ram, info = load_audio(p, 24000)
        mapped, _ = load_audio(p, 24000, out=tmp_path)
        assert info.n_samples == ref.shape[1] and np.array_equal(ram, np.asarray(mapped))
        np.testing.assert_allclose(ram, ref, atol=1e-6)  # mpg123 rounds a block's last bit its own way


def test_a_full_temp_folder_for_long_audio_is_said_before_decoding(tmp_path, monkeypatch):
    """issue 21 (disk full): the nameless temp file of a memory-mapped load is allocated first (a full disk would
    otherwise kill the process with SIGBUS when the map is written)."""
    import errno
    import os

    from giblet_store.errors import DiskFullError

    p = write_wav(tmp_path / "a.wav", synth_audio(1.0, 16000, seed=2), 16000)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DiskFullError, match=r"no space left on device while writing the resampled samples of .*a.wav"
                                            r"' \(96,000 bytes, a nameless temporary file in .*nothing was stored"):
        load_audio(p, 24000, out=tmp_path)
    assert list(tmp_path.iterdir()) == [p]
