"""Networks for training from scratch, as data: a right-sized network for the task, from random weights.

"Train from scratch" as practitioners mean it is *a network designed for the task*: a small CNN at the
images' own resolution for 28-px digits, a ResNet sized to the data for larger images — not the pretrained
backbone with its weights thrown away. Each entry says which images it fits and why; :func:`choose` picks
one from the data's resolution and size.

* ``cnn_s`` / ``cnn_m``: a CIFAR-style ResNet (3×3 stem without down-sampling, three stages of basic
  blocks, widths w, 2w, 4w) for images of at most 48 px, which a stride-4 ImageNet stem would shrink to
  nothing. ``cnn_m`` doubles the width and depth for data sets large enough to use it.
* ``resnet10t`` / ``resnet18`` (timm): ImageNet-style ResNets for larger images; the deeper one only
  when there are enough images to train its 11 M weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str  # "cnn": this module's compact ResNet; "timm": a timm model of the same name
    width: int  # first stage's channels (cnn family)
    blocks: tuple[int, ...]  # basic blocks per stage (cnn family)
    max_resolution: int | None  # largest input side it is meant for (None: no limit)
    min_resolution: int  # smallest input side it is meant for
    min_images: int  # fewest training images it is chosen for
    reason: str


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("cnn_s", "cnn", 32, (1, 1, 1), 48, 8, 0,
                     "small images (≤ 48 px): a compact CIFAR-style ResNet at their own resolution, ~0.3 M weights"),
        Architecture("cnn_m", "cnn", 64, (2, 2, 2), 48, 8, 10_000,
                     "small images (≤ 48 px) and ≥ 10k of them: a wider, deeper CIFAR-style ResNet, ~2.7 M weights"),
        Architecture("resnet10t", "timm", 0, (), None, 49, 0,
                     "larger images: timm's ResNet-10-T (deep stem, one block per stage), ~4.9 M weights"),
        Architecture("resnet18", "timm", 0, (), None, 49, 20_000,
                     "larger images and ≥ 20k of them: ResNet-18, ~11 M weights"),
    )
}


def get(name: str) -> Architecture:
    from .errors import AdvisorError

    if name not in ARCHITECTURES:
        raise AdvisorError(f"Unknown architecture '{name}'; choose one of: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


def choose(resolution: int, n_images: int) -> Architecture:
    """The largest registered network whose resolution range holds ``resolution`` and whose data need is met."""
    fits = [a for a in ARCHITECTURES.values()
            if a.min_resolution <= resolution <= (a.max_resolution or resolution) and n_images >= a.min_images]
    return max(fits, key=lambda a: a.min_images)


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
    arch = get(name)
    if arch.family == "cnn":
        return CompactResNet(n_classes, arch.width, arch.blocks)
    import timm

    return timm.create_model(arch.name, pretrained=False, num_classes=n_classes)


def head_prefix(model: nn.Module) -> str:
    """Parameter-name prefix of the classifier of ``model`` (timm ResNets call it ``fc``)."""
    return "fc." if isinstance(getattr(model, "fc", None), nn.Linear) else "classifier."


def parameter_count(name: str, n_classes: int = 10) -> int:
    return sum(p.numel() for p in build(name, n_classes).parameters())
