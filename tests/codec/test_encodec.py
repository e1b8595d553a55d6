"""EnCodec through transformers: codebook counts, chunked encode, decode, dequantise, loading."""

import json

import numpy as np
import pytest

from giblet_store.codec.encodec import (CodecParams, chunk_bounds, decode_stream, dequantise, encode_stream,
                                load_codec, model_identity, prepare_codes)
from giblet_store.errors import ModelError, ParameterError
from giblet_store.testing import synth_audio


def test_codebooks_come_from_the_model(codec):
    assert codec.frame_rate == 75 and codec.hop == 320
    assert [codec.n_codebooks(b) for b in (1.5, 3, 6, 12, 24)] == [2, 4, 8, 16, 32]


def test_unsupported_bandwidth_lists_offered(codec):
    with pytest.raises(ParameterError, match=r"5 kbps is not offered .*1\.5, 3, 6, 12, 24"):
        codec.n_codebooks(5.0)


def test_chunk_bounds_are_hop_multiples():
    bounds = chunk_bounds(24000 * 7 + 100, 320, 2.0, 0.5, 24000)
    for lo, start, stop in bounds:
        assert lo % 320 == 0 and start % 320 == 0 and (start - lo) in (0, round(12000 / 320) * 320)
    assert bounds[-1][2] == 24000 * 7 + 100 and len(bounds) == 4


def test_chunked_encode_matches_whole_file(codec, model_dir):
    audio = synth_audio(12.0, 24000, seed=11)
    whole = encode_stream(codec, audio, CodecParams(str(model_dir), 3, chunk_s=1000)).compute(scheduler="sync")
    chunked = encode_stream(codec, audio, CodecParams(str(model_dir), 3, chunk_s=3, context_s=2)).compute()
    assert whole.shape == chunked.shape == (4, 900) and whole.dtype == np.int16
    # the first chunk has no left context to differ by: identical
    np.testing.assert_array_equal(whole[:, :225], chunked[:, :225])
    assert (whole == chunked).mean() >= 0.99
    # the codebooks are filled: codes vary (a zero-codebook model would give all 0)
    assert len(np.unique(whole[0])) > 100


def test_odd_length_gives_ceil_frames(codec, model_dir):
    audio = synth_audio(1.1, 24000)[:, : 24000 + 17]
    codes = encode_stream(codec, audio, CodecParams(str(model_dir), 1.5, chunk_s=0.4, context_s=0.2)).compute()
    assert codes.shape == (2, 76)


def test_decode_length_is_exact(codec, model_dir):
    codes = encode_stream(codec, synth_audio(2.0, 24000), CodecParams(str(model_dir), 1.5)).compute()
    audio = decode_stream(codec, codes, chunk_s=0.5, context_s=0.25)
    assert audio.shape == (1, codes.shape[1] * 320) and audio.dtype == np.float32
    whole = decode_stream(codec, codes, chunk_s=100)
    assert np.abs(audio[:, :12000] - whole[:, :12000]).max() < 1e-5  # first chunk: same computation


def test_float_codes_are_rounded_and_clipped_with_a_count():
    with pytest.warns(UserWarning, match="clipped 2 of 6 code values to \\[0, 1023\\]"):
        out = prepare_codes(np.array([[-3.2, 0.4, 1022.6], [1030.0, 5.5, 7.0]]), 1024)
    assert out.tolist() == [[0, 0, 1023], [1023, 6, 7]]


def test_dequantise_equals_quantizer_output(codec):
    import torch

    audio = torch.from_numpy(synth_audio(1.0, 24000))[None]
    with torch.inference_mode():
        emb = codec.model.encoder(audio)
        codes = codec.model.quantizer.encode(emb, 6.0)  # (codebook, batch, frame)
        quantized = codec.model.quantizer.decode(codes)[0].T.numpy()
    out = dequantise(codec, codes[:, 0].numpy())
    assert out.shape == (75, 128)
    np.testing.assert_allclose(out, quantized, atol=1e-6)


def test_local_identity_is_content(model_dir, tmp_path):
    import shutil

    ident = model_identity(str(model_dir))
    copy = shutil.copytree(model_dir, tmp_path / "moved")
    assert model_identity(str(copy)) == ident  # moving the weights keeps the key
    cfg = json.loads((copy / "config.json").read_text())
    cfg["trim_right_ratio"] = 0.5
    (copy / "config.json").write_text(json.dumps(cfg))
    assert model_identity(str(copy)) != ident


def test_directory_that_is_not_encodec(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="'bert' model, not an EnCodec"):
        load_codec(str(tmp_path))


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_codec(str(tmp_path))


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_codec(str(tmp_path / "missing"))


def test_hub_name_without_hub_says_how_to_get_weights():
    from giblet_store.codec.models import _hub_reachable

    if _hub_reachable(1.0):
        pytest.skip("the model hub is reachable here; the offline error path cannot be exercised")
    with pytest.raises(ModelError, match="save_pretrained"):
        load_codec("facebook/encodec_24khz_not_cached")


_THREADS_SCRIPT = """
import sys, numpy as np, torch
import giblet_store as gs
torch.set_num_threads(int(sys.argv[1]))
model, wav, store, out = sys.argv[2:6]
entry = gs.extract_codes(gs.open_store(store), wav, gs.CodecParams(model, 1.5, chunk_s=2.0), gs.TrGrid(1.5)).entry
np.save(out, entry.open()["codes"].values)
"""


@pytest.mark.slow
def test_codes_do_not_depend_on_the_thread_count(tmp_path):
    """A batch worker runs torch on one thread, a notebook on all cores: one key must mean one set of codes.

    Without MKL's strict reproducibility mode (set by ``import giblet_store``), this stereo stimulus
    flips codes at an argmin tie between 1 and 2 threads. Fresh processes, so the model and the
    numerics do not depend on what this test session ran before.
    """
    import os
    import subprocess
    import sys

    from giblet_store.testing import synth_audio, write_wav

    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    model = tmp_path / "model"
    subprocess.run([sys.executable, "-c", "import sys; from giblet_store.testing import save_test_model; "
                    "save_test_model(sys.argv[1], seed=0)", str(model)], check=True, env=env)
    wav = write_wav(tmp_path / "stereo.wav", synth_audio(4.0, 24000, seed=3, channels=2), 24000)
    for n in (1, 2):
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(n), str(model), str(wav), str(tmp_path / f"s{n}"),
                        str(tmp_path / f"codes{n}.npy")], check=True, env=env)
    one, two = np.load(tmp_path / "codes1.npy"), np.load(tmp_path / "codes2.npy")
    assert one.shape == two.shape and (one != two).sum() == 0
