"""validate.py: one rule, one wording, one place; the JSON schema agrees with MAX_TR_S."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from giblet_store import ParameterError, TrGrid
from giblet_store.validate import (
    MAX_TR_S, HrfModel, NanPolicy, ResampleMethod, choice, finite, int_in_range, number_like, positive_seconds,
    tr_seconds,
)

ROOT = Path(__file__).resolve().parents[1]


def test_schema_tr_limit_is_max_tr_s_and_the_repo_copy_matches_the_package():
    packaged = json.loads((ROOT / "giblet_store" / "schemas" / "entry.schema.json").read_text())
    assert packaged["properties"]["attrs"]["properties"]["tr_s"]["maximum"] == MAX_TR_S
    for path in (ROOT / "giblet_store" / "schemas").glob("*.json"):
        copy = ROOT / "schemas" / path.name
        assert copy.is_file() and json.loads(copy.read_text()) == json.loads(path.read_text()), path.name


@pytest.mark.parametrize("bad", [True, "1.5", None, math.nan, math.inf, -math.inf, [1.5]])
def test_finite_refuses_non_numbers_with_one_wording(bad):
    with pytest.raises(ParameterError, match=r"x must be a finite number, got"):
        finite("x", bad)


def test_finite_accepts_numpy_and_bounds():
    assert finite("x", np.float32(2.5)) == 2.5 and isinstance(finite("x", np.int64(3)), float)
    with pytest.raises(ParameterError, match=r"x must be > 0, got 0"):
        finite("x", 0, positive=True)
    with pytest.raises(ParameterError, match=r"x must be >= 1, got 0.5"):
        finite("x", 0.5, minimum=1)


def test_number_like_takes_numeric_text_but_not_bools():
    assert number_like("bw", "6") == 6.0
    for bad in (True, "six", "nan"):
        with pytest.raises(ParameterError, match="bw must be"):
            number_like("bw", bad)


def test_tr_seconds_is_the_one_tr_rule_used_by_the_grid_and_fmri():
    from giblet_store import FmriParams

    assert tr_seconds(1.5) == 1.5 and tr_seconds(MAX_TR_S) == MAX_TR_S
    for bad in (0, -1, math.nan, True):
        with pytest.raises(ParameterError, match="positive number of seconds"):
            tr_seconds(bad)
    for make in (lambda v: TrGrid(v), lambda v: FmriParams(tr_s=v)):
        with pytest.raises(ParameterError, match=r"longer than 60 s; fMRI TRs are 0.5-3 s"):
            make(1500)


def test_positive_seconds_and_int_in_range():
    assert positive_seconds("chunk_s", 10) == 10.0
    with pytest.raises(ParameterError, match=r"chunk_s=7 s is longer than 5 s"):
        positive_seconds("chunk_s", 7, maximum=5)
    assert int_in_range("n", np.int32(4), 1, 8) == 4 and int_in_range("n", None, 1, optional=True) is None
    with pytest.raises(ParameterError, match=r"n_trs must be a non-negative integer, got -3"):
        int_in_range("n_trs", -3, 0)
    with pytest.raises(ParameterError, match=r"workers must be a positive integer, got 0"):
        int_in_range("workers", 0, 1)
    for bad, match in ((0, r"n must be an integer in \[1, 8\], got 0"), (2.0, "n must be an integer, got 2.0"),
                       (True, "n must be an integer"), (None, "n must be an integer")):
        with pytest.raises(ParameterError, match=match):
            int_in_range("n", bad, 1, 8)


def test_choice_takes_enums_or_strings_and_lists_the_options():
    assert choice("method", "linear", ResampleMethod) == "linear"
    assert choice("method", ResampleMethod.STRETCH, ResampleMethod) == "stretch"
    assert choice("hrf", "glover", HrfModel) == "glover" and choice("p", "mask", NanPolicy) == "mask"
    with pytest.raises(ParameterError, match=r"nan_policy must be one of 'error', 'mask'; got 'drop'"):
        choice("nan_policy", "drop", NanPolicy)
    with pytest.raises(ParameterError, match=r"mode must be one of 'a', 'b'"):
        choice("mode", "c", ("a", "b"))


def test_int_in_range_hint_and_flag():
    with pytest.raises(ParameterError, match=r"d must be an integer, got 1.5; whole TRs only"):
        int_in_range("d", 1.5, 0, hint="; whole TRs only")
    with pytest.raises(ParameterError, match=r"d must be a non-negative integer, got -1; whole TRs only"):
        int_in_range("d", -1, 0, hint="; whole TRs only")
    from giblet_store.validate import flag

    assert flag("db", True) is True and flag("db", np.bool_(False)) is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(ParameterError, match=r"db must be True or False, got"):
            flag("db", bad)


def test_predicates_for_rules_whose_error_is_not_a_parameter_error():
    from giblet_store.validate import is_choice, is_format_version, is_integer

    assert is_integer(3) and is_integer(np.int64(3)) and not is_integer(True) and not is_integer(3.0)
    assert is_format_version(1, 2) and is_format_version(2, 2)
    for bad in (0, 3, True, 1.0, "1", None):
        assert not is_format_version(bad, 2), bad
    assert is_choice("auto", ResampleMethod) and is_choice(HrfModel.SPM, HrfModel) and not is_choice("drop", NanPolicy)


def test_option_lists_come_from_the_enums():
    from giblet_store.features.hrf import HRF_MODELS
    from giblet_store.features.resample import RESAMPLE_METHODS

    assert RESAMPLE_METHODS == tuple(m.value for m in ResampleMethod) and "auto" in RESAMPLE_METHODS
    assert sorted(HRF_MODELS) == sorted(m.value for m in HrfModel)


def test_no_inline_bool_number_checks_outside_validate():
    """Every 'isinstance(x, bool) or ...' rule lives in validate.py (attr_match compares, it does not validate)."""
    import re

    pattern = re.compile(r"isinstance\([^)]*bool\)")
    found = [f"{p.name}:{i}" for p in (ROOT / "giblet_store").rglob("*.py") if p.name not in ("validate.py", "attr_match.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
