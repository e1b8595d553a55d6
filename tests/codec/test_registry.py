"""The user-level model registry: entries made with a local model decode and derive without model=."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from giblet_store import CodecParams, Embeddings, ParameterError, TrGrid, decode_entry, extract_codes, open_store
from giblet_store.cli import main
from giblet_store.codec.models import find_model_dir
from giblet_store.codec.registry import cache_dir, registered_model_dirs, registry_path
from giblet_store.testing import synth_audio, write_wav


@pytest.fixture
def made(tmp_path, model_dir):
    wav = write_wav(tmp_path / "stim.wav", synth_audio(3.0, 24000, seed=5), 24000)
    store = open_store(tmp_path / "store")
    entry = extract_codes(store, wav, CodecParams(str(model_dir), bandwidth_kbps=1.5), TrGrid(1.5)).entry
    return store, entry


def test_using_a_local_model_registers_it_and_the_store_holds_no_path(made, model_dir, cache_dir):
    store, entry = made
    assert registry_path().parent == cache_dir
    doc = json.loads(registry_path().read_text())
    assert doc["models"][entry.attrs["model_sha256"]] == [str(Path(model_dir).resolve())]
    for meta in Path(store.root).rglob("zarr.json"):  # a shared store never names this machine's folders
        assert str(model_dir) not in meta.read_text()
    assert entry.attrs["model"] == Path(model_dir).name


def test_decode_and_embeddings_find_the_registered_model(made, tmp_path, capsys):
    store, entry = made
    out = decode_entry(store, entry, tmp_path / "a.wav", trs=slice(0, 1))
    assert sf.info(str(out)).frames > 0
    emb = store.derive(entry, Embeddings())
    assert emb.kind == "embeddings"
    assert main(["decode", store.url, entry.key[:12], "-o", str(tmp_path / "b.wav"), "--trs", "0:1"]) == 0
    capsys.readouterr()
    assert main(["derive", store.url, entry.key[:12], "--embeddings", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["entries"][0]["key"] == emb.key and doc["entries"][0]["created"] is False


def test_a_moved_or_changed_model_is_not_served(made, tmp_path, model_dir, monkeypatch):
    store, entry = made
    sha = entry.attrs["model_sha256"]
    moved = tmp_path / "moved_model"
    shutil.copytree(model_dir, moved)
    monkeypatch.setenv("GIBLET_STORE_CACHE", str(tmp_path / "fresh_cache"))
    assert find_model_dir(sha) is None
    with pytest.raises(ParameterError, match="model registry .* does not know; give that directory once"):
        decode_entry(store, entry, tmp_path / "x.wav")
    decode_entry(store, entry, tmp_path / "x.wav", trs="0:1", model=str(moved))  # given once ...
    assert registered_model_dirs(sha) == [str(moved.resolve())]
    decode_entry(store, entry, tmp_path / "y.wav", trs="0:1")  # ... found afterwards
    (moved / "config.json").write_text((moved / "config.json").read_text() + " ")  # other weights now
    assert find_model_dir(sha) is None
    with pytest.raises(ParameterError, match=r"registry .* remembers only .*moved_model, which no longer hold those "
                                             r"weights \(moved, deleted or changed\); give that directory once"):
        decode_entry(store, entry, tmp_path / "z.wav")
    assert cache_dir() == tmp_path / "fresh_cache"


def test_batch_takes_model(made, tmp_path, model_dir, capsys):
    store, entry = made
    (tmp_path / "m.csv").write_text("path,bandwidths,trs\nstim.wav,1.5,1.5\n")
    argv = ["batch", str(tmp_path / "m.csv"), "--store", store.url, "--scheduler", "tcp://127.0.0.1:9",
            "--no-progress", "--json"]
    assert main(argv) == 2  # the default hub model cannot be loaded offline
    assert "could not load EnCodec model 'facebook/encodec_24khz'" in capsys.readouterr().err
    assert main([*argv, "--model", str(model_dir)]) == 0  # cached: keys are known without a cluster
    report = json.loads(capsys.readouterr().out)
    assert [it["key"] for it in report["entries"]] == [entry.key]
    assert [it["status"] for it in report["entries"]] == ["cached"]


def test_a_model_folder_that_never_loads_is_never_registered(tmp_path, model_dir):
    broken = tmp_path / "broken_model"
    shutil.copytree(model_dir, broken)
    weights = next(p for p in broken.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short: hashes fine, never loads
    wav = write_wav(tmp_path / "stim.wav", synth_audio(2.0, 24000, seed=5), 24000)
    assert main(["extract", str(wav), "--store", str(tmp_path / "st"), "--model", str(broken), "--tr", "1.5"]) == 2
    assert not registry_path().exists() or str(broken.resolve()) not in registry_path().read_text()


# ------------------------------------------------------------------------------------ issue 21: FIFOs, deep JSON
@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_fifo_in_a_model_folder_is_refused_not_waited_on(tmp_path, model_dir, name):
    import os

    from giblet_store.codec.models import load_codec
    from giblet_store.errors import ModelError

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    (d / name).unlink()
    os.mkfifo(d / name)
    with pytest.raises(ModelError, match=f"{name} is not a regular file .a pipe, socket or device."):
        load_codec(str(d))
    assert registered_model_dirs("") == [] and not registry_path().exists()


def test_a_deeply_nested_config_is_a_model_error(tmp_path, model_dir):
    from giblet_store.codec.models import load_codec
    from giblet_store.errors import ModelError

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="nested too deeply to be a model config"):
        load_codec(str(d))


def test_a_registered_folder_whose_weights_became_a_fifo_is_skipped(made, tmp_path, model_dir):
    import os

    store, entry = made
    sha = entry.attrs["model_sha256"]
    assert find_model_dir(sha) is not None
    moved = tmp_path / "moved"
    shutil.move(str(model_dir), moved)  # the session's model folder: put back below
    try:
        Path(model_dir).mkdir()
        shutil.copy(moved / "config.json", model_dir)
        os.mkfifo(Path(model_dir) / "model.safetensors")
        assert find_model_dir(sha) is None  # hashing it would wait forever
    finally:
        shutil.rmtree(model_dir)
        shutil.move(str(moved), model_dir)


def test_a_fifo_registry_file_reads_as_empty(cache_dir):
    import os

    registry_path().parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(registry_path())
    assert registered_model_dirs("0" * 64) == []
