"""HRF kernels (vs nilearn), causal lazy convolution (property test), FIR delays, bad parameters."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from giblet_store.errors import ParameterError
from giblet_store.features.hrf import Fir, Hrf, convolve_causal, delay, hrf_curve, hrf_kernel

from hypothesis_profiles import budget  # a test's example budget, scaled by the profile


def _nilearn_grid(t_r: float, oversampling: int, length: float) -> np.ndarray:
    """nilearn's own time stamps, shifted by its ``loc=dt``: where its curve is evaluated."""
    dt = t_r / oversampling
    return np.linspace(0, length, int(np.rint(length / dt))) - dt


def _np_causal(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Reference: ``np.convolve(column, h)[:n]`` for every column of a (n, ...) array."""
    n = x.shape[0]
    flat = x.reshape(n, -1).astype(np.float64)
    out = np.stack([np.convolve(flat[:, j], h)[:n] for j in range(flat.shape[1])], axis=1)
    return out.reshape(x.shape)


# ------------------------------------------------------------------------------ kernels vs nilearn
@pytest.mark.parametrize("model", ["spm", "glover"])
@pytest.mark.parametrize("t_r,oversampling,length", [(1.5, 1, 32.0), (2.0, 16, 32.0), (0.8, 50, 25.0), (1.0, 3, 20.0)])
def test_curve_agrees_with_nilearn_on_its_grid(model, t_r, oversampling, length):
    from nilearn.glm.first_level import glover_hrf, spm_hrf

    ref = (spm_hrf if model == "spm" else glover_hrf)(t_r=t_r, oversampling=oversampling, time_length=length)
    ours = hrf_curve(_nilearn_grid(t_r, oversampling, length), Hrf(model))
    ours = ours / ours.sum()
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_nilearn_grid_is_not_tr_multiples_and_ours_is():
    from nilearn.glm.first_level import spm_hrf

    ref = spm_hrf(t_r=1.5, oversampling=1, time_length=32.0)
    assert ref.size == 21  # 21 points over 32 s: 1.6 s apart, not 1.5
    ours = hrf_kernel(Hrf("spm"), 1.5)
    assert ours.size == 22  # taps at 0, 1.5, ..., 31.5 s
    expected = hrf_curve(1.5 * np.arange(22), Hrf("spm"))
    np.testing.assert_allclose(ours, expected / expected.sum(), atol=1e-12)
    assert not np.allclose(ours[:21], ref, atol=1e-3)  # the two grids differ, which is why we document ours


def test_oversampled_kernel_is_the_mean_over_each_tr():
    from scipy.stats import gamma

    h = Hrf("glover", oversampling=400, length_s=30.0)
    k = hrf_kernel(h, 2.0)
    # exact integral of the double gamma over [2k, 2k+2) from the gamma CDFs
    edges = 2.0 * np.arange(k.size + 1)
    cdf = gamma.cdf(edges, 6.0 / 0.9, scale=0.9) - 0.48 * gamma.cdf(edges, 12.0 / 0.9, scale=0.9)
    exact = np.diff(cdf)
    np.testing.assert_allclose(k, exact / exact.sum(), atol=2e-3)
    assert not np.allclose(k, hrf_kernel(Hrf("glover", length_s=30.0), 2.0), atol=1e-2)


def test_hrf_params_round_trip_and_model_defaults():
    g = Hrf("Glover")
    assert g.model == "glover" and g.ratio == 0.48 and g.undershoot_delay_s == 12.0
    assert Hrf.from_dict(g.to_dict()) == g
    custom = Hrf("spm", peak_delay_s=5.0)
    assert custom.peak_delay_s == 5.0 and custom.ratio == 0.167
    assert custom.key != Hrf("spm").key
    assert sum(hrf_kernel(custom, 1.0)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(model="canonical"), "unknown HRF model 'canonical'.*glover, spm"),
        (dict(model=3), "unknown HRF model"),
        (dict(peak_dispersion=-1.0), "peak_dispersion must be > 0"),
        (dict(oversampling=0), r"oversampling must be an integer in \[1, 1000\], got 0 \(sub-samples per TR\)"),
        (dict(oversampling=2.5), "oversampling must be an integer"),
        (dict(onset_s=-1.0), "onset_s must be >= 0"),
        (dict(length_s=float("nan")), "length_s must be a finite number"),
        (dict(ratio=-0.1), "ratio must be >= 0"),
    ],
)
def test_bad_hrf_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        Hrf(**kwargs)


@pytest.mark.parametrize(
    "delays,match",
    [
        ((1, -2), "negative"),
        ((1, 1.5), "whole TRs"),
        ((1.0, 2.0), "whole TRs"),
        (("1", "2"), "whole TRs"),
        ((), "empty"),
        ((1, 1), "distinct"),
        ("1,2", "list of whole TRs"),
    ],
)
def test_bad_fir_delays(delays, match):
    with pytest.raises(ParameterError, match=match):
        Fir(delays)


# ------------------------------------------------------------------------------ causal convolution
@pytest.mark.parametrize("model", ["spm", "glover"])
@pytest.mark.parametrize("tr", [0.5, 0.8, 1.0, 1.5, 2.0, 2.5])
def test_impulse_peaks_four_to_six_seconds_later_never_before(model, tr):
    n, t = 80, 7
    x = np.zeros((n, 2), np.float32)
    x[t] = 1.0
    y = convolve_causal(da.from_array(x, chunks=(9, 2)), hrf_kernel(Hrf(model), tr)).compute()
    assert np.all(y[:t] == 0)  # nothing before the stimulus
    lag_s = (int(np.argmax(y[:, 0])) - t) * tr
    assert 4.0 <= lag_s <= 6.0, lag_s


@settings(budget(40), deadline=None)
@given(
    n=st.integers(1, 60),
    taps=st.integers(1, 25),
    trailing=st.sampled_from([(), (1,), (3,), (2, 3)]),
    data=st.data(),
)
def test_lazy_causal_convolution_equals_np_convolve_for_every_chunking(n, taps, trailing, data):
    taps = min(taps, n)
    sizes, left = [], n
    while left:
        s = data.draw(st.integers(1, left), label="chunk")
        sizes.append(s)
        left -= s
    rng = np.random.default_rng(n * 100 + taps)
    x = rng.standard_normal((n,) + trailing).astype(np.float32)
    h = rng.standard_normal(taps)
    lazy = convolve_causal(da.from_array(x, chunks=(tuple(sizes),) + trailing), h)
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32 and lazy.shape == x.shape
    np.testing.assert_allclose(lazy.compute(), _np_causal(x, h), atol=1e-6 * max(1, np.abs(h).sum()), rtol=1e-6)


def test_convolution_on_another_axis_and_numpy_in_numpy_out():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 30, 5))  # (subject, tr, voxel)
    h = hrf_kernel(Hrf(), 2.0)[:10]
    y = convolve_causal(x, h, axis=1)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    ref = np.moveaxis(_np_causal(np.moveaxis(x, 1, 0), h), 0, 1)
    np.testing.assert_allclose(y, ref, atol=1e-12)


def test_dataarray_keeps_dims_coords_and_stays_lazy():
    x = xr.DataArray(
        np.random.default_rng(1).standard_normal((40, 3, 4)).astype(np.float32),
        dims=("tr", "frame", "dim"),
        coords={"tr": np.arange(40), "dim": [10, 11, 12, 13]},
        attrs={"units": "a.u."},
    ).chunk(tr=7)
    y = convolve_causal(x, hrf_kernel(Hrf(), 1.5), "tr")
    assert y.dims == x.dims and y.attrs == x.attrs and list(y["dim"].values) == [10, 11, 12, 13]
    assert isinstance(y.data, da.Array)
    np.testing.assert_allclose(y.values, _np_causal(x.values, hrf_kernel(Hrf(), 1.5)), atol=1e-6)


def test_kernel_longer_than_series_is_an_error():
    with pytest.raises(ParameterError, match="kernel has 22 taps but the series has 10"):
        convolve_causal(np.zeros((10, 2)), hrf_kernel(Hrf(), 1.5))


def test_integer_codes_are_refused_unless_reference_is_asked_for():
    codes = np.random.default_rng(2).integers(0, 1024, (30, 2, 5)).astype(np.int16)
    h = hrf_kernel(Hrf(), 1.5)
    with pytest.raises(ParameterError, match="embeddings"):
        convolve_causal(codes, h)
    with pytest.warns(UserWarning, match="reference project"):
        y = convolve_causal(codes, h, integer="reference", codebook_size=1024)
    assert y.dtype == np.int16 and y.min() >= 0 and y.max() <= 1023
    np.testing.assert_array_equal(y, np.clip(np.rint(_np_causal(codes, h)), 0, 1023).astype(np.int16))


# ------------------------------------------------------------------------------ FIR delays
def test_delays_shift_with_zeros_and_match_delayer_layout():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    delays = (0, 1, 3)
    y = delay(da.from_array(x, chunks=5), delays).compute()
    assert y.shape == (12, 3, 4)
    for i, d in enumerate(delays):
        np.testing.assert_array_equal(y[d:, i], x[: 12 - d])
        assert np.all(y[:d, i] == 0)
    # voxelwise_tutorials' Delayer: hstack of the delayed copies, delay-major
    delayer = np.hstack([np.vstack([np.zeros((d, 4)), x[: 12 - d]]) for d in delays])
    np.testing.assert_array_equal(y.reshape(12, -1), delayer)


def test_delay_dataarray_adds_delay_dim_after_tr():
    x = xr.DataArray(np.ones((10, 2), np.float32), dims=("tr", "dim")).chunk(tr=3)
    y = delay(x, Fir((1, 2)), "tr")
    assert y.dims == ("tr", "delay", "dim") and list(y["delay"].values) == [1, 2]
    assert float(y.sum()) == 2 * (9 + 8)


def test_delay_as_long_as_series_is_an_error():
    with pytest.raises(ParameterError, match="not shorter than the series"):
        delay(np.zeros((4, 2)), (1, 4))
