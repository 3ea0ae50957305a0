"""The public API. The data path reads top to bottom: scan → profile → measure → plan → decide (→ probe);
the planning steps live in :mod:`advisor.advice.planning`, the plan they build in :mod:`advisor.advice.plan`."""

from __future__ import annotations

import inspect
import os

from pydantic import ValidationError

from .measure import profiles

from . import registry
from .advice.decide import decide
from .errors import AdvisorError
from .advice.plan import Plan
from .advice.planning import given_fe, plan_numbers, plan_scanned, quiet, setup
from .data.scan import profile as profile_scan
from .data.scan import scan
from .state import MachineState
from .measure.throughput import Log, Target
from .schemas import DataFacts, DataProfile, ProbeOptions, ProbeResult, Recommendation


def profile(data: str | os.PathLike) -> DataProfile:
    """Scan a labelled image folder and describe it (counts, imbalance, sizes, modes, unreadable files)."""
    return profile_scan(scan(data))


def plan(
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
    backbone: str = registry.DEFAULT_BACKBONE,
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
) -> Plan:
    """Everything the advice for a labelled image folder (``data``) or, without images, for numbers rests on:
    a frozen :class:`~advisor.advice.plan.Plan` that :func:`decide` turns into a recommendation.

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
    """
    target = Target.make(hardware, device_name, retime)
    book, hw, _, budget = setup(rules, device, backbone, target, gpu_hours=gpu_hours, hours=hours, minutes=minutes)
    state = state or MachineState()
    fe = given_fe(fe_accuracy)
    if data is not None:
        if any(v is not None for v in (n_images, n_classes, similarity)):
            raise AdvisorError("Give either a data folder or numbers (n_images, n_classes, similarity), not both.")
        log(f"scanning {data} …")
        return plan_scanned(scan(data, progress=progress), budget, hw, book, state, backbone, weights, measure, use_model, log,
                            target, fe)
    if n_images is None or n_classes is None or similarity is None:
        raise AdvisorError("Without a data folder, give n_images, n_classes and similarity (0–1).")
    try:
        facts = DataFacts(n_images=n_images, n_classes=n_classes, similarity=similarity, resolution=resolution, channels=channels)
    except ValueError as exc:
        raise AdvisorError(f"Invalid numbers: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}.") from None
    return plan_numbers(facts, budget, hw, book, state, backbone, measure, use_model, log, target, fe)


def recommend(data: str | os.PathLike | None = None, **options) -> Recommendation:
    """Recommend a strategy for a labelled image folder (``data``) or, without images, from numbers:
    ``decide(plan(data, **options))``; the options are :func:`plan`'s.

    >>> rec = recommend(n_images=500, n_classes=5, similarity=0.7, minutes=10, measure=False)
    >>> rec.strategy
    'fine_tune'
    """
    return decide(plan(data, **options))


recommend.__signature__ = inspect.signature(plan).replace(return_annotation=Recommendation)


def probe_options(**options) -> ProbeOptions:
    """The probe's options (:class:`ProbeOptions`' fields), checked: a bad value raises one :class:`AdvisorError`."""
    try:
        return ProbeOptions(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise AdvisorError(f"Invalid probe option {'.'.join(map(str, err['loc'])) or ''}: {err['msg']}.") from None


def probe(
    data: str | os.PathLike,
    *,
    gpu_hours: float | None = None,
    hours: float | None = None,
    minutes: float | None = None,
    device: str | None = None,
    backbone: str = registry.DEFAULT_BACKBONE,
    weights: str | None = None,
    rules: str | os.PathLike | None = None,
    use_model: bool = True,
    log: Log = quiet,
    state: MachineState | None = None,
    **options,
) -> ProbeResult:
    """Plan for the images in ``data`` on this machine (as :func:`plan`), then check the advice with short real
    training runs of every strategy (:func:`advisor.probing.probe`). ``options``: :class:`ProbeOptions`' fields —
    ``fraction``, ``seconds``, ``steps``, ``max_train``, ``max_val``, ``resolution``, ``strategies``, ``progress``,
    ``save`` — checked before any work."""
    from .probing import probe as run

    checked = probe_options(**options)
    state = state or MachineState()
    planned = plan(data, gpu_hours=gpu_hours, hours=hours, minutes=minutes, device=device, backbone=backbone, weights=weights,
                   rules=rules, use_model=use_model, progress=checked.progress, log=log, state=state)
    return run(planned, checked, state, log)


def budget_curve(plan: Plan, points: int = 33, span: float = 10.0) -> list[Recommendation]:
    """The same decision at ``points`` log-spaced budgets — from a tenth of an epoch of all-layer training (or
    the plan's budget ÷ ``span``, if smaller) to the plan's budget × 3 — with the same facts, throughput,
    measures and predictor, nothing measured again. The data behind the report's curves."""
    import numpy as np

    lo = plan.budget.seconds / span
    if plan.throughput:
        lo = min(lo, 0.1 * plan.facts.n_images / plan.images_per_second["retrain"])
    return [decide(plan.with_budget(s)) for s in np.geomspace(lo, plan.budget.seconds * 3, points)]
