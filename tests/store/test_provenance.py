"""The provenance and TR-row rules predictions and reconstructions share: one rule, one wording."""

from __future__ import annotations

import numpy as np
import pytest

from giblet_store.errors import ParameterError, PredictionsError, ReconstructionError
from giblet_store.store.provenance import ModelProvenance, as_array, digests, tr_range, tr_rows


@pytest.mark.parametrize("error", [PredictionsError, ReconstructionError])
def test_each_caller_gets_its_own_error_class_with_the_same_wording(error, tmp_path):
    with pytest.raises(error, match="model_name is required"):
        ModelProvenance.of(" ", None, "a" * 64, None, error)
    with pytest.raises(error, match="does not exist; give the saved model file"):
        ModelProvenance.of("m", tmp_path / "nope.pt", None, None, error)
    with pytest.raises(error, match="64 hex digits"):
        ModelProvenance.of("m", None, "A" * 64, None, error)
    with pytest.raises(error, match=r"within the target.s 0:5, got \[2, 3, 4\]...\[5\]"):
        tr_rows([2, 3, 4, 5], 4, 5, error, "x")
    with pytest.raises(error, match="the x has 4 TRs but the target has 5"):
        tr_rows(None, 4, 5, error, "x")
    with pytest.raises(ParameterError):
        ModelProvenance.of("m", None, "a" * 64, {"f": object()}, error)


def test_a_checkpoint_file_is_hashed_and_wins_over_a_given_sha(tmp_path):
    ck = tmp_path / "m.pt"
    ck.write_bytes(b"weights")
    p = ModelProvenance.of("Ridge", ck, "0" * 64, {"alpha": 1.0}, PredictionsError)
    import hashlib

    assert p.checkpoint_sha256 == hashlib.sha256(b"weights").hexdigest()
    assert p.to_dict() == {"model_name": "Ridge", "checkpoint_sha256": p.checkpoint_sha256,
                           "training_params": {"alpha": 1.0}}


def test_tr_rows_accept_a_start_stop_pair_or_indices_and_record_their_range():
    np.testing.assert_array_equal(tr_rows((2, 5), 3, 10, PredictionsError, "x"), [2, 3, 4])
    np.testing.assert_array_equal(tr_rows([1, 4], 2, 10, PredictionsError, "x"), [1, 4])  # 2 rows: indices
    assert tr_range(np.array([2, 3, 4])) == [2, 5] and tr_range(np.array([], dtype=np.int64)) == [0, 0]
    a = digests(np.arange(3), np.zeros(3, np.float32))
    assert a != digests(np.arange(1, 4), np.zeros(3, np.float32))


def test_as_array_reads_torch_and_xarray_with_their_dims_and_coords():
    import torch
    import xarray as xr

    values, dims, coords = as_array(torch.ones(2, 3))
    assert values.shape == (2, 3) and dims is None and coords == {}
    da = xr.DataArray(np.zeros((1, 2)), dims=("subject", "tr"), coords={"tr": [5, 6]})
    values, dims, coords = as_array(da)
    assert dims == ("subject", "tr") and list(coords) == ["tr"] and coords["tr"].tolist() == [5, 6]
