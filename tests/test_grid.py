"""The TR grid: exact frame assignment, nothing dropped, nothing doubled."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from giblet_store.errors import ParameterError
from giblet_store.grid import TrGrid, exact, from_tr, to_tr

from hypothesis_profiles import budget  # a test's example budget, scaled by the profile


def test_exact_reads_decimals():
    assert exact(0.1) == Fraction(1, 10)
    assert exact(1.5) == Fraction(3, 2)
    assert TrGrid(1.5).frames_per_tr(75) == Fraction(225, 2)
    assert TrGrid(1.5).slots(75) == 113


def test_sherlock_grid_keeps_every_frame_and_does_not_drift():
    # 946 TRs of 1.5 s at 75 Hz: cropping to 112 frames would drift 6.3 s by the last TR
    n = 106425  # 946 * 112.5 frames
    layout = TrGrid(1.5).layout(n, 75)
    assert layout.n_trs == 946 and layout.slots == 113
    assert layout.n_frames[:4].tolist() == [113, 112, 113, 112]
    assert int(layout.n_frames.sum()) == n
    # the first frame of TR i starts at ceil(112.5 i): never more than one frame (13.3 ms) from i*1.5 s
    t_first = layout.starts[:-1] / 75.0
    assert np.abs(t_first - 1.5 * np.arange(946)).max() < 1 / 75


@settings(budget(200), deadline=None)
@given(
    tr=st.floats(0.5, 3.0, allow_nan=False),
    onset=st.floats(-5.0, 5.0, allow_nan=False),
    n=st.integers(0, 1500),
    rate=st.sampled_from([75, 150, Fraction(16000, 512), Fraction(22050, 256)]),
    n_trs=st.one_of(st.none(), st.integers(1, 120)),
)
def test_grid_conserves_frames(tr, onset, n, rate, n_trs):
    import warnings

    grid = TrGrid(tr, onset, n_trs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # crop/onset warnings are tested separately
        layout = grid.layout(n, rate)
    stream = np.random.default_rng(n).integers(0, 1024, size=(2, n)).astype(np.int16)
    gridded = to_tr(stream, layout, fill=-1)
    assert gridded.shape == (layout.n_trs, 2, layout.slots)
    assert layout.slots == -(-exact(rate) * exact(tr) // 1)
    nf = layout.n_frames
    assert (nf >= 0).all() and (nf <= layout.slots).all()
    # concatenating the real frames of every TR returns the stream inside the grid bit for bit
    inside = stream[:, layout.frames_before_grid : n - layout.frames_after_grid]
    np.testing.assert_array_equal(from_tr(gridded, nf), inside)
    assert layout.frames_before_grid + int(nf.sum()) + layout.frames_after_grid == n
    # no frame in two TRs: starts never decrease, and each frame's TR is the rational formula's
    assert (np.diff(layout.starts) >= 0).all()
    for i in range(min(layout.n_trs, 5)):
        for f in range(layout.starts[i], layout.starts[i + 1]):
            assert grid.tr_of_frame(f, rate) == i
    # the tail of each TR is fill
    slot = np.arange(layout.slots)
    assert (gridded.transpose(1, 0, 2)[:, slot[None, :] >= nf[:, None]] == -1).all()


def test_pad_with_empty_trs():
    layout = TrGrid(1.5, n_trs=10).layout(300, 75)
    assert layout.n_trs == 10
    assert layout.n_frames.tolist()[-6:] == [0] * 6 and int(layout.n_frames.sum()) == 300


def test_crop_warns_and_counts():
    with pytest.warns(UserWarning, match="crops 75 frame"):
        layout = TrGrid(1.5, n_trs=2).layout(300, 75)
    assert layout.frames_after_grid == 75 and int(layout.n_frames.sum()) == 225


def test_negative_onset_leads_with_empty_trs():
    layout = TrGrid(1.5, onset_s=-3.0).layout(300, 75)
    assert layout.n_frames[:2].tolist() == [0, 0] and layout.n_frames[2] == 113


def test_positive_onset_warns_and_counts():
    with pytest.warns(UserWarning, match="precede TR 0"):
        layout = TrGrid(1.5, onset_s=1.0).layout(300, 75)
    assert layout.frames_before_grid == 75 and layout.starts[0] == 75


def test_float_fill_for_features():
    layout = TrGrid(1.0).layout(5, 3)
    g = to_tr(np.arange(5, dtype=np.float32)[None], layout, fill=np.nan)
    assert g.shape == (2, 1, 3) and np.isnan(g[1, 0, 2]) and g[1, 0, 1] == 4


@pytest.mark.parametrize("tr", [0, -1.5, float("nan"), float("inf"), 61.0, 1500, "1.5", True])
def test_bad_tr(tr):
    with pytest.raises(ParameterError, match="tr_s"):
        TrGrid(tr)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_n_trs(n):
    with pytest.raises(ParameterError, match="n_trs"):
        TrGrid(1.5, n_trs=n)


def test_bad_onset():
    with pytest.raises(ParameterError, match="onset_s"):
        TrGrid(1.5, onset_s=float("nan"))


def test_grid_params_round_trip():
    g = TrGrid(2.0, -1.5, 40)
    assert TrGrid.from_dict(g.to_dict()) == g
    assert g.to_dict() == {"tr_s": 2.0, "onset_s": -1.5, "n_trs": 40}


def test_tr_ranges_are_start_stop_never_a_silently_misread_list():
    from giblet_store.grid import parse_tr_range

    for given in ("2:5", (2, 5), slice(2, 5), range(2, 5)):  # TRs 2, 3, 4 every way
        assert parse_tr_range(given, 10) == slice(2, 5), given
    assert parse_tr_range(slice(None, 3), 10) == slice(0, 3) and parse_tr_range("7:", 10) == slice(7, 10)
    with pytest.raises(ParameterError, match=r"range\(0, 6, 2\) has a step"):
        parse_tr_range(range(0, 6, 2), 10)
    # a list of TR indices is not (start, stop): [2, 3, 4] once meant TRs 2:3
    with pytest.raises(ParameterError, match=r"TR range \[2, 3, 4\] has 3 values; give START:STOP, \(start, stop\)"):
        parse_tr_range([2, 3, 4], 10)
