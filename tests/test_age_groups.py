"""Age-group specs: strict parsing, and binning where 17.6 is still 17."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.age_groups import AgeBins, AgeBinsError, assign_age_groups

DEFAULT = "0-17,18-24,25-34,35-44,45-54,55-64,65+"


def test_parse_default_spec():
    bins = AgeBins.parse(DEFAULT)
    assert bins.lowers == (0, 18, 25, 35, 45, 55, 65)
    assert bins.labels == ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"]
    assert bins.to_spec() == DEFAULT
    assert AgeBins.parse(bins.to_spec()) == bins


def test_parse_tolerates_spaces_and_single_open_group():
    assert AgeBins.parse(" 0-9 , 10+ ").to_spec() == "0-9,10+"
    assert AgeBins.parse("0+").labels == ["0+", "unknown"]
    assert AgeBins.parse("0-0,1+").labels == ["0-0", "1+", "unknown"]


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty"),
    ("0-17,,18+", "empty"),
    ("5-17,18+", "must start at 0"),
    ("0-17,19-24,25+", "gap: 18 missing"),
    ("0-17,17-24,25+", "overlaps"),
    ("0-17,18-24", "must be open-ended"),
    ("0-17,18+,30+", "must be the last"),
    ("0-17,24-18,25+", "'24-18' ends before it starts"),
    ("0-17,18-24,24+", "'24\\+' overlaps the previous group \\(ends at 24\\)"),
    ("0-17,adults", "cannot read age group 'adults'"),
    ("0-17,18-24.5,25+", "cannot read"),
    ("-5-17,18+", "cannot read"),
])
def test_parse_refuses_bad_specs_clearly(spec, message):
    with pytest.raises(AgeBinsError, match=message):
        AgeBins.parse(spec)


def test_direct_construction_is_validated_too():
    with pytest.raises(AgeBinsError, match="start at 0"):
        AgeBins((1, 18))
    with pytest.raises(AgeBinsError, match="increase"):
        AgeBins((0, 18, 18))
    assert issubclass(AgeBinsError, ValueError)


def test_assign_age_groups_floors_and_handles_edges():
    bins = AgeBins.parse(DEFAULT)
    ages = pd.Series(
        [17.6, 17.999, 18.0, 24.99, 25.0, 64.99, 65.0, 101.3, 0.0, 0.4, np.nan, -0.5, np.inf],
        index=list("abcdefghijklm"),
        name="age",
    )

    groups = assign_age_groups(ages, bins)

    assert groups.tolist() == [
        "0-17", "0-17", "18-24", "18-24", "25-34", "55-64", "65+", "65+", "0-17", "0-17",
        "unknown", "unknown", "unknown",
    ]
    assert list(groups.cat.categories) == bins.labels
    assert groups.index.tolist() == list("abcdefghijklm")
    assert groups.name == "age"


def test_assign_age_groups_accepts_nullable_and_empty_input():
    bins = AgeBins.parse("0-29,30+")
    groups = assign_age_groups(pd.Series([29.9, None, 30], dtype="Float64"), bins)
    assert groups.tolist() == ["0-29", "unknown", "30+"]
    empty = assign_age_groups(pd.Series([], dtype=float), bins)
    assert len(empty) == 0 and list(empty.cat.categories) == ["0-29", "30+", "unknown"]
