"""Load the declarative rules (``rules/*.toml``) and evaluate them against the facts of a data set and budget."""

from __future__ import annotations

import operator
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PositiveFloat, PositiveInt, ValidationError, field_validator, model_validator

from .errors import RulesError
from .registry import FINE_TUNE_DEPTHS
from .registry import STRATEGY_NAMES
from .schemas import Budget, DataFacts, FiredRule, Hardware, Quantity, StrategyName

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
FACTS = (
    "n_images", "n_classes", "images_per_class", "resolution", "channels", "imbalance", "similarity", "budget_hours",
    *(f"epochs_{s}" for s in STRATEGY_NAMES), "fe_accuracy",
)
SETTINGS = {"augmentation": ("light", "strong"), "hflip": (True, False), "fine_tune_depth": FINE_TUNE_DEPTHS}
_CONDITION = re.compile(r"^\s*(\w+)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    when: list[str] = Field(default_factory=list)
    prefer: dict[StrategyName, float] = Field(default_factory=dict)
    exclude: list[StrategyName] = Field(default_factory=list)
    set_: dict[str, str | bool | int] = Field(default_factory=dict, alias="set")
    reason: str

    @field_validator("set_")
    @classmethod
    def _known_settings(cls, value: dict) -> dict:
        for key, v in value.items():
            if key not in SETTINGS or v not in SETTINGS[key]:
                raise ValueError(f"setting {key}={v!r} unknown; allowed: {SETTINGS}")
        return value

    def effect(self) -> str:
        parts = [f"{s} {p:+g}" for s, p in self.prefer.items()]
        parts += [f"exclude {s}" for s in self.exclude]
        parts += [f"{k}={v}" for k, v in self.set_.items()]
        return ", ".join(parts)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(gt=0, allow_inf_nan=False, description="temperature of the logistic turning the rule-score gap to the runner-up into a confidence")


class PlanLimits(BaseModel):
    """The rules file's ``[settings]`` section: the resolutions a plan may use and the standard batch sizes (not
    :class:`advisor.schemas.Settings`, the settings advised for one strategy)."""

    model_config = ConfigDict(extra="forbid")

    min_resolution: PositiveInt
    max_resolution: PositiveInt
    batch_size_cpu: PositiveInt
    batch_size_gpu: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> "PlanLimits":
        if self.min_resolution > self.max_resolution:
            raise ValueError(f"min_resolution {self.min_resolution} is above max_resolution {self.max_resolution}")
        return self


class MaxEpochs(BaseModel):
    """Planned epochs are capped here, per strategy."""

    model_config = ConfigDict(extra="forbid")

    feature_extraction: PositiveFloat = Field(allow_inf_nan=False)
    fine_tune: PositiveFloat = Field(allow_inf_nan=False)
    retrain: PositiveFloat = Field(allow_inf_nan=False)
    scratch: PositiveFloat = Field(allow_inf_nan=False)


class RuleBook(BaseModel):
    """A whole rules file, validated whole: thresholds, decision and settings constants, and the rules."""

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, FiniteFloat]
    decision: Decision
    settings: PlanLimits
    max_epochs: MaxEpochs
    rule: list[Rule] = Field(min_length=1)
    source: str = ""

    def model_post_init(self, _context) -> None:
        for r in self.rule:
            for cond in r.when:
                self._parse(cond, r.id)

    def _parse(self, condition: str, rule_id: str = "?") -> tuple[str, str, float]:
        m = _CONDITION.match(condition)
        if not m:
            raise RulesError(f"rule '{rule_id}': cannot read condition '{condition}'; write '<fact> <op> <threshold>'.")
        fact, op, rhs = m.groups()
        if fact not in FACTS:
            raise RulesError(f"rule '{rule_id}': unknown fact '{fact}'; known facts: {', '.join(FACTS)}.")
        if rhs in self.thresholds:
            return fact, op, self.thresholds[rhs]
        try:
            return fact, op, float(rhs)
        except ValueError:
            raise RulesError(f"rule '{rule_id}': '{rhs}' is neither a number nor a threshold in [thresholds].") from None

    def holds(self, rule: Rule, facts: dict[str, float]) -> bool:
        for cond in rule.when:
            fact, op, value = self._parse(cond, rule.id)
            if facts.get(fact) is None or not OPS[op](facts[fact], value):
                return False
        return True


