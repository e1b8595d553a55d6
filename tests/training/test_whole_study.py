"""Issue 20, acceptance: the whole study as a lab runs it, on generated media, through the public API and the
CLI's ``main``: a movie (PyAV mp4, AAC 48 kHz stereo) -> codes at 24 and 48 kHz on each run's grid -> two
subjects x two runs of NIfTI simulated from the stimulus features -> features (embeddings + HRF) ->
leave-one-run-out ridge -> evaluate (with the noise ceiling) -> a reconstruction -> quantise -> decode ->
quality. Every step's result is checked; nothing is written outside the store and the test's folders."""

from __future__ import annotations

import json
from fractions import Fraction
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import soundfile as sf

import giblet_store as gs
from giblet_store.cli import main

TR, N, ONSETS = 1.0, 20, {"1": 0.0, "2": 20.0}  # a 40 s movie shown in two runs of 20 TRs
SHAPE, K, LAGS = (6, 5, 4), 2, (4, 5, 6)  # 120 voxels; 2 stimulus components; decoder lags (TRs)
ROOT = Path(__file__).resolve().parents[2]


def cli(*argv) -> str:
    """``giblet-store ARGV --json`` in-process; its JSON output."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([str(a) for a in argv])
    assert code == 0, buf.getvalue()[-2000:]
    return buf.getvalue()


def movie(folder: Path) -> Path:
    """A 40 s mp4 (PyAV: a small video, AAC 48 kHz stereo) whose sound is a block design: 4 s blocks of a
    harmonic tone, noise or clicks in a seeded order (each class in both runs), so that the stimulus varies
    along a few directions of the embedding space that both runs share."""
    from giblet_store.testing.video import write_movie

    sr, n = 48000, int(4 * TR * 48000)
    t = np.arange(n) / sr
    rng = np.random.default_rng(7)
    sounds = [0.3 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 660 * t),
              0.2 * rng.standard_normal(n),
              np.where(np.arange(n) % 4800 < 48, 0.8, 0.0) + 0.02 * rng.standard_normal(n)]
    order = [0, 1, 2, 0, 2, 1, 0, 2, 1, 0]  # 10 blocks of 4 s: every class in both runs
    mono = np.concatenate([sounds[c] for c in order]).astype(np.float32)
    return write_movie(folder / "movie.mp4", np.stack([mono, 0.8 * mono]), sr, codec="aac")


def codes_per_run(store_dir: Path, mp4: Path, model: Path, bandwidth: float) -> dict[str, gs.Entry]:
    """``giblet-store extract`` of the movie on each run's grid (TR 0 of run r = stimulus time ONSETS[r])."""
    store = gs.open_store(store_dir, mode="r")
    out = {}
    for run, onset in ONSETS.items():
        res = json.loads(cli("extract", mp4, "--store", store_dir, "--model", model, "--bandwidth", bandwidth,
                             "--tr", TR, "--onset", onset, "--n-trs", N, "--json", "--no-progress"))
        out[run] = store.get(res["entries"][0]["key"])
    return out


def stimulus_drive(store, emb: dict, hrf: dict) -> np.ndarray:
    """(run, tr, K) z-scored stimulus drive: each run's HRF-convolved embedding means projected on the K main
    axes of the whole movie's embedding means (what the simulated brain is tuned to)."""
    raw = np.concatenate([store.open(emb[r])["embedding_mean"].values.astype(np.float64) for r in ONSETS])
    x = np.stack([store.open(hrf[r])["embedding_mean"].values.astype(np.float64) for r in ONSETS]) @ pcs(raw).T
    return (x - x.reshape(-1, K).mean(0)) / x.reshape(-1, K).std(0)


