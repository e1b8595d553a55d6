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
