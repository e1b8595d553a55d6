"""Audio from video and other containers (PyAV): same samples as soundfile, stimulus-clock alignment,
stream choice in the key, and every bad container as a clear error that leaves the store unchanged."""

from contextlib import nullcontext

import numpy as np
import pytest
import soundfile as sf

from giblet_store import CodecParams, TrGrid, extract_codes
from giblet_store.audio.load import audio_info, load_audio
from giblet_store.audio.channels import ChannelsMixedWarning
from giblet_store.store.hashing import sha256_file
from giblet_store.cli import main
from giblet_store.errors import AudioError
from giblet_store.testing import synth_audio
from giblet_store.testing.video import write_movie

from helpers import best_lag, snapshot

SR = 16000  # arctic_a0007.wav: 4.0 s of speech at 16 kHz


@pytest.fixture(scope="module")
def speech(shared_data):
    x, sr = sf.read(str(shared_data / "arctic_a0007.wav"), dtype="int16", always_2d=True)
    assert sr == SR
    return x.T  # (1, 64000) int16


@pytest.mark.parametrize("name", ["arctic_a0007.wav", "encodec_test_24k.wav"])
def test_wav_gives_identical_samples_through_soundfile_and_pyav(shared_data, name):
    fast, a = load_audio(shared_data / name, 24000)
    slow, b = load_audio(shared_data / name, 24000, audio_stream=0)  # an explicit stream forces PyAV
    assert (a.reader, b.reader) == ("soundfile", "pyav") and b.offset_s == 0.0
    assert fast.shape == slow.shape and np.array_equal(fast, slow)  # resampled (16 kHz) and not (24 kHz)


@pytest.mark.parametrize("suffix,codec", [("mp4", "aac"), ("mkv", "pcm_s16le"), ("mov", "pcm_s16le")])
@pytest.mark.parametrize("delay_s", [0.0, 0.5])
def test_audio_lands_on_the_container_clock(tmp_path, speech, suffix, codec, delay_s):
    movie = write_movie(tmp_path / f"m.{suffix}", speech, SR, codec=codec, delay_s=delay_s)
    got, info = load_audio(movie, SR)
    assert info.reader == "pyav" and info.stream == 1 and info.container_attrs()["audio_stream"] == 1
    d = int(delay_s * SR)
    ref = speech[0].astype(np.float32) / 32768
    if codec == "aac":  # lossy: the sound is found by alignment; its place and length are exact
        assert best_lag(got[0, d:], ref) == 0 and info.offset_s == delay_s
        assert not got[0, :d].any() and info.n_samples == d + len(ref)  # no priming, no end padding
    else:
        assert info.offset_s == delay_s and np.all(got[0, :d] == 0)
        np.testing.assert_array_equal(got[0, d : d + len(ref)], ref)
        assert info.n_samples == d + len(ref)


