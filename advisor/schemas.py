"""Pydantic models at the edges: what each step of scan → profile → measure → decide returns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .registry import DEFAULT_BACKBONE, STRATEGY_NAMES, StrategyName

Source = Literal["measured", "rule", "estimated", "user", "model", "forecast"]


class Quantity(BaseModel):
    """A number the advisor shows, with where it came from."""

    value: float
    unit: str = ""
    source: Source
    detail: str = ""
    low: float | None = Field(None, description="lower end of the interval, where the source gives one")
    high: float | None = Field(None, description="upper end of the interval")
    domain: Literal["inside", "near", "outside"] | None = Field(
        None, description="model numbers: whether the query lies inside the region the model was fitted on")

    def __str__(self) -> str:
        return f"{self.value:g}{(' ' + self.unit) if self.unit else ''} [{self.source}]"


class ClassCount(BaseModel):
    name: str
    train: int
    eval: int = 0


class DataProfile(BaseModel):
    """What the scan found in a data folder (headers only; nothing is decoded)."""

    root: str
    layout: Literal["imagefolder", "split"]
    n_images: int = Field(description="readable training images")
    n_eval_images: int = Field(0, description="readable images in val/ or test/ (split layout)")
    n_classes: int
    classes: list[ClassCount]
    images_per_class_min: int
    images_per_class_median: float
    images_per_class_max: int
    imbalance: float = Field(description="largest class / smallest class (1 = balanced)")
    width_median: int
    height_median: int
    size_min: tuple[int, int]
    size_max: tuple[int, int]
    modes: dict[str, int] = Field(description="PIL image modes and how many images have each")
    channels: Literal[1, 3] = Field(description="1 when every image is greyscale, else 3")
    unreadable: list[str] = Field(default_factory=list, description="files that could not be read (path: reason)")
    ignored: int = Field(0, description="files skipped because their extension is not an image's")
    scan_seconds: float


class Similarity(BaseModel):
    """How close the images are to the backbone's pretraining source (ImageNet)."""

    backbone: str
    sample_size: int
    resolution: int
    imagenet_confidence: float = Field(description="mean top-1 softmax of the ImageNet head (0–1)")
    imagenet_entropy: float = Field(description="mean entropy of the ImageNet head / log(1000) (0–1, lower = more ImageNet-like)")
    feature_shift: float = Field(
        description="mean symmetric KL between the images' per-channel feature statistics and the "
        "backbone's ImageNet BatchNorm statistics (0 = same distribution)"
    )
    knn_accuracy: float | None = Field(description="cross-validated 5-NN accuracy on frozen features")
    linear_accuracy: float | None = Field(description="cross-validated logistic-regression accuracy on frozen features")
    separability: float | None = Field(description="linear accuracy rescaled so chance = 0 and perfect = 1")
    score: float = Field(description="combined domain similarity, 0 (unlike ImageNet) to 1 (ImageNet-like)")
    seconds: float


class Hardware(BaseModel):
    device: str = Field(description="torch device used: 'cuda' or 'cpu'")
    name: str
    cpu_threads: int
    gpu_available: bool
    precision: Literal["bf16", "fp32"]
    note: str = ""


class Budget(BaseModel):
    seconds: float = Field(gt=0)
    given_as: str = Field(description="what the user asked for, e.g. '4 GPU-hours'")
    note: str = ""


class TimingConditions(BaseModel):
    """How a timing was taken: what makes it trustworthy or not."""

    other_load: float | None = Field(description="share of all CPUs other processes used meanwhile (None: unknown)")
    spread: float = Field(description="largest (median round − fastest round) ÷ fastest, over the configurations")
    rounds: int
    steps_per_round: int
    matmul_gflops: float = Field(description="the device's dense matrix-product speed, timed alongside")
    seconds: float
    quiet: bool
    stable: bool
    plausible: bool


