"""The public API. The data path reads top to bottom: scan → profile → measure → plan → decide (→ probe);
the planning steps live in :mod:`advisor.advice.planning`, the plan they build in :mod:`advisor.advice.plan`."""

from __future__ import annotations

import os

from .advice.decide import decide
from .errors import AdvisorError
from .advice.plan import Plan
from .advice.planning import given_fe, given_pixels, plan_numbers, plan_scanned, quiet, setup
from .data.scan import profile as profile_scan
from .data.scan import scan
from .state import MachineState
from .measure.throughput import Log, Target
from .schemas import AdviceOptions, DataFacts, DataProfile, PlanOptions, ProbeOptions, ProbeResult, Recommendation


def profile(data: str | os.PathLike) -> DataProfile:
    """Scan a labelled image folder and describe it (counts, imbalance, sizes, modes, unreadable files)."""
    return profile_scan(scan(data))


def plan(
    data: str | os.PathLike | None = None,
    options: PlanOptions | None = None,
    *,
    log: Log = quiet,
    state: MachineState | None = None,
    **fields,
) -> Plan:
    """Everything the advice for a labelled image folder (``data``) or, without images, for numbers rests on:
    a frozen :class:`~advisor.advice.plan.Plan` that :func:`decide` turns into a recommendation.

    ``options`` is a :class:`PlanOptions`; its fields may be given as keywords instead (``fields``, checked
    once: a bad value or an unknown name raises one :class:`AdvisorError`). Numbers-only form: ``n_images``,
    ``n_classes`` and ``similarity`` (0–1) instead of ``data``. The budget is one of ``gpu_hours``, ``hours`` (of
    the device here) or ``minutes``. With ``measure=False`` no throughput is measured and no times or epochs
    are estimated. The learned model (when one is packaged, see ``benchmarks/fit_model.py``) ranks what the rules
    leave feasible unless ``use_model=False``. Plan for another device with ``hardware`` (a profile saved by
    ``advisor hardware --save``) or ``device_name`` (an estimated profile, e.g. ``"a100"``); ``retime`` times
    this device afresh. Feature extraction's accuracy is measured on the images (cross-validated, reused for the
    same files); ``fe_accuracy`` (0–1) gives it instead — without it, with numbers only, FE is predicted.
    With numbers only, ``pixel_accuracy`` (0–1) gives the pixel baseline the gain model reads (else its trees
    fitted without it decide).
    ``state`` says where this machine's calibration records and the learned model are (default:
    :class:`MachineState` ``()``, i.e. ``$ADVISOR_HOME`` and the packaged model); ``log`` gets progress lines.
    """
    o = PlanOptions.of(options, **fields)
    target = Target.make(o.hardware, o.device_name, o.retime)
    book, hw, _, budget = setup(o.rules, o.device, o.backbone, target, gpu_hours=o.gpu_hours, hours=o.hours, minutes=o.minutes)
    state = state or MachineState()
    fe = given_fe(o.fe_accuracy)
    if data is not None:
        if any(v is not None for v in (o.n_images, o.n_classes, o.similarity)):
            raise AdvisorError("Give either a data folder or numbers (n_images, n_classes, similarity), not both.")
        if o.pixel_accuracy is not None:
            raise AdvisorError("pixel_accuracy is for numbers only: with a data folder the pixel baseline is measured on the images.")
        log(f"scanning {data} …")
        return plan_scanned(scan(data, progress=o.progress), budget, hw, book, state, o.backbone, o.weights, o.measure,
                            o.use_model, log, target, fe)
    if o.n_images is None or o.n_classes is None or o.similarity is None:
        raise AdvisorError("Without a data folder, give n_images, n_classes and similarity (0–1).")
    try:
        facts = DataFacts(n_images=o.n_images, n_classes=o.n_classes, similarity=o.similarity, resolution=o.resolution,
                          channels=o.channels)
    except ValueError as exc:
        raise AdvisorError(f"Invalid numbers: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}.") from None
    return plan_numbers(facts, budget, hw, book, state, o.backbone, o.measure, o.use_model, log, target, fe,
                        given_pixels(o.pixel_accuracy))


def recommend(data: str | os.PathLike | None = None, options: PlanOptions | None = None, *, log: Log = quiet,
              state: MachineState | None = None, **fields) -> Recommendation:
    """Recommend a strategy for a labelled image folder (``data``) or, without images, from numbers:
    ``decide(plan(data, options, log=log, state=state, **fields))``; the options are :class:`PlanOptions`'.

    >>> rec = recommend(n_images=500, n_classes=5, similarity=0.7, minutes=10, measure=False)
    >>> rec.strategy
    'fine_tune'
    """
    return decide(plan(data, options, log=log, state=state, **fields))


def probe(
    data: str | os.PathLike,
    options: ProbeOptions | None = None,
    advice: AdviceOptions | None = None,
    *,
    log: Log = quiet,
    state: MachineState | None = None,
    **fields,
) -> ProbeResult:
    """Plan for the images in ``data`` on this machine (as :func:`plan`, with ``advice``: the budget, device,
    backbone, rules, model), then check the advice with short real training runs of every strategy
    (:func:`advisor.probing.probe`, with ``options``: ``fraction``, ``seconds``, ``steps``, ``max_train``,
    ``max_val``, ``resolution``, ``strategies``, ``progress``, ``save``). Fields of either may be given as
    keywords instead; all are checked before any work."""
    from .probing import probe as run

    unknown = set(fields) - set(ProbeOptions.model_fields) - set(AdviceOptions.model_fields)
    if unknown:  # neither model's: name both lists
        raise AdvisorError(f"Unknown option '{sorted(unknown)[0]}'; the options are: "
                           f"{', '.join([*ProbeOptions.model_fields, *AdviceOptions.model_fields])}.")
    checked = ProbeOptions.of(options, **{k: v for k, v in fields.items() if k in ProbeOptions.model_fields})
    advising = AdviceOptions.of(advice, **{k: v for k, v in fields.items() if k in AdviceOptions.model_fields and k != "progress"})
    state = state or MachineState()
    planned = plan(data, PlanOptions.of(None, **{**dict(advising), "progress": checked.progress}), log=log, state=state)
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
