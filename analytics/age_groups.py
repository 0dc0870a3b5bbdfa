"""Age groups as operators write them ("0-17,18-24,...,65+"), validated before any work starts.

A bad spec (gap, overlap, not starting at 0, no open-ended last group) would silently drop or
double-count shoppers, so it is refused with a message naming the offending part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

UNKNOWN = "unknown"

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_OPEN = re.compile(r"^(\d+)\+$")


class AgeBinsError(ValueError):
    """The age-group spec is not a contiguous partition of ages 0 and up."""


@dataclass(frozen=True)
class AgeBins:
    """Contiguous age groups: `lowers[i]` starts group i, which ends where group i+1 starts.

    The last group is open-ended. Ages are whole years after flooring (17.6 is 17).
    """

    lowers: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.lowers:
            raise AgeBinsError("at least one age group is needed")
        if self.lowers[0] != 0:
            raise AgeBinsError(f"age groups must start at 0, not {self.lowers[0]}")
        for before, after in zip(self.lowers, self.lowers[1:], strict=False):
            if after <= before:
                raise AgeBinsError(f"age groups must increase: {after} follows {before}")

    @classmethod
    def parse(cls, spec: str) -> AgeBins:
        """Parse "0-17,18-24,...,65+"; raises AgeBinsError saying what is wrong and where."""
        parts = [part.strip() for part in spec.split(",")]
        if not spec.strip() or any(not part for part in parts):
            raise AgeBinsError(f"empty age group in {spec!r}")
        lowers: list[int] = []
        expected = 0
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if match := _OPEN.match(part):
                if not last:
                    raise AgeBinsError(f"open-ended group {part!r} must be the last one")
                low, high = int(match.group(1)), None
            elif match := _RANGE.match(part):
                if last:
                    raise AgeBinsError(f"last group must be open-ended like '65+', not {part!r}")
                low, high = int(match.group(1)), int(match.group(2))
                if high < low:
                    raise AgeBinsError(f"group {part!r} ends before it starts")
            else:
                raise AgeBinsError(f"cannot read age group {part!r}: use 'LOW-HIGH' or 'LOW+'")
            if low < expected:
                raise AgeBinsError(f"group {part!r} overlaps the previous group (ends at "
                                   f"{expected - 1})")
            if low > expected:
                what = "must start at 0" if expected == 0 else f"leaves a gap: {expected} missing"
                raise AgeBinsError(f"group {part!r} {what}")
            lowers.append(low)
            expected = high + 1 if high is not None else expected
        return cls(tuple(lowers))

    @property
    def labels(self) -> list[str]:
        """Group labels in age order, then "unknown" (no face, no estimate)."""
        return [*self._group_labels(), UNKNOWN]

    def to_spec(self) -> str:
        """The canonical spec string; `AgeBins.parse(b.to_spec()) == b`."""
        return ",".join(self._group_labels())

    def _group_labels(self) -> list[str]:
        uppers = [low - 1 for low in self.lowers[1:]]
        closed = [f"{low}-{high}" for low, high in zip(self.lowers, uppers, strict=False)]
        return [*closed, f"{self.lowers[-1]}+"]


def assign_age_groups(ages: pd.Series, bins: AgeBins) -> pd.Series:
    """Age group of each age (floored), as a Categorical with categories `bins.labels`.

    Missing, infinite and negative ages become "unknown": they are not ages anyone has.
    """
    values = pd.to_numeric(ages, errors="coerce").astype("float64").to_numpy()
    years = np.floor(values)
    valid = np.isfinite(years) & (years >= 0)
    codes = np.full(len(values), len(bins.lowers), dtype=np.int64)  # index of "unknown"
    codes[valid] = np.searchsorted(np.asarray(bins.lowers), years[valid], side="right") - 1
    categorical = pd.Categorical.from_codes(codes, categories=bins.labels)
    return pd.Series(categorical, index=ages.index, name=ages.name)
