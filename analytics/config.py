"""A night's options in one object, and the defaults they start from.

`ageseg nightly` and `rescore` build one `NightConfig` from their Settings (jobs/settings.py
`Settings.night`); every step of the night (analytics/pipeline.py, analytics/day_tables.py)
and the Ray engine read it. The defaults live here and nowhere else: the CLI's options show
these same values.

Only the standard library here: the CLI imports this at start-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analytics.age_groups import AgeBins

DEFAULT_AGE_BINS = "0-17,18-24,25-34,35-44,45-54,55-64,65+"
DEFAULT_MIN_CELL = 10  # marketing cells with fewer receipts are suppressed
DEFAULT_CHALLENGE_AGE = 25.0  # "Challenge 25": ask anyone who looks under 25 for ID
DEFAULT_WINDOW_DAYS = 28  # trailing window of recommendations and compliance summaries
DEFAULT_COMPLIANCE_RETENTION_DAYS = 90
DEFAULT_BATCH_SIZE = 32  # model on a CPU


@dataclass(frozen=True)
class NightConfig:
    """What one night is run with: where its photos are and its tables go, how they are cut,
    and how the run is recorded. Plain values only, so every step can be called with one."""

    output_root: Path  # marketing: aggregates, small cells suppressed
    restricted_root: Path  # per-receipt estimates, compliance, camera quality
    photo_root: Path = Path(".")
    age_bins: str = DEFAULT_AGE_BINS
    min_cell: int = DEFAULT_MIN_CELL
    challenge_age: float = DEFAULT_CHALLENGE_AGE
    window_days: int = DEFAULT_WINDOW_DAYS
    compliance_retention_days: int = DEFAULT_COMPLIANCE_RETENTION_DAYS
    flag_probability: float | None = None  # None: the model card's operating point
    batch_size: int = DEFAULT_BATCH_SIZE
    prep_workers: int = 1  # threads reading, decoding and finding faces (models/score.py)
    today: dt.date | None = None  # retention counts back from here; None: the clock's today
    holder: str = ""  # the run lock the run holds (jobs/lock.py), recorded on its runs row
    corrected_estimates: bool = True  # the est_ columns and age_mix (analytics/estimates.py)

    @property
    def bins(self) -> AgeBins:
        from analytics.age_groups import AgeBins

        return AgeBins.parse(self.age_bins)

    def flag_rule(self, card: Mapping[str, object]) -> float | None:
        """The P(under the challenge age) at which a sale is flagged: the operator's
        --flag-probability, else the operating point on the model's card, else None (flag by
        the estimated age alone, for models without a calibrated distribution)."""
        if self.flag_probability is not None:
            return self.flag_probability
        calibration = card.get("calibration")
        if isinstance(calibration, Mapping) and calibration.get("flag_probability") is not None:
            return float(calibration["flag_probability"])
        return None

    def retention_cutoff(self) -> dt.date:
        """Compliance partitions for days before this are deleted (and not written)."""
        today = self.today or dt.date.today()
        return today - dt.timedelta(days=self.compliance_retention_days)

    def run_settings(self, model_version: str) -> dict[str, str]:
        """What a day's outputs were made with, as written into its files and SUCCESS
        marker; a rescore skips a day whose marker holds the same."""
        return {"model_version": model_version, "age_bins": self.bins.to_spec(),
                "min_cell": str(self.min_cell), "challenge_age": str(self.challenge_age),
                "window_days": str(self.window_days),
                "flag_probability": str(self.flag_probability)}
