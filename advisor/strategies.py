"""The four strategies as data: what is pretrained, what is frozen, and how it is optimised.

One place for each strategy's definition; the probe, the engine and the recommended settings all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from . import backbone as bb
from .schemas import StrategyName


@dataclass(frozen=True)
class Strategy:
    name: StrategyName
    title: str
    pretrained: bool  # start from ImageNet weights
    frozen_stages: int | None  # backbone stages (blocks) kept fixed, with the stem; None = whole backbone
    lr: float  # AdamW learning rate of the backbone's trained part
    head_lr: float  # learning rate of the new classifier
    weight_decay: float
    label_smoothing: float
    description: str

    @property
    def trains_backbone(self) -> bool:
        return self.frozen_stages is not None


STRATEGIES: dict[StrategyName, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "feature_extraction", "feature extraction", True, None, 0.0, 0.0, 0.0, 0.0,
            "frozen pretrained backbone; a logistic-regression classifier on its pooled features",
        ),
        Strategy(
            "fine_tune", "fine-tune", True, 3, 3e-4, 3e-3, 0.01, 0.1,
            "pretrained; stem and early stages frozen (BatchNorm statistics too); later stages and a new head "
            "trained at a low learning rate",
        ),
        Strategy(
            "retrain", "retrain", True, 0, 1e-3, 3e-3, 0.01, 0.1,
            "pretrained initialisation; every layer trained",
        ),
        Strategy(
            "scratch", "scratch", False, 0, 3e-3, 3e-3, 0.05, 0.1,
            "random initialisation; every layer trained at a higher learning rate",
        ),
    )
}


def get(name: str) -> Strategy:
    from .errors import AdvisorError

    if name not in STRATEGIES:
        raise AdvisorError(f"Unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]


def frozen_modules(model: nn.Module, strategy: Strategy) -> list[str]:
    """Names of the backbone modules this strategy keeps fixed."""
    if strategy.frozen_stages is None:
        return [name for name, _ in model.named_children() if name != "classifier"]
    if strategy.frozen_stages == 0:
        return []
    return ["conv_stem", "bn1"] + [f"blocks.{i}" for i in range(strategy.frozen_stages)]


def build(strategy: Strategy, n_classes: int, backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = None) -> nn.Module:
    """The model for ``strategy``: new ``n_classes`` head, frozen parts with ``requires_grad=False``."""
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
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (name.startswith("classifier."), p.ndim <= 1)
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
