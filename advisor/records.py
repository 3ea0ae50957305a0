"""The typed records advisor stores on a machine, one per table of :class:`advisor.store.Database`.

Every record is written and read through its model here: a row that does not fit (written by hand, by a
damaged file, or by a version that stored less) is skipped on reading with a warning naming its table and
row, instead of failing later where a field is used. Fields not named here are kept as they are.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator

from .schemas import ProbeResult, Quantity, StrategyName, Throughput, TimingConditions


class Stored(BaseModel):
    """What every stored record has: the machine it was made on and when (ISO 8601)."""

    model_config = ConfigDict(extra="allow")
    kind: str | None = None
    machine: str | None = None
    time: str

    @field_validator("time")
    @classmethod
    def _iso(cls, value: str) -> str:
        datetime.fromisoformat(value)  # raises ValueError: the record does not fit
        return value


class Versioned(Stored):
    """A measurement whose reuse depends on the advisor and torch versions that made it."""

    advisor_version: str | None = None
    torch_version: str | None = None


class ThroughputRecord(Versioned):
    """A throughput timed (or corrected by a probe) on this machine, reused by later advice."""

    device_name: str
    backbone: str
    scratch: str | None = None
    resolution: int
    batch_size: int
    throughput: Throughput
    conditions: TimingConditions | None = None
    source: str = "timing"
    changes: dict[str, tuple[float, float]] = {}


class ProbeFacts(BaseModel):
    n_images: int
    n_classes: int
    similarity: float


class ProbeAdvice(BaseModel):
    before: StrategyName
    after: StrategyName


class ProbeRecord(Stored):
    """The learned model's errors a probe observed (:func:`advisor.measure.calibration.probe_record`)."""

    device_name: str | None = None
    errors: dict[StrategyName, float]
    reach: dict[StrategyName, float | None] = {}
    val_images: int = 0
    data: str
    facts: ProbeFacts | None = None
    advice: ProbeAdvice | None = None


class FeatureAccuracyRecord(Versioned):
    """Feature extraction's accuracy measured on a data set (:mod:`advisor.measure.fe_accuracy`), reused for the same files."""

    key: str
    data: str
    accuracy: Quantity


class ProbeResultRecord(ProbeResult):
    """A whole probe result as ``advisor probe`` returned it."""

    model_config = ConfigDict(extra="allow")
    machine: str | None = None
    time: str


RECORDS: dict[str, type[BaseModel]] = {
    "throughput": ThroughputRecord,
    "probe": ProbeRecord,
    "probe_result": ProbeResultRecord,
    "feature_accuracy": FeatureAccuracyRecord,
}
