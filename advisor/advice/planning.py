"""Building the :class:`~advisor.advice.plan.Plan`, shared by ``recommend``, ``probe`` and ``train``: the options
checked once (:func:`setup`), the learned predictor built from this machine's state (:func:`predictor`), and
the folder's path scan → profile → similarity → throughput → feature extraction measured (:func:`plan_scanned`)
or the numbers-only one (:func:`plan_numbers`). :func:`advisor.advice.decide.decide` then turns the plan into advice.
:mod:`advisor.api` is the public face over it; the probe and ``advisor train`` take a plan, never the API."""

from __future__ import annotations

import sys
from typing import Callable

from ..nets import backbone as bb
from .. import budget as budget_mod
from ..measure import calibration, fe_accuracy
from .. import hardware, registry
from ..data import images, similarity
from ..model import learned
from .. import rules as rules_mod
from ..rules import plan_resolution
from ..errors import AdvisorError
from ..data.scan import profile as profile_scan
from ..data.scan import ScannedData
from ..state import MachineState
from ..measure import throughput as throughput_mod
from ..measure.throughput import Log, Target
from .plan import Plan
from ..schemas import Budget, DataFacts, Hardware, Quantity, Similarity, Throughput


def quiet(_: str) -> None:
    pass


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_similarity(data, hw: Hardware, backbone: str, weights: str | None,
                       sample_size: int = similarity.SAMPLE_SIZE) -> Similarity:
    """Similarity of the training images, on the sample :func:`similarity.sample_indices` draws."""
    train = data.split("train")
    sample = [train[i] for i in similarity.sample_indices([it.label for it in train], sample_size)]
    x, y = images.load(sample, similarity.RESOLUTION)
    if len(x) == 0:
        raise AdvisorError("None of the sampled images could be decoded.")
    return similarity.measure(x, y, hw, backbone, weights=weights)


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
              extra: list[dict] | None = None, fe: Quantity | None = None,
              pixels: Quantity | None = None) -> learned.LearnedPredictor | None:
    """The state's learned model as a decision predictor, corrected by this machine's probe records and
    ``extra`` ones, built on feature extraction's measured accuracy ``fe`` and the pixel baseline ``pixels``
    when there are; None when not wanted or none is fitted yet."""
    bundle = learned.load(state.model_path) if use_model else None
    if not bundle:
        return None
    return learned.LearnedPredictor(*bundle, measures, calibration.probes(state) + (extra or []), data, fe=fe, pixels=pixels)


def given_fe(value: float | None) -> Quantity | None:
    """Feature extraction's accuracy given by the caller (0–1), as a measured Quantity."""
    return _given(value, "fe_accuracy", "given by the caller (--fe-accuracy / fe_accuracy=)")


def given_pixels(value: float | None) -> Quantity | None:
    """The pixel baseline's accuracy given by the caller (0–1), as a measured Quantity."""
    return _given(value, "pixel_accuracy", "given by the caller (pixel_accuracy=): a linear classifier on the raw "
                  "pixels at 16 px, cross-validated (advisor.measure.fe_accuracy.measure_pixels_data)")


def _given(value: float | None, name: str, detail: str) -> Quantity | None:
    if value is None:
        return None
    if not 0.0 <= value <= 1.0:
        raise AdvisorError(f"{name} must be between 0 and 1 (a fraction, e.g. 0.82); got {value}.")
    return Quantity(value=float(value), source="measured", detail=detail)


def measure_fe(scanned: ScannedData, facts: DataFacts, budget: Budget, hw: Hardware, book: rules_mod.RuleBook,
               state: MachineState, backbone: str, weights: str | None, throughput: Throughput | None, local: bool,
               log: Log = quiet) -> Quantity | str:
    """Feature extraction trained for real on (a class-stratified subset of) the training images and
    cross-validated (:mod:`advisor.measure.fe_accuracy`), reused from this machine's record for the same files; or why not."""
    ips = throughput.images_per_second.get("feature_extraction") if throughput else None
    if ips and budget.seconds < facts.n_images / ips:
        return "the budget does not afford one pass over the images"
    res = plan_resolution(facts.resolution, book)
    size = fe_accuracy.subset_size(facts.n_images, hw, ips if local else None)
    return _measured_once(state, fe_accuracy.fingerprint(scanned, backbone, res, weights), scanned, log, "feature extraction",
                          f"on {size} images at {res}px (frozen {backbone}, {fe_accuracy.FOLDS}-fold cross-validation)",
                          lambda: fe_accuracy.measure_data(scanned, hw, res, size, backbone, weights))


