"""Parameter values and content keys."""

import json
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from giblet_store.codec.encodec import CodecParams
from giblet_store.errors import ParameterError
from giblet_store.params import canonical_json, content_key

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))


@given(st.dictionaries(st.text(min_size=1, max_size=6), json_scalars, max_size=8))
def test_key_ignores_dict_order(d):
    reordered = dict(reversed(list(d.items())))
    assert content_key(d) == content_key(reordered)
    assert json.loads(canonical_json(d)) == json.loads(canonical_json(reordered))


def test_key_changes_with_any_value():
    base = {"a": 1, "b": {"c": 1.5}}
    assert content_key(base) != content_key({"a": 1, "b": {"c": 1.25}})
    assert content_key(base) != content_key({"a": 1, "b": {"c": 1.5}, "d": None})


def test_key_is_stable_across_processes():
    code = "from giblet_store.params import content_key; print(content_key({'x': [1, 2.5, 'y']}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == content_key({"x": [1, 2.5, "y"]})


def test_non_finite_values_cannot_be_keyed():
    with pytest.raises(ParameterError, match="not finite"):
        content_key({"x": float("nan")})


def test_codec_params_validate_and_round_trip():
    p = CodecParams("some/model", 3, chunk_s=10, context_s=2)
    assert CodecParams.from_dict(p.to_dict()) == p
    assert p.to_dict()["bandwidth_kbps"] == 3.0
    with pytest.raises(ParameterError, match="chunk_s"):
        CodecParams(chunk_s=0)
    with pytest.raises(ParameterError, match="context_s"):
        CodecParams(context_s=-1)
    with pytest.raises(ParameterError, match="unknown field"):
        CodecParams.from_dict({"bandwidth": 6})


def test_import_is_light():
    code = ("import sys, giblet_store; heavy = [m for m in ('torch', 'transformers', 'distributed', "
            "'librosa', 'nibabel') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
