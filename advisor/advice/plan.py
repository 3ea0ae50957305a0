"""The plan: everything one decision reads, built once at the top of a command (:mod:`advisor.advice.planning`) and
frozen. :func:`advisor.advice.decide.decide` turns it into a recommendation; the report's budget curve is the same plan
at other budgets (:meth:`Plan.with_budget`); the probe and ``advisor train`` read the facts, throughput, measured
feature extraction and learned predictor from it instead of building them again."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from .. import budget as budget_mod
from .. import registry
from ..rules import RuleBook
from ..registry import STRATEGY_NAMES
from ..schemas import Budget, DataFacts, DataProfile, Hardware, Quantity, Similarity, StrategyName, Throughput
from ..units import EpochEquivalents, speed_ratios

if TYPE_CHECKING:
    from ..data.scan import ScannedData


class Predictor(Protocol):
    """Anything that predicts each strategy's accuracy for the facts and budget (the fitted learned model). After
    :meth:`predict`, ``domain_note`` says how the facts lie outside the fitted region (empty inside); optional:
    ``anchored`` (the predictions are gains over a measured FE) and ``confidence(a, b)`` (P(a beats b))."""

    name: str
    domain_note: str

    def predict(self, facts: DataFacts, budget: EpochEquivalents | None,
                ratios: dict[StrategyName, float] | None = None) -> dict[StrategyName, Quantity]: ...


@dataclass(frozen=True)
class Plan:
    """One decision's inputs. ``hardware`` is the device planned for (a target profile's, or this one);
    ``fe`` feature extraction's accuracy measured on the images (or given by the caller), ``measure_note`` why it
    (or the pixel baseline) was not measured; ``pixels`` the pixel baseline measured on the images (:func:`advisor.measure.fe_accuracy.measure_pixels`);
    ``predictor`` the learned model (None: the rules decide); ``weights`` the backbone's weights file
(None: the packaged ImageNet weights); ``scanned``, ``profile`` and
    ``similarity`` the data folder's, when planned from images."""

    facts: DataFacts
    budget: Budget
    hardware: Hardware
    rules: RuleBook
    throughput: Throughput | None = None
    fe: Quantity | None = None
    measure_note: str | None = None
    predictor: Predictor | None = None
    backbone: str = registry.DEFAULT_BACKBONE
    weights: str | None = None
    scanned: ScannedData | None = None
    profile: DataProfile | None = None
    similarity: Similarity | None = None
    pixels: Quantity | None = None

    @property
    def images_per_second(self) -> dict[str, float]:
        return self.throughput.images_per_second if self.throughput else {}

    @property
    def epochs(self) -> dict[StrategyName, float | None]:
        """Each strategy's epochs in the budget at its planned speed (None where its speed is unknown)."""
        ips = self.images_per_second
        return {s: budget_mod.epochs_in(self.budget.seconds, self.facts.n_images, ips[s]) if s in ips else None
                for s in STRATEGY_NAMES}

    @property
    def k(self) -> EpochEquivalents | None:
        """The budget in epoch-equivalents (all-layer training's epochs; unrounded); None without throughput."""
        ips = self.images_per_second.get("retrain")
        return EpochEquivalents.from_seconds(self.budget.seconds, self.facts.n_images, ips) if ips else None

    @property
    def speed_ratios(self) -> dict[str, float] | None:
        """Each strategy's planned speed ÷ all-layer training's; None without throughput."""
        return speed_ratios(self.images_per_second) if self.throughput else None

    @property
    def measured_fe(self) -> Quantity | None:
        """Feature extraction's accuracy when it was measured (or given), else None."""
        return self.fe if self.fe is not None and self.fe.source == "measured" else None

    def with_budget(self, seconds: float) -> Plan:
        """The same plan at another budget (nothing measured again)."""
        return replace(self, budget=self.budget.model_copy(update={"seconds": float(seconds), "note": ""}))

    def with_predictor(self, predictor: Predictor | None) -> Plan:
        return replace(self, predictor=predictor)
