"""The public API. The data path reads top to bottom: scan → profile → measure → decide (→ probe)."""

from __future__ import annotations

import os
import time
import sys
from dataclasses import dataclass
from typing import Callable

from . import backbone as bb
from . import registry
from . import budget as budget_mod
from . import calibration, fe_accuracy, hardware, images, learned, profiles, similarity, timing
from . import rules as rules_mod
from .decide import decide, plan_batch_size, plan_resolution, standard_batch_size
from .errors import AdvisorError
from .scan import profile as profile_scan
from .scan import ScannedData, scan
from .state import MachineState
from .schemas import Budget, DataFacts, DataProfile, Hardware, Quantity, Recommendation, Similarity, Throughput


Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def profile(data: str | os.PathLike) -> DataProfile:
    """Scan a labelled image folder and describe it (counts, imbalance, sizes, modes, unreadable files)."""
    return profile_scan(scan(data))


FIRST_TIMING_SECONDS: float | None = 20.0  # what timing this machine may cost a recommendation (None: unbounded)


def measure_throughput(hw: Hardware, resolution: int, batch_size: int, backbone: str = bb.DEFAULT_BACKBONE,
                       scratch_resolution: int | None = None, n_images: int = 0, retries: int = 1,
                       budget_seconds: float | None = None) -> Throughput:
    """Images/s of each strategy's training step on this device, timed now (:mod:`advisor.timing`): interleaved
    rounds, the others' load measured alongside, figures checked for plausibility and re-timed ``retries``
    times when implausible.

    Scratch is timed on the network the registry sizes to ``n_images`` at ``scratch_resolution`` (the images'
    own side; default ``resolution``), the others at ``resolution``. Steps are timed at the planned
    ``batch_size``: a smaller batch is quicker to time but slower per image (on a quiet 2-core CPU, batch 8
    timed 0.46–0.58× the images/s of real training at batch 32, batch 32 within 5 %; ``benchmarks/timing_batch.py``).
    All-layer training is also timed at :data:`timing.SMALL_BATCH`, which gives how images/s scale with the
    batch (:attr:`Throughput.batch_exponent`), from which :meth:`Throughput.at_batch` derives other batch sizes.
    ``budget_seconds`` bounds each attempt (fewer steps and rounds on a slow machine, the spread then stated);
    a recommendation's timing uses :data:`FIRST_TIMING_SECONDS`.
    """
    configs = timing.strategy_configs(resolution, n_images, scratch_resolution)
    for _ in range(retries + 1):
        result = timing.time_configurations(configs, batch_size, hw, backbone,
                                            budget_seconds=budget_seconds and 0.8 * budget_seconds)
        if result.conditions.plausible:
            break
    scratch, scratch_res = configs["scratch"]
    retrain, _ = configs["retrain"]
    t0 = time.perf_counter()
    alpha = timing.batch_exponent(retrain, resolution, batch_size, result.images_per_second["retrain"], hw, backbone)
    extra = time.perf_counter() - t0
    return Throughput(
        resolution=resolution, batch_size=batch_size, images_per_second=result.images_per_second, batch_exponent=alpha,
        detail=f"batch {batch_size}, {resolution}px (scratch: {scratch.arch} at {scratch_res}px), on {hw.name}; "
               + timing.describe(result.conditions)
               + ("" if alpha is None else f"; images/s ∝ batch^{alpha:.2f} (all-layer training also timed at batch {timing.SMALL_BATCH})"),
        seconds=round(result.conditions.seconds + extra, 2), origin="timed now", conditions=result.conditions,
        problems=timing.problems_of(result.conditions) + result.problems,
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


@dataclass(frozen=True)
class Target:
    """The device the training will run on: this one (timed here, reusing this machine's records unless
    ``retime``), or the device of a hardware ``profile`` (measured elsewhere or estimated; nothing is timed)."""

    profile: profiles.HardwareProfile | None = None
    origin: str = ""
    retime: bool = False

    @classmethod
    def make(cls, hardware: str | os.PathLike | profiles.HardwareProfile | None = None, device_name: str | None = None,
             retime: bool = False) -> "Target":
        if hardware is not None and device_name is not None:
            raise AdvisorError("Give either a hardware profile or a device name, not both.")
        if isinstance(hardware, profiles.HardwareProfile):
            return cls(hardware, f"from a {hardware.source} profile of {hardware.device.name}")
        if hardware is not None:
            prof = profiles.load(hardware)
            return cls(prof, f"from the profile {hardware} ({prof.source} on {prof.device.name}, {prof.time[:10]})")
        if device_name is not None:
            prof = profiles.estimate(device_name)
            how = "estimated" if prof.source == "estimated" else f"from advisor's measured profile of {prof.time[:10]}"
            return cls(prof, f"{how} for {prof.device.name}")
        return cls(retime=retime)


def setup(rules, device: str | None, backbone: str, target: Target | None = None, **budget,
          ) -> tuple[rules_mod.RuleBook, Hardware, Hardware, Budget]:
    """Check the options that do not depend on the data: rules file, device, backbone name and budget.
    Returns the rules, the device that computes here, the device planned for (the target's) and the budget."""
    book = rules_mod.load(rules)
    hw = hardware.detect(device)
    bb.get_config(backbone)
    plan_hw = target.profile.device if target and target.profile else hw
    return book, hw, plan_hw, budget_mod.make(plan_hw, **budget)


def predictor(state: MachineState, use_model: bool = True, measures: Similarity | None = None, data: str | None = None,
              extra: list[dict] | None = None, fe: Quantity | None = None) -> learned.LearnedPredictor | None:
    """The state's learned model as a decision predictor, corrected by this machine's probe records and
    ``extra`` ones, built on feature extraction's measured accuracy ``fe`` when there is one; None when not
    wanted or none is fitted yet."""
    bundle = learned.load(state.model_path) if use_model else None
    if not bundle:
        return None
    return learned.LearnedPredictor(*bundle, measures, calibration.probes(state) + (extra or []), data, fe=fe)


def given_fe(value: float | None) -> Quantity | None:
    """Feature extraction's accuracy given by the caller (0–1), as a measured Quantity."""
    if value is None:
        return None
    if not 0.0 <= value <= 1.0:
        raise AdvisorError(f"fe_accuracy must be between 0 and 1 (a fraction, e.g. 0.82); got {value}.")
    return Quantity(value=float(value), source="measured", detail="given by the caller (--fe-accuracy / fe_accuracy=)")


def measure_fe(scanned: ScannedData, facts: DataFacts, budget: Budget, hw: Hardware, book: rules_mod.RuleBook,
               state: MachineState, backbone: str, weights: str | None, throughput: Throughput | None, local: bool,
               log: Log = quiet) -> Quantity | str:
    """Feature extraction trained for real on (a class-stratified subset of) the training images and
    cross-validated (:mod:`advisor.fe_accuracy`), reused from this machine's record for the same files; or why not."""
    ips = throughput.images_per_second.get("feature_extraction") if throughput else None
    if ips and budget.seconds < facts.n_images / ips:
        return "the budget does not afford one pass over the images"
    res = plan_resolution(facts.resolution, book)
    size = fe_accuracy.subset_size(facts.n_images, hw, ips if local else None)
    key = fe_accuracy.fingerprint(scanned, backbone, res, weights)
    cached = calibration.cached_fe(state, key)
    if cached:
        log(f"feature extraction's accuracy from this machine's record ({cached.value:.1%})")
        return cached
    log(f"measuring feature extraction on {size} images at {res}px (frozen {backbone}, {fe_accuracy.FOLDS}-fold cross-validation) …")
    found = fe_accuracy.measure_data(scanned, hw, res, size, backbone, weights)
    if isinstance(found, Quantity):
        log(f"  {found.value:.1%} (80 % interval {found.low:.1%}–{found.high:.1%})")
        calibration.record_fe(state, key, str(scanned.root), found)  # a read-only store warns once and stores nothing
    return found


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
    hardware: str | os.PathLike | profiles.HardwareProfile | None = None,
    device_name: str | None = None,
    retime: bool = False,
    fe_accuracy: float | None = None,
) -> Recommendation:
    """Recommend a strategy for a labelled image folder (``data``) or, without images, from numbers.

    Numbers-only form: give ``n_images``, ``n_classes`` and ``similarity`` (0–1) instead of ``data``.
    The budget is one of ``gpu_hours``, ``hours`` (of the device here) or ``minutes``.
    With ``measure=False`` no throughput is measured and no times or epochs are estimated. The learned model
    (when one is packaged, see ``benchmarks/fit_model.py``) ranks what the rules leave feasible unless
    ``use_model=False``. ``state`` says where this machine's calibration records and the learned model are
    (default: :class:`MachineState` ``()``, i.e. ``$ADVISOR_HOME`` and the packaged model).
    Plan for another device with ``hardware`` (a profile saved by ``advisor hardware --save``) or
    ``device_name`` (an estimated profile, e.g. ``"a100"``); ``retime`` times this device afresh.
    Feature extraction's accuracy is measured on the images (cross-validated, reused for the same files);
    ``fe_accuracy`` (0–1) gives it instead, e.g. with numbers only — without it, there, FE is predicted.

    >>> rec = recommend(n_images=500, n_classes=5, similarity=0.7, minutes=10, measure=False)
    >>> rec.strategy
    'feature_extraction'
    """
    target = Target.make(hardware, device_name, retime)
    book, hw, plan_hw, budget = setup(rules, device, backbone, target, gpu_hours=gpu_hours, hours=hours, minutes=minutes)
    state = state or MachineState()
    if data is not None:
        if any(v is not None for v in (n_images, n_classes, similarity)):
            raise AdvisorError("Give either a data folder or numbers (n_images, n_classes, similarity), not both.")
        log(f"scanning {data} …")
        return recommend_scanned(scan(data, progress=progress), budget, hw, book, state, backbone, weights, measure, use_model, log,
                                 target, given_fe(fe_accuracy))
    if n_images is None or n_classes is None or similarity is None:
        raise AdvisorError("Without a data folder, give n_images, n_classes and similarity (0–1).")
    try:
        facts = DataFacts(n_images=n_images, n_classes=n_classes, similarity=similarity, resolution=resolution, channels=channels)
    except ValueError as exc:
        raise AdvisorError(f"Invalid numbers: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}.") from None
    fe = given_fe(fe_accuracy)
    throughput = _throughput(state, facts, hw, book, backbone, log, target) if measure else None
    rec = decide(facts, budget, plan_hw, book, throughput, {"feature_extraction": fe} if fe else None,
                 predictor=predictor(state, use_model, fe=fe), backbone=backbone)
    if fe is None:
        rec.warnings.append("Feature extraction's accuracy was not measured (numbers only): it is predicted; "
                            "give fe_accuracy= if you have measured it.")
    return rec


