"""The four strategies as data: what is pretrained, what is frozen, and how it is optimised.

One place for each strategy's definition; the probe, the engine and the recommended settings all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

from . import architectures
from . import backbone as bb
from .schemas import StrategyName

FINE_TUNE_DEPTHS = (1, 2, 4)  # last backbone stages fine-tune may train: head + last stage, last two, last four


@dataclass(frozen=True)
class Strategy:
    name: StrategyName
    title: str
    pretrained: bool  # start from ImageNet weights
    trains: Literal["head", "last_stages", "all"]  # which part of the network is trained
    lr: float  # AdamW learning rate of the backbone's trained part
    head_lr: float  # learning rate of the new classifier
    weight_decay: float
    label_smoothing: float
    description: str
    depth: int = 4  # backbone stages trained when ``trains == "last_stages"`` (the rest, and the stem, stay fixed)
    arch: str | None = None  # scratch network from advisor.architectures; None = the pretrained backbone's

    @property
    def trains_backbone(self) -> bool:
        return self.trains != "head"

    @property
    def variant(self) -> str:
        """Unique name of this configuration, e.g. ``fine_tune@2`` or ``scratch@cnn_s``."""
        if self.trains == "last_stages":
            return f"{self.name}@{self.depth}"
        return f"{self.name}@{self.arch}" if self.arch else self.name


STRATEGIES: dict[StrategyName, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "feature_extraction", "feature extraction", True, "head", 0.0, 0.0, 0.0, 0.0,
            "frozen pretrained backbone; a logistic-regression classifier on its pooled features",
        ),
        Strategy(
            "fine_tune", "fine-tune", True, "last_stages", 3e-4, 3e-3, 0.01, 0.1,
            "pretrained; stem and early stages frozen (BatchNorm statistics too); later stages and a new head "
            "trained at a low learning rate",
        ),
        Strategy(
            "retrain", "retrain", True, "all", 1e-3, 3e-3, 0.01, 0.1,
            "pretrained initialisation; every layer trained",
        ),
        Strategy(
            "scratch", "scratch", False, "all", 3e-3, 3e-3, 0.05, 0.1,
            "a network sized to the data and its resolution (advisor/architectures.py), random initialisation; "
            "every layer trained at a higher learning rate",
        ),
    )
}


def get(name: str) -> Strategy:
    from .errors import AdvisorError

    if name not in STRATEGIES:
        raise AdvisorError(f"Unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]


def resolve(strategy: str | Strategy, resolution: int, n_images: int, depth: int | None = None) -> Strategy:
    """A concrete configuration: scratch gets the network :func:`architectures.choose` sizes to the data,
    fine-tune the given ``depth`` (default: the registry's)."""
    strat = get(strategy) if isinstance(strategy, str) else strategy
    if strat.name == "scratch" and strat.arch is None:
        strat = replace(strat, arch=architectures.choose(resolution, n_images).name)
    if strat.trains == "last_stages" and depth is not None:
        strat = replace(strat, depth=depth)
    return strat


def frozen_modules(model: nn.Module, strategy: Strategy) -> list[str]:
    """Names of the backbone modules this strategy keeps fixed."""
    if strategy.trains == "head":
        return [name for name, _ in model.named_children() if name != "classifier"]
    if strategy.trains == "all":
        return []
    n_stages = len(model.blocks)
    return ["conv_stem", "bn1"] + [f"blocks.{i}" for i in range(max(0, n_stages - strategy.depth))]


def build(strategy: Strategy, n_classes: int, backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = None) -> nn.Module:
    """The model for ``strategy``: new ``n_classes`` head, frozen parts with ``requires_grad=False``."""
    if strategy.arch is not None:
        return architectures.build(strategy.arch, n_classes)
    model = bb.create(backbone, pretrained=strategy.pretrained, weights=weights)
    model.reset_classifier(n_classes)
    for name in frozen_modules(model, strategy):
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    return model


def set_train_mode(model: nn.Module, strategy: Strategy) -> None:
    """``model.train()``, but frozen parts stay in eval mode so their BatchNorm statistics stay fixed."""
    model.train()
    for name in frozen_modules(model, strategy):
        model.get_submodule(name).eval()


def param_groups(model: nn.Module, strategy: Strategy) -> list[dict]:
    """AdamW groups: the trained backbone at ``lr``, the new head at ``head_lr``; no decay on norms and biases."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    head = architectures.head_prefix(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (name.startswith(head), p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    return [
        {"params": ps, "lr": strategy.head_lr if head else strategy.lr, "weight_decay": 0.0 if no_decay else strategy.weight_decay}
        for (head, no_decay), ps in groups.items()
    ]


def trainable_fraction(model: nn.Module, strategy: Strategy) -> float:
    """Share of the backbone's parameters (the classifier excluded) that ``strategy`` trains."""
    total = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier."))
    frozen = sum(p.numel() for m in frozen_modules(model, strategy) for p in model.get_submodule(m).parameters())
    return (total - frozen) / total
