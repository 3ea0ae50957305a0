"""The compute budget: parse what the user gave, and turn it into epochs with measured throughput."""

from __future__ import annotations

import math

from .errors import BudgetError
from .schemas import Budget, Hardware


def positive(value: object, what: str) -> float:
    """``value`` as a finite number > 0, else one :class:`BudgetError` naming ``what``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BudgetError(f"The budget {what} must be a number; got '{value}'.") from None
    if not math.isfinite(number) or number <= 0:
        raise BudgetError(f"The budget {what} must be greater than zero; got {value}.")
    return number


def make(hw: Hardware, gpu_hours: object = None, hours: object = None, minutes: object = None) -> Budget:
    """A budget from exactly one of ``gpu_hours``, ``hours`` (of this device) or ``minutes``."""
    given = {k: v for k, v in (("gpu_hours", gpu_hours), ("hours", hours), ("minutes", minutes)) if v is not None}
    if len(given) != 1:
        raise BudgetError("Give the budget once: --gpu-hours, --hours or --minutes.")
    (kind, value), = given.items()
    number = positive(value, kind.replace("_", "-"))
    seconds = number * (60 if kind == "minutes" else 3600)
    label = {"gpu_hours": "GPU-hour", "hours": "hour", "minutes": "minute"}[kind] + ("" if number == 1 else "s")
    note = ""
    if kind == "gpu_hours" and hw.device != "cuda":
        note = f"No GPU here: {number:g} {label} planned as {number:g} hour{'' if number == 1 else 's'} of {hw.name}."
    return Budget(seconds=seconds, given_as=f"{number:g} {label}", note=note)


def epochs_in(budget_seconds: float, n_images: int, images_per_second: float) -> float:
    """How many passes over ``n_images`` fit in the budget at the measured speed."""
    return budget_seconds * images_per_second / n_images
