"""One torch intra-op thread while streaming (giblet_store.codec.torch_threads), and the pipelined stream encoder."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from giblet_store.codec.stream import StreamDecoder, StreamEncoder, stream_encode
from giblet_store.testing import synth_audio
from giblet_store.codec.torch_threads import one_intra_op_thread


@pytest.fixture
def two_threads():
    """torch at 2 intra-op threads for the test (the default on the 2-core machines), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_one_thread_inside_and_the_count_comes_back_after(two_threads):
    import torch

    with one_intra_op_thread():
        assert torch.get_num_threads() == 1
        with one_intra_op_thread():  # re-entrant
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1  # the inner exit restores the outer's count
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"), one_intra_op_thread():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2  # restored after an error too


def test_each_thread_gets_its_own_count_back(two_threads):
    import torch

    inside, release, seen = threading.Event(), threading.Event(), []

    def other():
        torch.set_num_threads(2)
        with one_intra_op_thread():
            inside.set()
            release.wait(10)
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=other)
    with one_intra_op_thread():
        t.start()
        assert inside.wait(10)
    assert torch.get_num_threads() == 2  # this thread's count is back while the other still encodes
    release.set()
    t.join(10)
    assert seen == [1, 2] and torch.get_num_threads() == 2


def test_stream_encode_runs_its_lstm_on_one_thread_in_a_second_thread(codec, two_threads, monkeypatch):
    """The quantiser (after the LSTM) runs in the pipeline's worker thread with one intra-op thread."""
    import torch

    seen = []
    real = codec.model.quantizer.encode

    def spy(*args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(codec.model.quantizer, "encode", spy)
    audio = synth_audio(1.0, 24000, seed=5)
    kept = audio.copy()
    codes = stream_encode(codec, audio, 1.5, chunk_s=0.2)
    assert len(seen) == -(-audio.shape[-1] // (15 * codec.hop))  # one quantiser call per piece (0.2 s = 15 hops)
    assert all(name.startswith("giblet-stream-lstm") and n == 1 for name, n in seen), seen
    assert torch.get_num_threads() == 2
    np.testing.assert_array_equal(audio, kept)  # in-place layers never touch the caller's audio
    # the pipeline gives exactly the codes of feeding the pieces one after another in this thread
    enc, size = StreamEncoder(codec, 1.5), 15 * codec.hop
    parts = [enc.feed(audio[:, s: s + size], last=s + size >= audio.shape[-1]) for s in range(0, audio.shape[-1], size)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), codes)


def test_decoder_feed_runs_on_one_thread_and_restores(codec, two_threads, monkeypatch):
    import torch

    seen = []
    real = codec.model.quantizer.decode

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(codec.model.quantizer, "decode", spy)
    codes = np.zeros((2, 20), np.int64)
    StreamDecoder(codec).feed(codes, last=True)
    assert seen == [1] and torch.get_num_threads() == 2