def recommend_scanned(
    scanned: ScannedData, budget: Budget, hw: Hardware, book: rules_mod.RuleBook, state: MachineState,
    backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = None, measure: bool = True, use_model: bool = True,
    log: Log = quiet, target: Target | None = None, fe: Quantity | None = None,
) -> Recommendation:
    """The folder form of :func:`recommend`, from a scan: profile → similarity → throughput → feature
    extraction measured (unless ``fe`` is given) → decide. ``hw`` computes the similarity and FE here; the
    plan is for ``target``'s device (default: ``hw``)."""
    target = target or Target()
    plan_hw = target.profile.device if target.profile else hw
    prof = profile_scan(scanned)
    log(f"  {prof.n_images} training images in {prof.n_classes} classes ({prof.scan_seconds:.1f} s)")
    log(f"measuring domain similarity on a sample with {backbone} on {hw.device} …")
    sim = measure_similarity(scanned, hw, backbone, weights)
    log(f"  similarity {sim.score:.2f} from {sim.sample_size} images ({sim.seconds:.1f} s)")
    facts = DataFacts(
        n_images=prof.n_images, n_classes=prof.n_classes, resolution=min(prof.width_median, prof.height_median),
        channels=prof.channels, imbalance=prof.imbalance, similarity=min(1.0, max(0.0, sim.score)),
    )
    throughput = _throughput(state, facts, hw, book, backbone, log, target) if measure else None
    found = fe or measure_fe(scanned, facts, budget, hw, book, state, backbone, weights, throughput, not target.profile, log)
    fe = found if isinstance(found, Quantity) else None
    rec = decide(facts, budget, plan_hw, book, throughput, {"feature_extraction": fe} if fe else None,
                 predictor(state, use_model, sim, str(scanned.root), fe=fe), backbone=backbone)
    if fe is None:
        rec.warnings.append(f"Feature extraction was not measured: {found}; its accuracy is predicted.")
    return rec.model_copy(update={"profile": prof, "similarity": sim})