class Throughput(BaseModel):
    """Training images per second of each strategy on the device planned for."""

    resolution: int
    batch_size: int
    images_per_second: dict[StrategyName, float]
    detail: str
    seconds: float = Field(description="seconds spent timing now (0 when reused or estimated)")
    source: Literal["measured", "estimated"] = "measured"
    origin: str = Field("timed now", description="'timed now', 'from a record of <date>', a profile, or an estimate's basis")
    conditions: TimingConditions | None = None
    problems: list[str] = Field(default_factory=list, description="why the figures may not be trusted")
    batch_exponent: float | None = Field(None, description="images/s ∝ batch^this, from all-layer training timed at "
                                         "two batch sizes (None: not timed)")

    def at_batch(self, batch_size: int) -> "Throughput":
        """The figures at another batch size, derived from :attr:`batch_exponent` (images/s scale by
        ``(b/B)^α``: a small batch pays a step's fixed costs with fewer images, a large one may outgrow the
        caches), so a new data size needs no new timing. Unchanged, with a note, when α was not timed."""
        if batch_size == self.batch_size:
            return self
        a = self.batch_exponent
        if a is None:
            return self.model_copy(update={"batch_size": batch_size, "detail": self.detail +
                                            f"; timed at batch {self.batch_size}, used as is at batch {batch_size}"})
        factor = (batch_size / self.batch_size) ** a
        return self.model_copy(update={
            "batch_size": batch_size,
            "images_per_second": {s: round(v * factor, 2) for s, v in self.images_per_second.items()},
            "detail": self.detail + f"; derived for batch {batch_size} from batch {self.batch_size} "
                                    f"(×{factor:.2f}: images/s ∝ batch^{a:.2f})"})


class Settings(BaseModel):
    """Concrete training settings for one strategy."""

    backbone: str = Field(description="the network trained: a pretrained backbone, or for scratch a registered architecture")
    pretrained: bool
    resolution: int
    frozen: list[str] = Field(description="modules whose weights stay fixed")
    trainable_fraction: float = Field(description="share of the network's parameters that are trained")
    fine_tune_depth: int | None = Field(None, description="fine-tune: how many of the backbone's last stages are trained")
    architecture_reason: str | None = Field(None, description="scratch: why this network fits the data")
    crop_padding: float | None = Field(None, description="random-crop reflect padding as a share of the side (None: no augmentation)")
    hflip: bool = False
    learning_rate: Quantity
    head_learning_rate: Quantity | None = None
    weight_decay: float
    batch_size: int
    epochs: Quantity
    augmentation: list[str]
    label_smoothing: float


class StrategyEstimate(BaseModel):
    strategy: StrategyName
    feasible: bool
    score: Quantity = Field(description="rule score; higher is better")
    seconds_per_epoch: Quantity | None = None
    epochs_in_budget: Quantity | None = None
    expected_seconds: Quantity | None = Field(None, description="time of the planned run within the budget")
    accuracy: Quantity | None = None
    reasons: list[str] = Field(default_factory=list)
    settings: Settings


class FiredRule(BaseModel):
    id: str
    reason: str
    effect: str


class DataFacts(BaseModel):
    """The numbers the decision uses; from a profile or given directly (numbers-only form)."""

    n_images: int = Field(gt=0)
    n_classes: int = Field(ge=2)
    resolution: int = Field(gt=0, description="median shorter side of the images in pixels")
    channels: Literal[1, 3] = 3
    imbalance: float = Field(1.0, ge=1.0)
    similarity: float = Field(ge=0.0, le=1.0)

    @property
    def images_per_class(self) -> float:
        return self.n_images / self.n_classes


class Recommendation(BaseModel):
    strategy: StrategyName
    confidence: Quantity
    runner_up: StrategyName | None = Field(None, description="the next best strategy")
    tie: bool = Field(False, description="the runner-up was within the uncertainty; the cheaper of the two was chosen")
    reasons: list[str]
    fired_rules: list[FiredRule]
    estimates: list[StrategyEstimate]
    facts: DataFacts
    budget: Budget
    hardware: Hardware
    throughput: Throughput | None = None
    profile: DataProfile | None = None
    similarity: Similarity | None = None
    pixel_baseline: Quantity | None = Field(None, description="what a linear model on the raw pixels (16 px) reaches on "
                                            "the training images, cross-validated: an input of the gain model; None "
                                            "when not measured (numbers only)")
    decided_by: str = Field(description="which part of advisor made the choice")
    warnings: list[str] = Field(default_factory=list)
    budget_k: float | None = Field(None, description="the budget in epoch-equivalents (all-layer training's epochs "
                                   "at the planned throughput; unrounded); None when no throughput was measured")

    def estimate(self, strategy: StrategyName) -> StrategyEstimate:
        return next(e for e in self.estimates if e.strategy == strategy)


class RunResult(BaseModel):
    """One training run: what the engine returns, the probe reports (:class:`ProbeRun`) and a meta-dataset cell
    stores (:class:`advisor.model.cells.RunRecord`)."""

    strategy: StrategyName | None = Field(None, description="None where the run is stored under its strategy's name")
    val_accuracy: float
    steps: int = 0
    epochs: float
    seconds: float
    images_per_second: float
    curve: list[tuple[float, float]] = Field([], description="(training seconds, validation accuracy) points")
    batch_size: int = 0
    peak_memory_mb: float = 0.0
    variant: str = Field("", description="the configuration trained, e.g. fine_tune@2 or scratch@cnn_s")
    step_images_per_second: float | None = Field(None, description="batch ÷ median step time after the first step: "
                                                 "the figure a timing gives (None for feature extraction and runs "
                                                 "of fewer than three steps)")
    dense: list[tuple[int, int, float, float, float]] = Field(
        [], description="the dense learning curve: (step, images seen, LR factor, training seconds, accuracy) at "
        "log-spaced steps (intermediate points on the first engine.CURVE_IMAGES validation images, the last on all)")
    diverged: bool = Field(False, description="the training loss became NaN or infinite; the run stopped there")


