"""Resampling between TR grids: exact nearest-earlier for codes, interpolation + anti-aliasing, stretch."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from giblet_store import content_key
from giblet_store.cli import main
from giblet_store.errors import ParameterError
from giblet_store.features.resample import Resample, resample_array, resample_plan


def features_entry(store, data: np.ndarray, tr_s=1.5, onset_s=0.0, name="x", dims=("tr", "dim")):
    """A source ``features`` entry written directly (no parent)."""
    n = data.shape[0]
    ds = xr.Dataset(
        {name: (dims, data)},
        coords={"tr": np.arange(n), "tr_start_s": (("tr",), onset_s + tr_s * np.arange(n, dtype=np.float64))},
    )
    key = content_key({"test": name, "sha": hashlib.sha256(data.tobytes()).hexdigest(), "tr": tr_s, "on": onset_s})
    entry, _ = store.write(ds, {"kind": "features", "key": key, "tr_s": tr_s, "onset_s": onset_s, "n_trs": n,
                                "hrf": "none", "source_name": "synthetic"})
    return entry


def _keys(store):
    return sorted(e.key for e in store.entries())


# ------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tr_s=0.0), "positive number of seconds"),
        (dict(tr_s=-2.0), "positive number of seconds"),
        (dict(tr_s=2000.0), "milliseconds"),
        (dict(), "give the target TR"),
        (dict(tr_s=2.0, method="cubic"), "unknown resampling method"),
        (dict(method="stretch"), "needs n_trs"),
        (dict(method="stretch", n_trs=10, tr_s=2.0), "leave tr_s unset"),
        (dict(tr_s=2.0, n_trs=0), "n_trs=0"),
        (dict(tr_s=2.0, antialias="yes"), "antialias must be True or False"),
    ],
)
def test_bad_resample_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Resample(**kwargs)


# ------------------------------------------------------------------------------ previous (codes)
@pytest.mark.parametrize("tr_in,on_in,tr_out,on_out", [(1.5, 0.0, 2.0, 0.0), (2.0, 0.0, 1.5, 0.0),
                                                       (1.5, 0.3, 2.0, -1.0), (0.1, 0.0, 0.3, 0.0)])
def test_previous_is_the_source_tr_containing_the_target_start_exactly(tr_in, on_in, tr_out, on_out):
    n = 40
    plan = resample_plan(n, tr_in, on_in, Resample(tr_out, on_out, method="previous"), integer=True)
    tri, oni, tro, ono = (Fraction(str(v)) for v in (tr_in, on_in, tr_out, on_out))
    for j in range(plan.n_trs):
        q = (ono + j * tro - oni) / tri
        i = q.numerator // q.denominator
        assert plan.valid[j] == (0 <= i < n)
        if plan.valid[j]:
            assert plan.i0[j] == i, (j, i, plan.i0[j])


def test_codes_rows_are_copied_and_outside_is_minus_one():
    codes = np.arange(10 * 2 * 3, dtype=np.int16).reshape(10, 2, 3)
    plan = resample_plan(10, 1.5, 0.0, Resample(2.0, onset_s=-2.0), integer=True)
    out = resample_array(da.from_array(codes, chunks=3), plan)
    assert isinstance(out, da.Array) and out.dtype == np.int16
    out = out.compute()
    assert np.all(out[0] == -1)  # [-2, 0) precedes the source
    np.testing.assert_array_equal(out[1], codes[0])  # starts at 0 s -> source TR 0
    np.testing.assert_array_equal(out[2], codes[1])  # 2 s -> TR 1 (1.5-3 s)
    np.testing.assert_array_equal(out[3], codes[2])  # 4 s -> TR 2 (3-4.5 s)


def test_linear_on_codes_is_refused():
    with pytest.raises(ParameterError, match="category indices"):
        resample_plan(10, 1.5, 0.0, Resample(2.0, method="linear"), integer=True)


# ------------------------------------------------------------------------------ linear
def test_linear_reproduces_a_ramp_in_stimulus_time_at_target_centres():
    tr_in, n = 1.5, 30
    centres = (np.arange(n) + 0.5) * tr_in
    x = np.stack([centres, 2 * centres + 1], axis=1)  # (tr, 2) linear in time
    plan = resample_plan(n, tr_in, 0.0, Resample(0.75), integer=False)  # finer: no low-pass
    assert plan.taps.size == 0
    y = resample_array(x, plan)
    t_out = (np.arange(plan.n_trs) + 0.5) * 0.75
    inside = (t_out >= centres[0]) & (t_out <= centres[-1])
    np.testing.assert_allclose(y[inside, 0], t_out[inside], atol=1e-12)
    np.testing.assert_allclose(y[inside, 1], 2 * t_out[inside] + 1, atol=1e-12)
    assert plan.n_trs == 60


def _sine_amplitude(freq_hz: float, antialias: bool) -> float:
    tr_in, tr_out, n = 1.0, 3.0, 600  # target centres fall on source centres: no interpolation blur
    t = (np.arange(n) + 0.5) * tr_in
    x = np.sin(2 * np.pi * freq_hz * t)[:, None].astype(np.float32)
    plan = resample_plan(n, tr_in, 0.0, Resample(tr_out, antialias=antialias), integer=False)
    y = resample_array(da.from_array(x, chunks=37), plan).compute()[:, 0]
    return float(np.abs(y[20:-20]).max())


def test_antialiasing_removes_what_would_alias_and_keeps_what_fits():
    # 0.4 Hz is below the source Nyquist (0.5 Hz) but above the target's (1/6 Hz): it would alias to 0.07 Hz
    assert _sine_amplitude(0.4, antialias=False) > 0.5
    assert _sine_amplitude(0.4, antialias=True) < 0.05
    assert _sine_amplitude(0.04, antialias=True) > 0.93


def test_linear_is_vectorised_over_trailing_dims_and_chunk_independent():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3, 4)).astype(np.float32)
    plan = resample_plan(50, 1.5, 0.0, Resample(2.0), integer=False)
    whole = resample_array(x, plan)
    assert whole.shape == (plan.n_trs, 3, 4) and whole.dtype == np.float32
    for chunks in (1, 7, 50):
        np.testing.assert_allclose(resample_array(da.from_array(x, chunks=(chunks, 3, 4)), plan).compute(), whole,
                                   atol=1e-6)
    column = resample_array(x[:, 1, 2], plan)
    np.testing.assert_allclose(whole[:, 1, 2], column, atol=1e-6)


def test_constant_stays_constant_through_the_filter():
    plan = resample_plan(45, 1.5, 0.0, Resample(2.0), integer=False)
    y = resample_array(np.full((45, 2), 3.0), plan)
    np.testing.assert_allclose(y, 3.0, atol=1e-9)


# ------------------------------------------------------------------------------ stretch
def test_stretch_is_the_reference_linspace():
    x = np.random.default_rng(1).standard_normal((14, 3))
    plan = resample_plan(14, 1.5, 0.0, Resample(method="stretch", n_trs=20), integer=False)
    y = resample_array(x, plan)
    pos = np.linspace(0, 13, 20)
    for c in range(3):
        np.testing.assert_allclose(y[:, c], np.interp(pos, np.arange(14), x[:, c]), atol=1e-12)
    assert plan.tr_s == pytest.approx(1.5 * 14 / 20)
    codes = np.arange(14, dtype=np.int16)
    plan_i = resample_plan(14, 1.5, 0.0, Resample(method="stretch", n_trs=20), integer=True)
    np.testing.assert_array_equal(resample_array(codes, plan_i), np.rint(pos).astype(np.int16))


# ------------------------------------------------------------------------------ entries
def test_derive_resample_writes_a_features_entry_with_its_grid_and_is_cached(store):
    x = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    src = features_entry(store, x)
    out = store.derive(src, Resample(2.0))
    a = out.attrs
    assert out.kind == "features" and a["parent"] == src.key and a["transform"] == "resample"
    assert (a["tr_s"], a["onset_s"], a["n_trs"]) == (2.0, 0.0, 23)
    assert a["resample"]["methods"] == {"x": "linear"} and a["resample"]["antialias_filter"]["numtaps"] == 13
    assert a["source_grid"] == {"tr_s": 1.5, "onset_s": 0.0, "n_trs": 30}
    ds = out.open()
    np.testing.assert_allclose(ds["tr_start_s"].values, 2.0 * np.arange(23))
    plan = resample_plan(30, 1.5, 0.0, Resample(2.0), integer=False)
    np.testing.assert_allclose(ds["x"].values, resample_array(x, plan), atol=1e-6)
    before = _keys(store)
    assert store.derive(src, Resample(2.0)) == out and _keys(store) == before  # cache hit
    assert store.derive(src, Resample(2.0, antialias=False)) != out


def test_cli_resample_to_zero_tr_writes_nothing(store, capsys):
    src = features_entry(store, np.ones((10, 2), np.float32))
    before = _keys(store)
    assert main(["derive", store.url, src.key[:12], "--resample-tr", "0"]) == 2
    assert "positive number of seconds" in capsys.readouterr().err
    assert _keys(store) == before
    assert main(["derive", store.url, src.key[:12], "--stretch", "15", "--json"]) == 0
    assert len(_keys(store)) == len(before) + 1
