"""The budget's one unit across advisor: epoch-equivalents.

A budget of k epoch-equivalents is k × the time one epoch of all-layer training (retrain) over the data
takes on the device at hand. Unlike seconds it means the same on a laptop and on an H100, so the
meta-dataset, the learned model, the probe's reach and calibration all speak it. Each strategy spends it
as the images that time buys at its own speed: ``k × speed_ratio`` epochs, where ``speed_ratio`` is the
strategy's images/s ÷ retrain's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z80 = 1.2816  # the standard normal quantile of an 80 % two-sided interval: half-width = Z80 × σ


def accuracy_se(accuracy: float, n: int) -> float:
    """The binomial standard error of an accuracy measured on ``n`` images, never zero (at least that of 50 %)."""
    n = max(n, 1)
    return math.sqrt(max(accuracy * (1 - accuracy), 0.25 / n) / n)


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The 80 % interval of an accuracy measured on ``n`` images, within [0, 1]."""
    half = Z80 * accuracy_se(accuracy, n)
    return max(0.0, accuracy - half), min(1.0, accuracy + half)


@dataclass(frozen=True, order=True)
class EpochEquivalents:
    value: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ValueError(f"epoch-equivalents must be finite and ≥ 0, got {self.value}")

    @classmethod
    def from_seconds(cls, seconds: float, n_images: int, retrain_images_per_second: float) -> "EpochEquivalents":
        """The budget ``seconds`` of this device, where retrain trains ``retrain_images_per_second``."""
        return cls(seconds * retrain_images_per_second / n_images)

    def epochs(self, speed_ratio: float = 1.0) -> float:
        """Passes over the data a strategy makes with this budget at ``speed_ratio`` × retrain's speed."""
        return self.value * speed_ratio

    def share_of(self, target: "EpochEquivalents") -> float:
        """How far this reaches toward ``target`` (0–1)."""
        return 1.0 if target.value <= 0 else min(1.0, self.value / target.value)

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return f"{self.value:.3g} epoch-equivalents"


def speed_ratios(images_per_second: dict[str, float]) -> dict[str, float] | None:
    """Each strategy's speed ÷ all-layer training's (retrain's); None when retrain's speed is unknown."""
    base = images_per_second.get("retrain")
    if not base:
        return None
    return {s: v / base for s, v in images_per_second.items() if v}