def test_codes_of_a_late_audio_track_equal_codes_of_the_wav_padded_with_silence(tmp_path, speech, model_dir, store):
    """Frame f of the container's codes is stimulus time f/75 s: bit-equal to the padded wav's codes."""
    movie = write_movie(tmp_path / "late.mkv", speech, SR, codec="pcm_s16le", delay_s=0.5)
    padded = tmp_path / "padded.wav"
    sf.write(str(padded), np.concatenate([np.zeros(SR // 2, np.int16), speech[0]]), SR, subtype="PCM_16")
    codec, grid = CodecParams(model=str(model_dir), bandwidth_kbps=1.5), TrGrid(tr_s=1.5)
    m = extract_codes(store, movie, codec, grid).entry
    w = extract_codes(store, padded, codec, grid).entry
    assert m.key != w.key
    cm, cw = store.open(m), store.open(w)
    np.testing.assert_array_equal(cm["codes"].values, cw["codes"].values)
    np.testing.assert_array_equal(cm["n_frames"].values, cw["n_frames"].values)
    assert m.attrs["audio_offset_s"] == 0.5 and m.attrs["audio_stream"] == 1
    assert m.attrs["container_format"].startswith("matroska") and m.attrs["audio_codec"] == "pcm_s16le"
    assert m.attrs["source_sha256"] == sha256_file(movie) and m.attrs["duration_s"] == 4.5
    assert m.attrs["inputs"]["audio_stream"] == 1 and "audio_stream" not in w.attrs["inputs"]
    assert extract_codes(store, movie, codec, grid).created is False


def test_audio_stream_picks_the_track_and_is_part_of_the_key(tmp_path, model_dir, store):
    a, b = synth_audio(1.0, SR, seed=1), synth_audio(1.0, SR, seed=2)
    movie = write_movie(tmp_path / "two.mkv", [a, b], SR, codec="pcm_s16le")
    first, i1 = load_audio(movie, SR)
    second, i2 = load_audio(movie, SR, audio_stream=2)
    assert (i1.stream, i2.stream) == (1, 2)
    ref = lambda x: np.round(x[0] * 32768).clip(-32768, 32767).astype(np.int16) / np.float32(32768)  # noqa: E731
    np.testing.assert_array_equal(first[0], ref(a))
    np.testing.assert_array_equal(second[0], ref(b))
    codec = CodecParams(model=str(model_dir), bandwidth_kbps=1.5)
    k1 = extract_codes(store, movie, codec, TrGrid(0.5)).entry
    k2 = extract_codes(store, movie, codec, TrGrid(0.5), audio_stream=2).entry
    assert k1.key != k2.key and (k1.attrs["audio_stream"], k2.attrs["audio_stream"]) == (1, 2)
    assert extract_codes(store, movie, codec, TrGrid(0.5), audio_stream=1).entry.key == k1.key  # default = 1


def test_long_container_decodes_to_a_memory_map(tmp_path, speech):
    movie = write_movie(tmp_path / "m.mkv", speech, SR, codec="pcm_s16le")
    (tmp_path / "tmp").mkdir()
    audio, _ = load_audio(movie, 24000, out=tmp_path / "tmp")
    assert isinstance(audio.base, np.memmap) or isinstance(audio, np.memmap)
    assert list((tmp_path / "tmp").iterdir()) == []  # nameless: nothing to leave behind (issue 21 #14)
    ref, _ = load_audio(movie, 24000)
    np.testing.assert_array_equal(np.asarray(audio), ref)


def _bad_inputs(tmp_path, speech):
    silent = write_movie(tmp_path / "silent.mp4", [], SR, video_s=1.0)
    good = write_movie(tmp_path / "good.mp4", speech, SR)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    mkv = write_movie(tmp_path / "good.mkv", speech, SR, codec="pcm_s16le")
    cut_mkv = tmp_path / "cut.mkv"
    cut_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    return {
        "no audio": ([silent], "has no audio stream .streams: #0 video mpeg4"),
        "bad index": ([good, "--audio-stream", "5"], "no audio stream with index 5; its audio streams are 1 .aac"),
        "video index": ([good, "--audio-stream", "0"], "no audio stream with index 0"),
        "corrupt": ([corrupt], "not an audio file soundfile can read .* FFmpeg"),
        "truncated mp4": ([cut], "corrupt, truncated"),
        "truncated mkv": ([cut_mkv], "ends at 1.9. s but the file declares 4.00 s; the file is truncated"),
    }


def test_bad_containers_exit_2_with_a_clear_message_and_leave_the_store_unchanged(tmp_path, speech, model_dir,
                                                                                  capsys):
    st = tmp_path / "st"
    assert main(["extract", str(write_movie(tmp_path / "ok.mkv", speech[:, :8000], SR, codec="pcm_s16le")),
                 "--store", str(st), "--model", str(model_dir), "--bandwidth", "1.5"]) == 0
    before = snapshot(st)
    capsys.readouterr()
    import re

    for label, (argv, message) in _bad_inputs(tmp_path, speech).items():
        code = main(["extract", *map(str, argv), "--store", str(st), "--model", str(model_dir)])
        out, err = capsys.readouterr()
        assert code == 2, label
        assert re.search(message, err), (label, err)
        assert "Traceback" not in err and out == ""
        assert snapshot(st) == before, label


def test_audio_info_of_a_container_declares_its_length(tmp_path, speech):
    info = audio_info(write_movie(tmp_path / "m.mov", speech, SR, codec="pcm_s16le", delay_s=0.5))
    assert info.reader == "pyav" and info.sample_rate_hz == SR and info.channels == 1
    assert info.duration_s == pytest.approx(4.5) and info.offset_s == 0.5
    with pytest.raises(AudioError, match="no audio stream with index 3"):
        audio_info(tmp_path / "m.mov", audio_stream=3)



def test_mel_of_a_container_through_the_cli(tmp_path, speech, capsys):
    from giblet_store import open_store

    movie = write_movie(tmp_path / "late.mkv", speech, SR, codec="pcm_s16le", delay_s=0.5)
    padded = tmp_path / "padded.wav"
    sf.write(str(padded), np.concatenate([np.zeros(SR // 2, np.int16), speech[0]]), SR, subtype="PCM_16")
    st = tmp_path / "st"
    assert main(["mel", str(movie), str(padded), "--store", str(st), "--audio-stream", "1", "--n-mels", "32"]) == 2
    assert "no audio stream with index 1" in capsys.readouterr().err  # the wav's only stream is 0
    assert main(["mel", str(movie), str(padded), "--store", str(st), "--n-mels", "32"]) == 0
    store = open_store(st, mode="r")
    (m,) = [e for e in store.find(kind="mel") if e.attrs["source_name"] == "late.mkv"]
    (w,) = [e for e in store.find(kind="mel") if e.attrs["source_name"] == "padded.wav"]
    assert m.attrs["audio_offset_s"] == 0.5 and m.attrs["inputs"]["audio_stream"] == 1
    np.testing.assert_array_equal(store.open(m)["mel"].values, store.open(w)["mel"].values)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("subtype,suffix", [("PCM_16", "wav"), ("PCM_24", "flac"), ("FLOAT", "wav")])
def test_stereo_files_give_identical_samples_on_both_paths(tmp_path, channels, subtype, suffix):
    x = synth_audio(1.3, 44100, seed=4, channels=2)
    x[1] *= 0.5
    path = tmp_path / f"s.{suffix}"
    sf.write(str(path), x.T, 44100, subtype=subtype)
    def mixed():  # the channel rule warns when stereo is averaged for a mono model
        return pytest.warns(ChannelsMixedWarning, match="their mean is encoded") if channels == 1 else nullcontext()

    with mixed():
        fast, _ = load_audio(path, 24000, channels)
    with mixed():
        slow, info = load_audio(path, 24000, channels, audio_stream=0)
    assert info.reader == "pyav" and info.channels == 2
    np.testing.assert_array_equal(fast, slow)


def test_batch_refuses_a_container_before_any_work(tmp_path, speech, model_dir):
    import json

    from giblet_store import run_batch

    write_movie(tmp_path / "film.mp4", speech, SR)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"model": str(model_dir), "kinds": ["codes"], "bandwidths": [1.5], "trs": [1.5],
                                    "stimuli": ["film.mp4"]}))
    from giblet_store.batch.manifest import ManifestError

    with pytest.raises(ManifestError, match="is a mov,mp4,m4a,3gp,3g2,mj2 container; batch reads wav/flac/ogg"):
        run_batch(str(manifest), str(tmp_path / "st"), progress=False)
    assert not (tmp_path / "st").exists()
