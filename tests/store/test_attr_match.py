"""How find(**where) compares attributes (giblet_store.store.attr_match)."""

from giblet_store.store.attr_match import MISSING, lookup_attr, match, matches

ATTRS = {"bandwidth_kbps": 6.0, "tr_s": 1.5, "hrf_params": {"peak_delay_s": 6}, "db": True, "trs": [0, 10],
         "kind": "codes"}


def test_numbers_compare_by_value_and_booleans_exactly():
    assert match(6.0, 6) and match(1.5, 1.5 + 1e-12) and not match(1.5, 1.6)
    assert match(True, True) and not match(True, False) and not match(True, 1 + 1e-12)
    assert match("codes", "codes") and not match("codes", "mel")


def test_a_wanted_list_matches_any_value_unless_the_attribute_is_a_list():
    assert match(6.0, [1.5, 6]) and not match(6.0, [1.5, 3])
    assert match([0, 10], [0, 10]) and not match([0, 10], [0, 10, 20]) and not match([0, 10], [10, 0])


def test_dotted_names_reach_into_nested_attributes_and_missing_is_not_none():
    assert lookup_attr(ATTRS, "hrf_params.peak_delay_s") == 6
    assert lookup_attr(ATTRS, "hrf_params.ratio") is MISSING and lookup_attr(ATTRS, "tr_s.x") is MISSING
    assert matches(ATTRS, {"bandwidth_kbps": 6, "hrf_params.peak_delay_s": 6.0, "kind": ["codes", "mel"]})
    assert not matches(ATTRS, {"bandwidth_kbps": 6, "n_trs": None})  # absent never matches, not even None
    assert matches(ATTRS, {})


def test_a_string_that_reads_as_a_number_matches_it_and_other_strings_do_not():
    assert match(6.0, "6") and match(1.5, "1.5") and match(6, ["1.5", "6"]) and match("6", 6.0)
    assert not match(6.0, "six") and not match(6.0, "") and not match(True, "1") and not match(1, "true")


def test_check_where_refuses_unknown_names_with_the_closest_and_non_numbers_for_numbers():
    import pytest

    from giblet_store.errors import ParameterError
    from giblet_store.store.attr_match import check_where

    sets = [ATTRS, {**ATTRS, "bandwidth_kbps": 1.5, "source_name": "a.wav"}]
    check_where(sets, {"bandwidth_kbps": "6", "hrf_params.peak_delay_s": 6, "source_name": "a.wav"}, "codes entry")
    check_where([], {"anything": 1}, "codes entry")  # nothing to check against
    with pytest.raises(ParameterError, match=r"no codes entry has an attribute 'bandwith_kbps' \(did you mean "
                                             r"'bandwidth_kbps'\?\); the codes entry attributes are: bandwidth_kbps"):
        check_where(sets, {"bandwith_kbps": 6}, "codes entry")
    with pytest.raises(ParameterError, match=r"did you mean 'hrf_params.peak_delay_s'"):
        check_where(sets, {"hrf_params.peak_delay": 6}, "codes entry")
    with pytest.raises(ParameterError, match=r"tr_s is a number in every codes entry \(e.g. 1.5\); got 'fast'"):
        check_where(sets, {"tr_s": ["1.5", "fast"]}, "codes entry")
    with pytest.raises(ParameterError, match=r"got True"):
        check_where(sets, {"tr_s": True}, "codes entry")