class ProbeRun(RunResult):
    """A probe's run of one strategy, judged and forecast to the full budget."""

    strategy: StrategyName
    resolution: int | None = Field(None, description="the side it trained at: its planned resolution, ≤ 64 px on a CPU")
    reach: float | None = Field(None, description="epoch-equivalents trained: seconds ÷ one all-layer epoch of the "
                                "probe's images (None for feature extraction, complete after one pass)")
    judged: bool = Field(True, description="long enough to say something (or shown not viable); else it neither "
                         "decides the verdict nor calibrates the model")
    share: float | None = Field(None, description="training images the run saw ÷ those the full budget buys this "
                                "strategy on all the data: how much of the full run it stands for")
    forecast: Quantity | None = Field(None, description="the strategy's accuracy at the full budget on all the data, "
                                      "forecast from this run (advisor/model/forecast.py), with its 80 % interval")
    viable: bool = Field(True, description="False when the run diverged or learned nothing in its steps")
    note: str = ""


class Options(BaseModel):
    """A caller's options for one entry point, typed and checked once at the boundary (:meth:`of`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    @classmethod
    def of(cls, given: "Options | None" = None, **fields):
        """``given`` (default: the defaults) with ``fields`` set, checked: a bad value or an unknown name raises
        one :class:`AdvisorError` line."""
        from .errors import AdvisorError  # the user's mistake: one line, not a validation report

        try:
            return cls.model_validate({**(dict(given) if given is not None else {}), **fields})
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(map(str, err["loc"]))
            if err["type"] == "extra_forbidden":
                raise AdvisorError(f"Unknown option '{name}'; the options are: {', '.join(cls.model_fields)}.") from None
            raise AdvisorError(f"Invalid option {name}: {err['msg']}.") from None


class AdviceOptions(Options):
    """What every entry point advises with: the budget (one of three units), the device, backbone, rules and
    whether the learned model ranks."""

    gpu_hours: float | None = Field(None, description="budget in GPU-hours of the device planned for")
    hours: float | None = Field(None, description="budget in hours of the device here")
    minutes: float | None = Field(None, description="budget in minutes of the device here")
    device: str | None = Field(None, description="'cpu' or 'cuda' (default: CUDA when present)")
    backbone: str = Field(DEFAULT_BACKBONE, description="the pretrained backbone (registry.BACKBONES)")
    weights: str | None = Field(None, description="a local weights file for the backbone")
    rules: str | Path | None = Field(None, description="a rules TOML file instead of the packaged one")
    use_model: bool = Field(True, description="let the learned model (when packaged) rank what the rules leave feasible")
    progress: bool = Field(False, description="show progress bars on long steps")

    @field_validator("gpu_hours", "hours", "minutes", mode="before")
    @classmethod
    def _budget(cls, value, info):
        from .budget import positive  # the budget's own one-line message (e.g. "--gpu-hours must be a number")

        return None if value is None else positive(value, info.field_name.replace("_", "-"))


class PlanOptions(AdviceOptions):
    """:func:`advisor.api.plan`'s options: for a folder, or numbers without images (``n_images``, ``n_classes``,
    ``similarity``, with ``resolution`` and ``channels``), on this device or another."""

    n_images: int | None = None
    n_classes: int | None = None
    similarity: float | None = Field(None, description="0–1: how close the images are to ImageNet's")
    resolution: int = Field(224, description="numbers only: the images' side in pixels")
    channels: int = Field(3, description="numbers only: 1 (grey) or 3 (colour)")
    measure: bool = Field(True, description="measure throughput (False: no times or epochs are estimated)")
    hardware: Any = Field(None, description="plan for the device of a profile: its path (advisor hardware --save) "
                          "or a HardwareProfile")
    device_name: str | None = Field(None, description="plan for a named device from an estimated profile, e.g. 'a100'")
    retime: bool = Field(False, description="time this device afresh instead of reusing its record")
    fe_accuracy: float | None = Field(None, description="feature extraction's accuracy (0–1) instead of measuring it")
    pixel_accuracy: float | None = Field(None, description="numbers only: the pixel baseline's accuracy (0–1; a linear "
                                         "classifier on raw 16-px pixels, cross-validated), which the gain model reads")


class TrainOptions(AdviceOptions):
    """:func:`advisor.training.train`'s options."""

    strategy: str | None = Field(None, description="train this strategy instead of the advised one")
    out: str | Path | None = Field(None, description="the run's new folder (default: advisor-runs/<data>-<strategy>-<time>)")
    force: bool = Field(False, description="reuse ``out`` if it holds an earlier run of advisor's")
    progress: bool = True