def simulate_scans(folder: Path, drive: np.ndarray, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Two subjects x two runs of 4D NIfTI: the front half of the voxels follows the stimulus (same weights
    in every subject), every voxel has independent unit noise; returns the files and the signal mask."""
    rng = np.random.default_rng(seed)
    n_vox = int(np.prod(SHAPE))
    signal_mask = np.zeros(SHAPE, bool)
    signal_mask[: SHAPE[0] // 2] = True
    weights = rng.standard_normal((K, n_vox)) * signal_mask.reshape(-1)
    files = []
    for s in ("s1", "s2"):
        for i, run in enumerate(ONSETS):
            vol = 100 + 2.0 * drive[i] @ weights + rng.standard_normal((N, n_vox))
            img = nib.Nifti1Image(vol.T.reshape(*SHAPE, N).astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
            img.header.set_zooms((3.0, 3.0, 3.0, TR))
            img.header.set_xyzt_units("mm", "sec")
            files.append(folder / f"sub-{s}_run-{run}_bold.nii.gz")
            nib.save(img, files[-1])
    return files, signal_mask


def pcs(x: np.ndarray, k: int = K) -> np.ndarray:
    """(k, dim) main axes of the rows of ``x`` orthogonal to their mean: a projection on them has mean 0, so
    the causal HRF of it has no onset ramp (the response to the mean level, which would dominate)."""
    m = x.mean(0) / np.linalg.norm(x.mean(0))
    xc = x - x.mean(0)
    return np.linalg.svd(xc - np.outer(xc @ m, m), full_matrices=False)[2][:k]


def ridge(x_train, y_train, x_test, alpha: float = 1.0) -> np.ndarray:
    """Closed-form ridge with an intercept, on features standardised with the training statistics."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9
    xs = [np.c_[np.ones(len(x)), (x - mu) / sd] for x in (x_train, x_test)]
    reg = alpha * np.eye(xs[0].shape[1])
    reg[0, 0] = 0.0
    return xs[1] @ np.linalg.solve(xs[0].T @ xs[0] + reg, xs[0].T @ y_train)


def lagged(x: np.ndarray) -> np.ndarray:
    """(tr, voxel) -> (tr, lag * voxel): fMRI at t + lag (the last TR repeated past the end)."""
    idx = np.minimum(np.arange(len(x))[:, None] + np.array(LAGS)[None, :], len(x) - 1)
    return x[idx].reshape(len(x), -1)


@pytest.mark.slow
def test_a_whole_study_on_generated_media(tmp_path, model_dir, model48_dir, monkeypatch):
    work, store_dir = tmp_path / "work", tmp_path / "store"
    work.mkdir()
    monkeypatch.chdir(work)  # anything written to the working folder would show up here
    checkout_before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True,
                                     text=True).stdout
    mp4 = movie(tmp_path)
    store = gs.open_store(store_dir)

    # 1. codes at both rates on each run's grid, from the mp4's AAC stream
    c24 = codes_per_run(store_dir, mp4, model_dir, 1.5)
    c48 = codes_per_run(store_dir, mp4, model48_dir, 3.0)
    for run, onset in ONSETS.items():
        for entry, fps in ((c24[run], 75), (c48[run], 150 / 0.99)):
            a, ds = entry.attrs, entry.open()
            assert a["onset_s"] == onset and a["n_trs"] == N and a["audio_codec"] == "aac"
            assert abs(a["audio_offset_s"]) <= 1 / 48000 and abs(a["duration_s"] - 2 * N * TR) < 1 / 75
            # every TR whole: 75 frames at 24 kHz; at 48 kHz 150 frames every 0.99 s (the model's chunks)
            assert ds.sizes["tr"] == N and (np.abs(ds["n_frames"].values - fps * TR) <= 1).all()
    assert Fraction(c24["1"].attrs["frames_per_tr"]) == 75 and Fraction(c48["1"].attrs["frames_per_tr"]) == Fraction(150 * 100, 99)
    assert c48["1"].attrs["audio_channels"] == 2 and c24["1"].attrs["audio_channels"] == 1  # the mono model: a mix
    assert c24["1"].attrs["source_channels"] == c48["1"].attrs["source_channels"] == 2

    # 2. features: embeddings, then the SPM HRF (each run on its own grid)
    emb = {r: store.derive(c24[r], gs.Embeddings()) for r in ONSETS}
    hrf = {r: store.derive(emb[r], gs.Hrf("spm", length_s=16.0)) for r in ONSETS}
    assert [e.key for e in store.lineage(hrf["2"])] == [hrf["2"].key, emb["2"].key, c24["2"].key]

    # 3. fMRI: two subjects x two runs simulated from the features, ingested with the CLI, run r on c24[r]'s grid
    drive = stimulus_drive(store, emb, hrf)
    files, signal = simulate_scans(tmp_path, drive)
    res = json.loads(cli("ingest-fmri", store_dir, *files, "--subject", "s1", "s1", "s2", "s2", "--run", "1", "2",
                         "1", "2", "--stimulus", c24["1"].key, c24["2"].key, "--json", "--no-progress"))
    fmri = store.get(res["entries"][0]["key"])
    assert [(x["run"], x["tr_offset"], x["n_trs"], x["stimulus_key"]) for x in fmri.attrs["runs"]] == [
        ("1", 0, N, c24["1"].key), ("2", N, N, c24["2"].key)]
    ijk = store.open(fmri)["voxel_ijk"].values
    sig = signal[ijk[:, 0], ijk[:, 1], ijk[:, 2]]

    # 4. leave-one-run-out ridge: each run predicted by the model fitted on the other, features paired by join
    xy = {r: gs.join(store.open(hrf[r])[["embedding_mean"]], gs.select_run(fmri, r)) for r in ONSETS}
    assert all(gs.select_run(fmri, r).attrs["onset_s"] == ONSETS[r] for r in ONSETS)  # each run's own grid
    assert all(xy[r].sizes["tr"] == N for r in ONSETS)
    pred = np.zeros(store.open(fmri)["fmri"].shape, np.float32)  # (subject, tr, voxel)
    for test_run, train_run in (("1", "2"), ("2", "1")):
        # features: the HRF-convolved embedding means on the K main axes of the training run's embedding means
        axes = pcs(store.open(emb[train_run])["embedding_mean"].values.astype(np.float64))
        x_train, x_test = (xy[r]["embedding_mean"].values.astype(np.float64) @ axes.T for r in (train_run, test_run))
        start = fmri.attrs["runs"][int(test_run) - 1]["tr_offset"]
        for s in range(2):
            pred[s, start:start + N] = ridge(x_train, xy[train_run]["fmri"].values[s], x_test)
    ckpt = tmp_path / "ridge.json"
    ckpt.write_text(json.dumps({"alpha": 1.0, "k": K}))
    pe, _ = gs.write_predictions(store, pred, fmri, model_name="ridge(embedding_mean, leave-one-run-out)",
                                 checkpoint=ckpt, training_params={"alpha": 1.0, "cv": "leave-one-run-out"})

    # 5. evaluate with the CLI: r per run on held-out data, the noise ceiling, r / ceiling
    ev = store.get(json.loads(cli("evaluate", store_dir, pe.key, "--json"))["entries"][0]["key"])
    eds = store.open(ev)
    r_run = eds["r_run"].values  # (subject, run, voxel)
    assert eds["r_run"].dims == ("subject", "run_id", "voxel") and list(eds["run_id"].values) == ["1", "2"]
    assert np.nanmean(r_run[..., sig]) > 0.6 and abs(np.nanmean(r_run[..., ~sig])) < 0.1  # planted vs none
    ceiling, scores = eds["noise_ceiling"].values, ev.attrs["scores"]["all"]
    assert np.nanmean(ceiling[sig]) > 0.6 and scores["n_voxels_normalised"] >= sig.sum()  # signal voxels reliable
    assert 0.7 < scores["r_over_ceiling"] < 1.2  # a model of the planted signal, held out: near its ceiling

    # 6. reconstruction: run 1's main fMRI components at t+4..t+6 (around the HRF peak) -> its embedding means
    #    K main components, applied to run 2; the last 6 TRs of a run have no fMRI that late, so are left out
    true = {r: store.open(emb[r])["embedding_mean"].values.astype(np.float64) for r in ONSETS}
    bold = {r: gs.select_run(fmri, r)["fmri"].mean("subject").values.astype(np.float64) for r in ONSETS}
    space = np.linalg.svd(bold["1"] - bold["1"].mean(0), full_matrices=False)[2][:4]
    fm = {r: lagged((bold[r] - bold["1"].mean(0)) @ space.T)[:N - LAGS[-1]] for r in ONSETS}
    mu, axes = true["1"].mean(0), pcs(true["1"])
    scores = ridge(fm["1"], (true["1"][:N - LAGS[-1]] - mu) @ axes.T, fm["2"], alpha=10.0)
    held = (0, N - LAGS[-1])
    rec, _ = gs.write_reconstruction(store, (scores @ axes + mu).astype(np.float32), emb["2"], fmri=fmri,
                                     checkpoint=ckpt, training_params={"alpha": 10.0, "train_run": "1"}, trs=held,
                                     model_name="ridge: fmri components at t+4..t+6 -> embedding_mean")
    assert rec.attrs["parent"] == [fmri.key, emb["2"].key] and rec.attrs["tr_range"] == list(held)
    ident = gs.identify_reconstruction(store, rec)
    shuffled = gs.identify((scores @ axes + mu)[::-1], true["2"][slice(*held)])  # TRs in reverse order
    assert ident["n_segments"] == N - LAGS[-1] and ident["chance_rank_percentile"] == 0.5
    assert ident["mean_rank_percentile"] > 0.7 > shuffled["mean_rank_percentile"]
    assert ident["top1_accuracy"] > ident["chance_top1"]

    # 7. quantise with the model's RVQ, decode TRs 2:6 with the CLI, score them with the CLI against the codes
    q = store.derive(rec, gs.Quantise(bandwidth_kbps=1.5), model=str(model_dir))
    assert [e.key for e in store.lineage(q)][:2] == [q.key, rec.key]
    assert {fmri.key, emb["2"].key, c24["2"].key} <= {e.key for e in store.lineage(q)}
    wav = work / "run2_tr2-6.wav"
    cli("decode", store_dir, q.key, "-o", wav, "--trs", "2:6")
    n_frames = store.open(c24["2"])["n_frames"].values[2:6]
    assert sf.info(str(wav)).frames == int(n_frames.sum()) * 320 and sf.info(str(wav)).samplerate == 24000
    res = json.loads(cli("quality", c24["2"].key, q.key, "--store", store_dir, "--trs", "2:6",
                         "--metrics", "snr,si_sdr,lsd", "--json", "--no-progress"))
    qa = store.get(res["entries"][0]["key"])
    assert qa.kind == "quality" and set(qa.attrs["whole_values"]) == {"snr_db", "si_sdr_db", "lsd_db"}
    assert all(np.isfinite(v) for v in qa.attrs["whole_values"].values())
    per_tr = store.open(qa)
    assert all(np.isfinite(per_tr[v].values).all() for v in per_tr.data_vars if per_tr[v].dims == ("tr",))

    # nothing was written outside the store and this test's folders (the working folder holds only the wav)
    assert sorted(p.name for p in work.iterdir()) == [wav.name]
    assert subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True,
                          text=True).stdout == checkout_before