def _measured_once(state: MachineState, key: str, scanned: ScannedData, log: Log, what: str, how: str,
                   measure: Callable[[], Quantity | str]) -> Quantity | str:
    """A baseline accuracy from this machine's record under ``key``, else ``measure()`` now and recorded; or why
    it could not be measured."""
    cached = calibration.cached_accuracy(state, key)
    if cached:
        log(f"{what}'s accuracy from this machine's record ({cached.value:.1%})")
        return cached
    log(f"measuring {what} {how} …")
    found = measure()
    if isinstance(found, Quantity):
        log(f"  {found.value:.1%} (80 % interval {found.low:.1%}–{found.high:.1%})")
        calibration.record_accuracy(state, key, str(scanned.root), found)  # a read-only store warns once and stores nothing
    return found


def measure_pixels(scanned: ScannedData, state: MachineState, log: Log = quiet) -> Quantity | str:
    """The pixel baseline (:func:`advisor.measure.fe_accuracy.measure_pixels_data`) on the training images, reused from this
    machine's record for the same files; or why it could not be measured."""
    return _measured_once(state, fe_accuracy.pixel_fingerprint(scanned), scanned, log, "the pixel baseline",
                          f"on up to {fe_accuracy.PIXEL_IMAGES} images at {fe_accuracy.PIXEL_SIDE}px (a linear classifier on "
                          f"raw pixels, {fe_accuracy.FOLDS}-fold cross-validation)", lambda: fe_accuracy.measure_pixels_data(scanned))


def plan_scanned(
    scanned: ScannedData, budget: Budget, hw: Hardware, book: rules_mod.RuleBook, state: MachineState,
    backbone: str = registry.DEFAULT_BACKBONE, weights: str | None = None, measure: bool = True, use_model: bool = True,
    log: Log = quiet, target: Target | None = None, fe: Quantity | None = None,
) -> Plan:
    """The plan for a scanned folder: profile → similarity → throughput → feature extraction measured (unless
    ``fe`` is given) and the pixel baseline → the learned predictor on them. ``hw`` computes the similarity and FE here; the plan is for
    ``target``'s device (default: ``hw``)."""
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
    throughput = throughput_mod.acquire(state, facts, hw, book, backbone, log, target) if measure else None
    found = fe or measure_fe(scanned, facts, budget, hw, book, state, backbone, weights, throughput, not target.profile, log)
    fe = found if isinstance(found, Quantity) else None
    pixels = measure_pixels(scanned, state, log)
    notes = [f"Feature extraction was not measured: {found}; its accuracy is predicted."] if not fe else []
    if not isinstance(pixels, Quantity):
        notes.append(f"The pixel baseline was not measured: {pixels}; the gain model decides without it.")
        pixels = None
    return Plan(facts, budget, plan_hw, book, throughput, fe, " ".join(notes) or None,
                predictor(state, use_model, sim, str(scanned.root), fe=fe, pixels=pixels), backbone, weights, scanned,
                prof, sim, pixels)


def plan_numbers(facts: DataFacts, budget: Budget, hw: Hardware, book: rules_mod.RuleBook, state: MachineState,
                 backbone: str = registry.DEFAULT_BACKBONE, measure: bool = True, use_model: bool = True, log: Log = quiet,
                 target: Target | None = None, fe: Quantity | None = None, pixels: Quantity | None = None) -> Plan:
    """The plan from numbers alone (no images): throughput timed or taken from the target's profile, feature
    extraction's accuracy and the pixel baseline as given (else FE predicted and the gain model's trees without
    the pixel baseline, and the advice says so)."""
    target = target or Target()
    plan_hw = target.profile.device if target.profile else hw
    throughput = throughput_mod.acquire(state, facts, hw, book, backbone, log, target) if measure else None
    return Plan(facts, budget, plan_hw, book, throughput, fe,
                None if fe else ("Feature extraction's accuracy was not measured (numbers only): it is predicted; "
                                 "give fe_accuracy= if you have measured it."),
                predictor(state, use_model, fe=fe, pixels=pixels), backbone, pixels=pixels)


def refreshed(plan: Plan, state: MachineState, use_model: bool = True) -> Plan:
    """``plan`` with its learned predictor built again from ``state`` (after a probe stored what it saw)."""
    root = str(plan.scanned.root) if plan.scanned else None
    return plan.with_predictor(predictor(state, use_model, plan.similarity, root, fe=plan.measured_fe, pixels=plan.pixels))
