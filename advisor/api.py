"""The public API. The data path reads top to bottom: scan → profile → measure → decide (→ probe)."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

from . import backbone as bb
from . import registry
from . import budget as budget_mod
from . import calibration, engine, hardware, images, learned, similarity
from . import rules as rules_mod
from .decide import decide, plan_batch_size, plan_resolution
from .errors import AdvisorError
from .scan import profile as profile_scan
from .scan import ScannedData, scan
from .state import MachineState
from .schemas import STRATEGIES, Budget, DataFacts, DataProfile, Hardware, Quantity, Recommendation, Similarity, Throughput


Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def profile(data: str | os.PathLike) -> DataProfile:
    """Scan a labelled image folder and describe it (counts, imbalance, sizes, modes, unreadable files)."""
    return profile_scan(scan(data))


def timing_batch(hw: Hardware, batch_size: int) -> int:
    """The batch at which steps are timed: the planned one on a GPU, at most 8 on a CPU (images/s barely changes)."""
    return batch_size if hw.device == "cuda" else min(batch_size, 8)


def measure_throughput(hw: Hardware, resolution: int, batch_size: int, backbone: str = bb.DEFAULT_BACKBONE, steps: int = 2,
                       scratch_resolution: int | None = None, n_images: int = 0) -> Throughput:
    """Images/s of each strategy's training step on this device, from real timed steps.

    Scratch is timed on the network the registry sizes to ``n_images`` at ``scratch_resolution`` (the images'
    own side; default ``resolution``), the others at ``resolution``. On the CPU the step is timed at a batch of at most 8: images/s barely depends on it there.
    """
    t0 = time.perf_counter()
    timed_batch = timing_batch(hw, batch_size)
    ips = {s: engine.measure_images_per_second(s, resolution, timed_batch, hw, steps, backbone) for s in STRATEGIES if s != "scratch"}
    scratch_res = scratch_resolution or resolution
    scratch = registry.resolve("scratch", scratch_res, n_images)
    ips["scratch"] = engine.measure_images_per_second(scratch, scratch_res, timed_batch, hw, steps, backbone)
    return Throughput(
        resolution=resolution, batch_size=timed_batch, images_per_second={s: round(v, 2) for s, v in ips.items()},
        detail=f"{steps} timed steps after one warm-up, batch {timed_batch}, {resolution}px (scratch: {scratch.arch} at {scratch_res}px), on {hw.name}",
        seconds=round(time.perf_counter() - t0, 2),
    )


def measure_similarity(data, hw: Hardware, backbone: str, weights: str | None,
                       sample_size: int = similarity.SAMPLE_SIZE) -> Similarity:
    """Similarity of the training images, on the sample :func:`similarity.sample_indices` draws."""
    train = data.split("train")
    sample = [train[i] for i in similarity.sample_indices([it.label for it in train], sample_size)]
    x, y = images.load(sample, similarity.RESOLUTION)
    if len(x) == 0:
        raise AdvisorError("None of the sampled images could be decoded.")
    return similarity.measure(x, y, hw, backbone, weights=weights)


def setup(rules, device: str | None, backbone: str, **budget) -> tuple[rules_mod.RuleBook, Hardware, Budget]:
    """Check the options that do not depend on the data: rules file, device, backbone name and budget."""
    book = rules_mod.load(rules)
    hw = hardware.detect(device)
    bb.get_config(backbone)
    return book, hw, budget_mod.make(hw, **budget)


def predictor(state: MachineState, use_model: bool = True, measures: Similarity | None = None, data: str | None = None,
              extra: list[dict] | None = None) -> learned.LearnedPredictor | None:
    """The state's learned model as a decision predictor, corrected by this machine's probe records and
    ``extra`` ones; None when not wanted or none is fitted yet."""
    bundle = learned.load(state.model_path) if use_model else None
    if not bundle:
        return None
    return learned.LearnedPredictor(*bundle, measures, calibration.probes(state) + (extra or []), data)


def recommend(
    data: str | os.PathLike | None = None,
    *,
    gpu_hours: float | None = None,
    hours: float | None = None,
    minutes: float | None = None,
    n_images: int | None = None,
    n_classes: int | None = None,
    similarity: float | None = None,
    resolution: int = 224,
    channels: int = 3,
    device: str | None = None,
    backbone: str = bb.DEFAULT_BACKBONE,
    weights: str | None = None,
    rules: str | os.PathLike | None = None,
    measure: bool = True,
    use_model: bool = True,
    progress: bool = False,
    log: Log = quiet,
    state: MachineState | None = None,
) -> Recommendation:
    """Recommend a strategy for a labelled image folder (``data``) or, without images, from numbers.

    Numbers-only form: give ``n_images``, ``n_classes`` and ``similarity`` (0–1) instead of ``data``.
    The budget is one of ``gpu_hours``, ``hours`` (of the device here) or ``minutes``.
    With ``measure=False`` no throughput is measured and no times or epochs are estimated. The learned model
    (when one is packaged, see ``benchmarks/fit_model.py``) ranks what the rules leave feasible unless
    ``use_model=False``. ``state`` says where this machine's calibration records and the learned model are
    (default: :class:`MachineState` ``()``, i.e. ``$ADVISOR_HOME`` and the packaged model).

    >>> rec = recommend(n_images=500, n_classes=5, similarity=0.7, minutes=10, measure=False)
    >>> rec.strategy
    'feature_extraction'
    """
    book, hw, budget = setup(rules, device, backbone, gpu_hours=gpu_hours, hours=hours, minutes=minutes)
    state = state or MachineState()
    if data is not None:
        if any(v is not None for v in (n_images, n_classes, similarity)):
            raise AdvisorError("Give either a data folder or numbers (n_images, n_classes, similarity), not both.")
        log(f"scanning {data} …")
        return recommend_scanned(scan(data, progress=progress), budget, hw, book, state, backbone, weights, measure, use_model, log)
    if n_images is None or n_classes is None or similarity is None:
        raise AdvisorError("Without a data folder, give n_images, n_classes and similarity (0–1).")
    try:
        facts = DataFacts(n_images=n_images, n_classes=n_classes, similarity=similarity, resolution=resolution, channels=channels)
    except ValueError as exc:
        raise AdvisorError(f"Invalid numbers: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}.") from None
    throughput = _throughput(state, facts, hw, book, backbone, log) if measure else None
    return decide(facts, budget, hw, book, throughput, predictor=predictor(state, use_model), backbone=backbone)


def recommend_scanned(
    scanned: ScannedData, budget: Budget, hw: Hardware, book: rules_mod.RuleBook, state: MachineState,
    backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = None, measure: bool = True, use_model: bool = True,
    log: Log = quiet,
) -> Recommendation:
    """The folder form of :func:`recommend`, from a scan: profile → similarity → throughput → decide."""
    prof = profile_scan(scanned)
    log(f"  {prof.n_images} training images in {prof.n_classes} classes ({prof.scan_seconds:.1f} s)")
    log(f"measuring domain similarity on a sample with {backbone} on {hw.device} …")
    sim = measure_similarity(scanned, hw, backbone, weights)
    log(f"  similarity {sim.score:.2f} from {sim.sample_size} images ({sim.seconds:.1f} s)")
    facts = DataFacts(
        n_images=prof.n_images, n_classes=prof.n_classes, resolution=min(prof.width_median, prof.height_median),
        channels=prof.channels, imbalance=prof.imbalance, similarity=min(1.0, max(0.0, sim.score)),
    )
    accuracy = {}
    if sim.linear_accuracy is not None:
        accuracy["feature_extraction"] = Quantity(
            value=sim.linear_accuracy, source="measured",
            detail=f"cross-validated logistic regression on frozen features of {sim.sample_size} sampled images "
            f"at {sim.resolution}px; more images usually score higher",
        )
    throughput = _throughput(state, facts, hw, book, backbone, log) if measure else None
    rec = decide(facts, budget, hw, book, throughput, accuracy, predictor(state, use_model, sim, str(scanned.root)), backbone=backbone)
    return rec.model_copy(update={"profile": prof, "similarity": sim})


def _throughput(state: MachineState, facts: DataFacts, hw: Hardware, book: rules_mod.RuleBook, backbone: str, log: Log) -> Throughput:
    """Throughput at the planned resolution: from this machine's calibration record, else timed now and recorded."""
    res, batch = plan_resolution(facts.resolution, book), plan_batch_size(hw, facts.n_images, book)
    scratch_res = plan_resolution(facts.resolution, book, native=True)
    scratch = f"{registry.resolve('scratch', scratch_res, facts.n_images).arch}@{scratch_res}px"
    cached = calibration.cached_throughput(state, hw, backbone, res, timing_batch(hw, batch), scratch)
    if cached:
        log(f"throughput at {res}px from this machine's calibration record")
        return cached
    log(f"timing training steps of each strategy at {res}px on {hw.name} …")
    throughput = measure_throughput(hw, res, batch, backbone, scratch_resolution=scratch_res, n_images=facts.n_images)
    calibration.record_throughput(state, throughput, hw, backbone, scratch)
    log(f"  done ({throughput.seconds:.1f} s)")
    return throughput