def scratch_key(facts: DataFacts, book: rules_mod.RuleBook) -> str:
    """The scratch network planned for ``facts`` and its side, e.g. ``cnn_s@28px``: part of a throughput record's key."""
    side = plan_resolution(facts.resolution, book, native=True)
    return f"{registry.resolve('scratch', side, facts.n_images).arch}@{side}px"


RECHECK_SECONDS = 300.0  # a record quick-checked this recently in this process is used without another check
_checked: dict[tuple, tuple[float, Throughput]] = {}  # (home, device, backbone, resolution, batch, scratch) → (when, result)


def _throughput(state: MachineState, facts: DataFacts, hw: Hardware, book: rules_mod.RuleBook, backbone: str, log: Log,
                target: Target | None = None) -> Throughput:
    """Throughput at the planned resolution: from the target's hardware profile when there is one; else this
    machine's record when it is reusable and a quick check now agrees with it (a provisional record, timed on a
    busy machine, is kept while the machine is busy and timed again once it is quiet); else timed now and, when
    plausible, recorded — provisionally if the machine was busy. Records are timed and kept at the device's
    standard batch; a smaller planned batch (fewer images than that) is derived (:meth:`Throughput.at_batch`),
    so a new data size never costs a new timing."""
    target = target or Target()
    scratch_res = plan_resolution(facts.resolution, book, native=True)
    res = plan_resolution(facts.resolution, book)
    if target.profile:
        plan_hw = target.profile.device
        batch = plan_batch_size(plan_hw, facts.n_images, book)
        log(f"throughput at {res}px {target.origin} (nothing timed here)")
        return profiles.throughput(target.profile, res, batch, facts.n_images, scratch_res, target.origin)
    planned, batch = plan_batch_size(hw, facts.n_images, book), standard_batch_size(hw, book)
    throughput = _timed_throughput(state, facts, hw, backbone, log, target, res, batch, scratch_res,
                                   scratch_key(facts, book))
    return throughput.at_batch(planned)


