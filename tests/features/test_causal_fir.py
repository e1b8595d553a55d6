"""Blocked Toeplitz causal FIR (causal_fir.py): exact causal convolution for every block/tile size,
left context, long kernels; HRF-derived keys record the convolution's version."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giblet_store.features.causal_fir import HRF_ALGORITHM_VERSION, causal_fir

from hypothesis_profiles import budget  # a test's example budget, scaled by the profile


def _exact(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """float64 ``np.convolve(column, h)[:n]`` per column."""
    n = x.shape[0]
    return np.stack([np.convolve(x[:, j].astype(np.float64), h)[:n] for j in range(x.shape[1])], axis=1)


@settings(budget(60), deadline=None)
@given(n=st.integers(1, 90), taps=st.integers(1, 40), cols=st.integers(1, 20),
       block=st.integers(1, 40), tile=st.integers(1, 9), context=st.booleans())
def test_equals_exact_causal_convolution_for_any_block_and_tile(n, taps, cols, block, tile, context):
    rng = np.random.default_rng(n * 1000 + taps * 10 + cols)
    h = rng.standard_normal(taps)
    x = rng.standard_normal((n, cols))
    k = taps - 1 if context else 0
    full = _exact(x, h)
    y = causal_fir(x, h, k, np.float64, block_rows=block, tile_cols=tile)
    assert y.shape == (max(n - k, 0), cols) and y.dtype == np.float64
    # with context, rows before k are context only: outputs k.. equal the full series' outputs k..
    np.testing.assert_allclose(y, full[k:], atol=1e-12 * max(1.0, np.abs(h).sum() * np.abs(x).max()), rtol=1e-12)


def test_float32_output_is_the_rounded_exact_result_at_any_scale():
    rng = np.random.default_rng(0)
    h = rng.random(22)
    h /= h.sum()
    for scale in (1.0, 1e3):
        x = (scale * rng.standard_normal((700, 300))).astype(np.float32)
        y = causal_fir(x, h, 0, np.float32)
        ex = _exact(x, h)
        assert y.dtype == np.float32
        # float64 accumulation: at most one float32 rounding away from the exact value
        assert np.all(np.abs(y - ex) <= np.spacing(np.abs(ex).astype(np.float32)) + 1e-30)


def test_integer_input_and_empty_shapes():
    h = np.array([0.5, 0.25, 0.25])
    x = np.arange(12, dtype=np.int16).reshape(6, 2)
    np.testing.assert_allclose(causal_fir(x, h, 0, np.float64), _exact(x, h))
    assert causal_fir(x[:2], h, 2, np.float64).shape == (0, 2)
    assert causal_fir(np.zeros((5, 0)), h, 0, np.float32).shape == (5, 0)


def test_hrf_derived_key_records_the_convolution_version(store, tone_wav, model_dir):
    import giblet_store as gs

    codes = gs.extract_codes(store, tone_wav, gs.CodecParams(str(model_dir), 1.5), gs.TrGrid(1.0)).entry
    emb = store.derive(codes, gs.Embeddings(), model=str(model_dir))
    bold = store.derive(emb, gs.Hrf("spm", length_s=4.0))
    assert bold.attrs["inputs"]["options"]["hrf_algorithm_version"] == HRF_ALGORITHM_VERSION == 2
    fir = store.derive(emb, gs.Fir((0, 1)))
    assert "hrf_algorithm_version" not in fir.attrs["inputs"]["options"]  # FIR delays are unchanged


@pytest.mark.parametrize("axis", [0, 1])
def test_hrf_convolve_causal_uses_it_on_any_axis(axis):
    from giblet_store.features.hrf import Hrf, convolve_causal, hrf_kernel

    h = hrf_kernel(Hrf(), 1.5)
    x = np.random.default_rng(3).standard_normal((60, 40, 3)).astype(np.float32)
    y = convolve_causal(x, h, axis=axis)
    ref = np.moveaxis(_exact(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1), h).reshape(
        np.moveaxis(x, axis, 0).shape), 0, axis)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref, atol=1e-6, rtol=0)
