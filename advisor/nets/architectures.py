"""Networks for training from scratch: a right-sized network for the task, from random weights.

"Train from scratch" as practitioners mean it is *a network designed for the task*: a small CNN at the
images' own resolution for 28-px digits, a ResNet sized to the data for larger images — not the pretrained
backbone with its weights thrown away. The registry (which network fits which images, and why) is data in
``registry.py``; :func:`registry.choose_architecture` picks one from the data's resolution and size.

* ``cnn_s`` / ``cnn_m``: a CIFAR-style ResNet (3×3 stem without down-sampling, three stages of basic
  blocks, widths w, 2w, 4w) for images of at most 48 px, which a stride-4 ImageNet stem would shrink to
  nothing. ``cnn_m`` doubles the width and depth for data sets large enough to use it.
* ``resnet10t`` / ``resnet18`` (timm): ImageNet-style ResNets for larger images; the deeper one only
  when there are enough images to train its 11 M weights.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import architecture


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class CompactResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem at full resolution, stages at widths w·2^i, global pooling, linear head."""

    def __init__(self, n_classes: int, width: int = 32, blocks: tuple[int, ...] = (1, 1, 1)):
        super().__init__()
        self.conv_stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, c = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i
            stages.append(nn.Sequential(*[BasicBlock(c if j == 0 else out, out, 2 if i > 0 and j == 0 else 1) for j in range(n)]))
            c = out
        self.blocks = nn.Sequential(*stages)
        self.num_features = c
        self.classifier = nn.Linear(c, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.conv_stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(name: str, n_classes: int) -> nn.Module:
    """A randomly initialised ``name`` network with an ``n_classes`` head."""
    arch = architecture(name)
    if arch.family == "cnn":
        return CompactResNet(n_classes, arch.width, arch.blocks)
    import timm

    return timm.create_model(arch.name, pretrained=False, num_classes=n_classes)


def head_prefix(model: nn.Module) -> str:
    """Parameter-name prefix of the classifier of ``model`` (timm ResNets call it ``fc``)."""
    return "fc." if isinstance(getattr(model, "fc", None), nn.Linear) else "classifier."


def parameter_count(name: str, n_classes: int = 10) -> int:
    return sum(p.numel() for p in build(name, n_classes).parameters())


__all__ = ["CompactResNet", "build", "head_prefix", "parameter_count"]