def _timed_throughput(state: MachineState, facts: DataFacts, hw: Hardware, backbone: str, log: Log, target: Target,
                      res: int, batch: int, scratch_res: int, scratch: str) -> Throughput:
    """This machine's throughput at ``batch``: a reusable record a quick check now agrees with, else timed now."""
    cached = None if target.retime else calibration.cached_throughput(state, hw, backbone, res, batch, scratch)
    if cached is None and not target.retime and (why := calibration.skipped_throughput(state, hw, backbone, res, batch, scratch)):
        log(why)
    key = (str(state.db_path), hw.name, backbone, res, batch, scratch)
    if cached and (seen := _checked.get(key)) and time.monotonic() - seen[0] < RECHECK_SECONDS and seen[1].origin.startswith(cached.origin):
        age = time.monotonic() - seen[0]
        log(f"throughput at {res}px {cached.origin}, checked {age:.0f} s ago in this process")
        return seen[1].model_copy(update={"origin": seen[1].origin + f" ({age:.0f} s ago, in this process)"})
    if cached:
        load = timing.current_load()  # a busy machine keeps the record without a training step
        if load is None or load <= timing.BUSY_LOAD:
            # checked at the small batch when the record knows how figures scale with the batch: less work
            small = min(cached.batch_size, timing.SMALL_BATCH) if cached.batch_exponent is not None else cached.batch_size
            check, load = timing.quick_check(registry.resolve("retrain", res, 0), res, small, hw, backbone)
            recorded = cached.at_batch(small).images_per_second["retrain"]
        if load is not None and load > timing.BUSY_LOAD:
            log(f"throughput at {res}px {cached.origin} (the machine is busy now, so the record stands)")
            kept = cached.model_copy(update={"origin": cached.origin + f"; kept: the machine is busy now (other processes use {load:.0%} of the CPUs)"})
            _checked[key] = (time.monotonic(), kept)
            return kept
        if cached.conditions is not None and not cached.conditions.quiet:
            log(f"the record of throughput at {res}px is provisional and the machine is quiet now: timing again to replace it")
        elif 0.5 <= check / recorded <= 2:
            log(f"throughput at {res}px {cached.origin}, confirmed by a quick check")
            confirmed = cached.model_copy(update={"origin": cached.origin + f"; a quick check agrees (all-layer training {check:.0f} img/s, recorded {recorded:.0f})"})
            _checked[key] = (time.monotonic(), confirmed)
            return confirmed
        else:
            log(f"the record of throughput at {res}px is far from a quick check now ({check:.0f} img/s vs {recorded:.0f} recorded): timing again")
    log(f"timing training steps of each strategy at {res}px on {hw.name}"
        + (f" (fewer steps on a slow machine, to keep near {FIRST_TIMING_SECONDS:.0f} s) …" if FIRST_TIMING_SECONDS else " …"))
    throughput = measure_throughput(hw, res, batch, backbone, scratch_resolution=scratch_res, n_images=facts.n_images,
                                    budget_seconds=FIRST_TIMING_SECONDS)
    if not throughput.conditions.plausible:
        log(f"  done ({throughput.seconds:.1f} s); not recorded: " + "; ".join(throughput.problems))
    else:
        calibration.record_throughput(state, throughput, hw, backbone, scratch)
        log(f"  done ({throughput.seconds:.1f} s); recorded for later advice on this machine" if throughput.conditions.quiet else
            f"  done ({throughput.seconds:.1f} s); recorded as provisional (the machine was busy): later advice reuses it "
            "until a timing on a quiet machine replaces it")
    return throughput