@dataclass
class Outcome:
    """What the fired rules say: a score per strategy, exclusions, settings and the reasons."""

    scores: dict[StrategyName, float]
    excluded: dict[StrategyName, list[str]] = field(default_factory=dict)
    settings: dict[str, str | bool] = field(default_factory=dict)
    fired: list[FiredRule] = field(default_factory=list)
    points: dict[StrategyName, list[tuple[Rule, float]]] = field(default_factory=dict)  # (rule, points) per strategy

    def reasons_for(self, strategy: StrategyName) -> list[str]:
        """Why rules scored ``strategy`` as they did, one line per rule."""
        return [f"{rule.id} ({p:+g}): {rule.reason}" for rule, p in self.points[strategy]] + [
            f"excluded by {r}" for r in self.excluded.get(strategy, [])
        ]

    def support(self, strategy: StrategyName) -> list[str]:
        """The reasons of the rules that spoke for ``strategy``."""
        return [rule.reason for rule, p in self.points[strategy] if p > 0]


def evaluate(book: RuleBook, facts: dict[str, float]) -> Outcome:
    """Fire every rule whose conditions hold; later ``set`` effects override earlier ones."""
    out = Outcome(scores={s: 0.0 for s in STRATEGY_NAMES}, points={s: [] for s in STRATEGY_NAMES})
    for rule in book.rule:
        if not book.holds(rule, facts):
            continue
        out.fired.append(FiredRule(id=rule.id, reason=rule.reason, effect=rule.effect()))
        for strategy, points in rule.prefer.items():
            out.scores[strategy] += points
            out.points[strategy].append((rule, points))
        for strategy in rule.exclude:
            out.excluded.setdefault(strategy, []).append(f"{rule.id}: {rule.reason}")
        out.settings.update(rule.set_)
    return out


def default_path() -> Path:
    """``rules/default.toml`` of the source tree, or the copy packaged inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "rules" / "default.toml", here / "_rules" / "default.toml"):
        if candidate.is_file():
            return candidate
    raise RulesError("The default rules file is missing from this installation; pass --rules FILE.")


def load(path: str | Path | None = None) -> RuleBook:
    """Read and validate a rules file (default: ``rules/default.toml``)."""
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise RulesError(f"Rules file '{path}' does not exist.")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"Rules file '{path}' is not valid TOML: {exc}") from None
    try:
        return RuleBook(**data, source=str(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RulesError(f"Rules file '{path}': {where}: {first['msg']}") from None


def plan_resolution(image_side: int, book: RuleBook, native: bool = False) -> int:
    """The images' median shorter side, rounded to a multiple of 32 and clamped to the rules' range; with
    ``native`` (a network trained from scratch) the images' own side, never upsampled."""
    lo, hi = book.settings.min_resolution, book.settings.max_resolution
    if native:
        return int(min(hi, max(8, image_side)))
    return int(min(hi, max(lo, 32 * round(image_side / 32))))


def standard_batch_size(hw: Hardware, book: RuleBook) -> int:
    """The rules' batch size for the device: what throughput is timed and recorded at."""
    return int(book.settings.batch_size_gpu if hw.device == "cuda" else book.settings.batch_size_cpu)


def plan_batch_size(hw: Hardware, n_images: int, book: RuleBook) -> int:
    """The batch training uses: the standard one, or every image when there are fewer."""
    return int(max(1, min(standard_batch_size(hw, book), n_images)))


def rule_facts(facts: DataFacts, budget: Budget, epochs: dict[StrategyName, float | None],
               fe: Quantity | None = None) -> dict[str, float]:
    """The facts the rules read (rules/default.toml lists them): the data's, the budget's, each strategy's
    epochs in it, and FE's accuracy when it was measured."""
    values = facts.model_dump()
    values["fe_accuracy"] = fe.value if fe is not None and fe.source == "measured" else None
    values["images_per_class"] = facts.images_per_class
    values["budget_hours"] = budget.seconds / 3600
    values.update({f"epochs_{s}": e for s, e in epochs.items()})
    return values
