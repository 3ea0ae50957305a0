"""The strategies on a real network: build it, freeze what the strategy keeps fixed, group its parameters.

The strategies themselves (what is pretrained, what is trained, learning rates) are data in ``registry.py``.
"""

from __future__ import annotations

from torch import nn

from . import architectures
from . import backbone as bb
from ..registry import Strategy, frozen_modules


def build(strategy: Strategy, n_classes: int, backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = None) -> nn.Module:
    """The model for ``strategy``: new ``n_classes`` head, frozen parts with ``requires_grad=False``."""
    if strategy.arch is not None:
        return architectures.build(strategy.arch, n_classes)
    model = bb.create(backbone, pretrained=strategy.pretrained, weights=weights)
    model.reset_classifier(n_classes)
    for name in frozen_modules(strategy, backbone):
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    return model


def set_train_mode(model: nn.Module, strategy: Strategy, backbone: str = bb.DEFAULT_BACKBONE) -> None:
    """``model.train()``, but frozen parts stay in eval mode so their BatchNorm statistics stay fixed."""
    model.train()
    for name in frozen_modules(strategy, backbone):
        model.get_submodule(name).eval()


def param_groups(model: nn.Module, strategy: Strategy) -> list[dict]:
    """AdamW groups: the trained backbone at ``lr``, the new head at ``head_lr``; no decay on norms and biases."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    prefix = architectures.head_prefix(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (name.startswith(prefix), p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    return [
        {"params": ps, "lr": strategy.head_lr if head else strategy.lr, "weight_decay": 0.0 if no_decay else strategy.weight_decay}
        for (head, no_decay), ps in groups.items()
    ]