def budget_curve(rec: Recommendation, state: MachineState | None = None, rules: str | os.PathLike | None = None,
                 backbone: str = bb.DEFAULT_BACKBONE, use_model: bool = True, points: int = 33, span: float = 10.0,
                 ) -> list[Recommendation]:
    """The same decision at ``points`` log-spaced budgets — from a tenth of an epoch of all-layer training (or
    ``rec``'s budget ÷ ``span``, if smaller) to ``rec``'s budget × 3 — with the same facts, throughput and
    measures, nothing measured again. The data behind the report's curves."""
    import numpy as np

    state = state or MachineState()
    book = rules_mod.load(rules)
    measured = rec.estimate("feature_extraction").accuracy
    accuracy = {"feature_extraction": measured} if measured is not None and measured.source == "measured" else {}
    pred = predictor(state, use_model, rec.similarity, rec.profile.root if rec.profile else None, fe=accuracy.get("feature_extraction"))
    out = []
    lo = rec.budget.seconds / span
    if rec.throughput:
        lo = min(lo, 0.1 * rec.facts.n_images / rec.throughput.images_per_second["retrain"])
    for seconds in np.geomspace(lo, rec.budget.seconds * 3, points):
        budget = rec.budget.model_copy(update={"seconds": float(seconds), "note": ""})
        out.append(decide(rec.facts, budget, rec.hardware, book, rec.throughput, accuracy, pred, backbone=backbone))
    return out
