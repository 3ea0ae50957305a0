"""The public API. The data path reads top to bottom: scan → profile → measure → decide (→ probe); the
shared planning steps live in :mod:`advisor.planning`."""

from __future__ import annotations

import os

from . import backbone as bb
from . import profiles
from . import rules as rules_mod
from .decide import decide
from .errors import AdvisorError
from .planning import given_fe, predictor, quiet, recommend_scanned, setup
from .scan import profile as profile_scan
from .scan import scan
from .state import MachineState
from . import throughput as throughput_mod
from .throughput import Log, Target
from .schemas import DataFacts, DataProfile, Recommendation


def profile(data: str | os.PathLike) -> DataProfile:
    """Scan a labelled image folder and describe it (counts, imbalance, sizes, modes, unreadable files)."""
    return profile_scan(scan(data))


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
    throughput = throughput_mod.acquire(state, facts, hw, book, backbone, log, target) if measure else None
    rec = decide(facts, budget, plan_hw, book, throughput, {"feature_extraction": fe} if fe else None,
                 predictor=predictor(state, use_model, fe=fe), backbone=backbone)
    if fe is None:
        rec.warnings.append("Feature extraction's accuracy was not measured (numbers only): it is predicted; "
                            "give fe_accuracy= if you have measured it.")
    return rec


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