class ProbeOptions(Options):
    """How the probe runs, checked once where the caller gives them (bad values raise one :class:`AdvisorError`)."""

    fraction: float = Field(0.05, description="share of the budget the probe may spend (see probing.probe_seconds)")
    seconds: float | None = Field(None, description="total probe time instead of fraction")
    steps: int | None = Field(None, description="train each strategy exactly this many steps instead of a time")
    max_train: int = Field(600, ge=2, description="training images in the probe's class-stratified subset")
    max_val: int = Field(300, ge=1, description="validation images")
    resolution: int | None = Field(None, ge=8, description="default: each strategy's planned side, at most 64 px on a CPU")
    strategies: tuple[StrategyName, ...] = Field(STRATEGY_NAMES, min_length=1)
    progress: bool = True
    save: bool = Field(True, description="store the result and the model's errors on this machine")

    @model_validator(mode="after")
    def _durations(self) -> "ProbeOptions":
        from .errors import AdvisorError  # the user's mistake: one line, not a validation report

        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise AdvisorError(f"--seconds must be a finite number greater than zero; got {self.seconds}.")
        if self.steps is not None and (self.steps < 1 or self.seconds is not None):
            raise AdvisorError(f"--steps must be a whole number ≥ 1 and replaces --seconds; got {self.steps}"
                               f"{' with --seconds' if self.seconds is not None else ''}.")
        if not (math.isfinite(self.fraction) and 0 < self.fraction <= 1):
            raise AdvisorError(f"--fraction must be between 0 and 1; got {self.fraction}.")
        return self


class ProbeResult(BaseModel):
    recommendation: Recommendation
    runs: list[ProbeRun]
    ranking: list[StrategyName]
    agrees: bool | None = Field(description="whether the probe's judged runs agree with the recommendation; None "
                                "when the recommended strategy's run was too short to judge, or every run too short "
                                "a share of the full run to move its forecast")
    verdict: str
    train_images: int
    val_images: int
    resolution: int
    seconds_per_strategy: float
    cost: Quantity | None = Field(None, description="training time the probe spent, and its share of the budget")
    calibrated: Recommendation | None = Field(None, description="the advice after the probe corrected the learned model")
    model_errors: dict[StrategyName, float] | None = Field(None, description="forecast − predicted normalised accuracy at the "
                                                           "full budget (feature extraction: observed − predicted at the probe's conditions)")
    calibration_weights: dict[StrategyName, float] | None = Field(
        None, description="share of each error carried to the budget: how far the probe trained toward it × validation size")
    throughput_record: str | None = Field(None, description="what the probe's step times did to this machine's "
                                          "throughput record (they replace it when the probe ran quietly)")
    stored_at: str | None = None


class TrainResult(BaseModel):
    """What ``advisor train`` did: the strategy trained with the advised settings on all the training images,
    within the budget, and where the model and its record are."""

    strategy: StrategyName
    recommended: StrategyName = Field(description="what advisor advised for this data and budget")
    variant: str = Field(description="the configuration trained, e.g. fine_tune@2 or scratch@cnn_s")
    run_dir: str
    model_path: str = Field(description="state dict, network, class names and preprocessing (advisor predict reads it)")
    settings: Settings
    classes: list[str]
    train_images: int
    val_images: int
    val_accuracy: Quantity = Field(description="accuracy on the held-out images (the val split, or 20 % of each class)")
    predicted: Quantity | None = Field(None, description="the accuracy the advice gave this strategy before training")
    forecast: Quantity | None = Field(None, description="the latest probe's forecast for this strategy on this data, if any")
    steps: int
    epochs: float
    batch_size: int = Field(description="the batch size used at the end (halved on out-of-memory)")
    images_per_second: float
    seconds: float = Field(description="wall time spent of the budget, every session of the run together")
    budget_seconds: float
    curve: list[tuple[float, float]] = Field(description="(seconds of the budget, validation accuracy) points")
    sessions: int = Field(1, description="1 + the times the run was resumed")
    diverged: bool = False
    calibration: str | None = Field(None, description="how the finished run was stored to calibrate later advice")
    notes: list[str] = Field(default_factory=list)


class Prediction(BaseModel):
    path: str
    label: str
    probability: float
    truth: str | None = None
