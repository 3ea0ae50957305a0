"""Probe: short real training runs of every strategy on a class-stratified subset, on this device, each
forecast to the full budget (:mod:`advisor.model.forecast`) to check the recommendation. Results are kept for calibration."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np
from tqdm.auto import tqdm

from .measure import calibration, timing

from .nets import engine

from .model import forecast, learned

from .data import images

from .advice import planning
from . import registry
from .advice.decide import decide
from .rules import standard_batch_size
from .measure import throughput as throughput_mod
from .errors import AdvisorError
from .advice.plan import Plan
from .data.scan import ScannedData
from .state import MachineState
from .registry import STRATEGY_NAMES
from .schemas import ProbeOptions, ProbeResult, ProbeRun, Quantity, Recommendation, StrategyName
from .units import Z80, EpochEquivalents, accuracy_se


def probe_seconds(rec: Recommendation, fraction: float) -> float:
    """The probe's total time: ``fraction`` of the budget, at least 20 s and at most 20 minutes."""
    if not 0 < fraction <= 1:
        raise AdvisorError(f"The probe fraction must be in (0, 1]; got {fraction}.")
    return min(1200.0, max(20.0, rec.budget.seconds * fraction))


MIN_STEPS = 10  # a trained strategy needs this many steps ...
MIN_SHARE = 0.02  # ... and this share of the budget's epoch-equivalents for its probe to judge it
CHANCE_SE = 2.0  # an accuracy within this many standard errors of chance shows nothing was learnt yet
MIN_WEIGHT = 0.1  # runs whose surprise moves their forecasts by less than this share of itself cannot check the advice


def _judge(run: ProbeRun, n_classes: int, n_val: int, in_budget: float | None) -> ProbeRun:
    """Mark a run "too short to judge" when it is within noise of chance, or trained too few steps or too
    small a share of the budget to say what the budget would bring; such a run neither decides the verdict
    nor calibrates the model."""
    why = forecast.viable(run.val_accuracy, n_classes, n_val, False, CHANCE_SE)  # within noise of chance
    if why is None and run.strategy != "feature_extraction" and run.steps < MIN_STEPS:
        why = f"{run.steps} steps (fewer than {MIN_STEPS})"
    if why is None and run.reach is not None and in_budget and (
            share := EpochEquivalents(run.reach).share_of(EpochEquivalents(in_budget))) < MIN_SHARE:
        why = f"{share:.1%} of the budget's epochs (less than {MIN_SHARE:.0%})"
    if why is None:
        return run
    return run.model_copy(update={"judged": False, "note": f"too short to judge: {why}"})


def _verdict(rec: Recommendation, runs: list[ProbeRun], n_val: int) -> tuple[list, bool | None, str]:
    """The ranking of every run, whether the probe agrees with the recommendation (None: it cannot judge it),
    and the verdict in words. Only runs long enough to judge (:func:`_judge`) count."""
    ranking = [r.strategy for r in sorted(runs, key=lambda r: r.val_accuracy, reverse=True)]
    acc = {r.strategy: r.val_accuracy for r in runs if r.judged}  # the runs long enough to judge
    chosen = rec.strategy
    short = ", ".join(r.strategy for r in runs if not r.judged)
    unjudged = f" Too short to judge: {short}." if short else ""
    if not acc:
        return ranking, None, f"The probe cannot judge any strategy: every run was too short.{unjudged}"
    best = max(acc, key=acc.get)
    if chosen not in acc:
        return ranking, None, (f"The probe cannot judge the recommended {chosen}: its run was too short. Of the runs "
                               f"long enough to judge, {best} did best ({acc[best]:.1%}).{unjudged}")
    # the recommended strategy agrees if it is within one binomial standard error of the best
    se = accuracy_se(acc[best], n_val)
    agrees = acc[best] - acc[chosen] <= se
    if chosen == best:
        verdict = f"The probe agrees: {chosen} reached the best validation accuracy ({acc[chosen]:.1%})."
    elif agrees:
        verdict = (f"The probe agrees within noise: {best} {acc[best]:.1%} vs recommended {chosen} {acc[chosen]:.1%} "
                   f"(difference below one standard error, {se:.1%}, on {n_val} validation images).")
    else:
        verdict = (f"The probe disagrees: {best} reached {acc[best]:.1%}, the recommended {chosen} {acc[chosen]:.1%}. "
                   "Short runs favour cheap strategies; a longer budget may still favour the recommendation.")
    return ranking, agrees, verdict + unjudged


def _model_errors(pred, plan: Plan, runs: list[ProbeRun], n_train: int, k_budget: float | None) -> dict[StrategyName, float]:
    """The model's error in normalised accuracy: for a run with a forecast, forecast − prediction at the full
    budget on all the data; otherwise observed − prediction at the probe's own conditions (its subset size and
    the epoch-equivalents it trained, ``ProbeRun.reach``)."""
    facts = plan.facts.model_copy(update={"n_images": n_train})
    full = pred.normalised(plan.facts, EpochEquivalents(k_budget), plan.speed_ratios) if k_budget else None
    errors = {}
    for r in runs:
        j = STRATEGY_NAMES.index(r.strategy)
        if r.forecast is not None and full is not None:
            raw, seen = full[j], r.forecast.value
        else:
            raw, seen = pred.normalised(facts, EpochEquivalents(r.reach if r.reach is not None else 1.0), plan.speed_ratios)[j], r.val_accuracy
        errors[r.strategy] = round(float(learned.to_normalised(seen, plan.facts.n_classes) - raw), 4)
    return errors


def _forecast(pred: learned.LearnedPredictor, plan: Plan, run: ProbeRun, n_train: int, n_val: int,
              k_budget: float, full: np.ndarray) -> ProbeRun:
    """``run`` with its forecast at the full budget (:mod:`advisor.model.forecast`; ``full``: the model's normalised
    accuracies there), or marked not viable (diverged,
    or at chance after :data:`MIN_STEPS` steps), or too short to forecast (fewer steps). Feature extraction is
    complete after its one pass: nothing to forecast."""
    if run.strategy == "feature_extraction":
        return run
    n_classes = plan.facts.n_classes
    why = forecast.viable(run.val_accuracy, n_classes, n_val, not run.viable, CHANCE_SE)
    if why and (not run.viable or run.steps >= MIN_STEPS):
        return run.model_copy(update={"viable": False, "note": f"not viable: {why}"})
    if run.steps < MIN_STEPS:
        return run.model_copy(update={"judged": False, "note": f"too short to forecast: {run.steps} step{'s' * (run.steps != 1)} (fewer than {MIN_STEPS})"})
    j, fc = STRATEGY_NAMES.index(run.strategy), pred.forecaster
    share = min(1.0, run.reach * n_train / (k_budget * plan.facts.n_images))
    short = float(learned.to_accuracy(pred.normalised(plan.facts.model_copy(update={"n_images": n_train}),
                                                      EpochEquivalents(run.reach), plan.speed_ratios)[j], n_classes))
    full = float(learned.to_accuracy(full[j], n_classes))
    top = float(learned.to_accuracy(1 - learned.EPS, n_classes))  # like the model's, a forecast never claims 100 %
    value, half = min(fc.predict(run.val_accuracy, short, full, share), top), fc.half_width(share)
    q = Quantity(value=round(value, 4), source="forecast", low=round(max(0.0, value - half), 4), high=round(min(1.0, value + half), 4),
                 detail=f"from {share:.1%} of the full run: the model's {full:.1%} at your budget moved by "
                        f"{fc.weight(share):.2f} × this run's {run.val_accuracy - short:+.1%} against the model at its own budget "
                        f"({short:.1%}); {forecast.COVERAGE:.0%} interval from leave-one-family-out errors on {fc.n_} pairs of cells")
    return run.model_copy(update={"share": float(f"{share:.4g}"), "forecast": q})


def _forecast_verdict(rec: Recommendation, runs: list[ProbeRun],
                      fc: forecast.Forecaster | None = None) -> tuple[list, bool | None, str]:
    """Ranking and verdict from the forecasts at the full budget (feature extraction: the recommendation's own
    figure, measured on all the data when it could be). The recommendation disagrees only when a forecast beats
    it by more than the two forecasts' combined uncertainty (σ from their 80 % intervals). Where ``fc`` gives
    every run less than :data:`MIN_WEIGHT` (runs too short a share of the full run), the forecasts are the model's
    own figures and the probe cannot check the ranking (``agrees`` None) — only that a strategy is not viable."""
    fe = rec.estimate("feature_extraction").accuracy
    value: dict[str, Quantity] = {r.strategy: r.forecast for r in runs if r.forecast is not None}
    if fe is not None and any(r.strategy == "feature_extraction" for r in runs):
        value["feature_extraction"] = fe
    unranked = [r.strategy for r in runs if r.strategy not in value]
    ranking = sorted(value, key=lambda s: value[s].value, reverse=True) + unranked
    dead = {r.strategy: r.note for r in runs if not r.viable}
    short = [r.strategy for r in runs if not r.judged]
    tail = (f" Not viable: {', '.join(dead)}." if dead else "") + (f" Too short to forecast: {', '.join(short)}." if short else "")
    chosen = rec.strategy
    if not value:
        return ranking, None, "The probe cannot forecast any strategy." + tail
    best = ranking[0]
    if chosen in dead:
        return ranking, False, f"The probe disagrees: the recommended {chosen} is {dead[chosen]}; {best} is forecast best ({value[best].value:.1%})." + tail
    if chosen not in value:
        return ranking, None, f"The probe cannot judge the recommended {chosen}: its run was too short. {best} is forecast best ({value[best].value:.1%})." + tail

    def sigma(q: Quantity) -> float:
        return 0.0 if q.low is None or q.high is None else (q.high - q.low) / 2 / Z80

    shares = [r.share for r in runs if r.forecast is not None and r.share is not None]
    moved = max((fc.weight(x) for x in shares), default=None) if fc is not None else None
    if moved is not None and moved < MIN_WEIGHT:  # the forecasts are the model's own figures
        need = fc.share_for(MIN_WEIGHT)
        span = f"{min(shares):.1%}" + (f"–{max(shares):.1%}" if max(shares) > min(shares) * 1.05 else "")
        longer = (f"; a weight of {MIN_WEIGHT:g} needs about {need:.1%} of the full run, about "
                  f"{math.ceil(need / min(shares))}× this probe's time" if math.isfinite(need) else "")
        ran = "" if dead else " Its runs do show that every strategy it ran trains (none diverged or stayed at chance)."
        figures = (f"{best} {value[best].value:.1%}, the recommended {chosen} {value[chosen].value:.1%}." if best != chosen
                   else f"{best} {value[best].value:.1%} (the recommendation).")
        return ranking, None, (f"The probe cannot check the ranking: its runs are {span} of the full run, too short for what "
                               f"they showed to move their forecasts (weight {moved:.2f}, fitted on the cells{longer}), so the "
                               f"forecasts are the model's own: {figures}{ran}{tail}")
    gap, spread = value[best].value - value[chosen].value, math.hypot(sigma(value[best]), sigma(value[chosen]))
    tied = [s for s in ranking if s != chosen and s in value and abs(value[s].value - value[chosen].value) < 5e-4]
    if gap < 5e-4:
        verdict = (f"The probe agrees: {chosen} is forecast to reach the most at your budget ({value[chosen].value:.1%}"
                   + (f", tied with {', '.join(tied)})." if tied else ")."))
    elif gap <= spread:
        verdict = (f"The probe agrees within its uncertainty: {best} is forecast {value[best].value:.1%}, the recommended {chosen} "
                   f"{value[chosen].value:.1%}; the gap ({gap:.1%}) is within the forecasts' uncertainty (σ {spread:.1%}).")
    else:
        verdict = (f"The probe disagrees: {best} is forecast {value[best].value:.1%} at your budget, the recommended {chosen} "
                   f"{value[chosen].value:.1%} (gap {gap:.1%}, beyond the forecasts' uncertainty σ {spread:.1%}).")
    return ranking, gap <= spread, verdict + tail


def probe(plan: Plan, options: ProbeOptions = ProbeOptions(), state: MachineState | None = None,
          log: planning.Log = planning.quiet) -> ProbeResult:
    """Decide on ``plan`` (a folder's, for this machine: :func:`advisor.advice.planning.plan_scanned`), then train each
    strategy briefly on a subset of its images and report whether the ranking agrees.

    The probe spends ``options.seconds`` in total, or ``options.fraction`` of the budget (see :func:`probe_seconds`):
    its runs' wall time, to within about a step. What is left is shared by the strategies still to run, so time feature
    extraction's one pass does not use goes to the others. With the plan's learned model, each trained run of at least
    :data:`MIN_STEPS` steps forecasts its strategy's accuracy at the full budget (:func:`_forecast`), the
    verdict compares the forecasts (:func:`_forecast_verdict`; runs too short a share of the full run to move them
    cannot check the ranking, and say so) and calibration learns from them; a diverged run,
    or one still at chance, shows its strategy is not viable. Without the model the runs' own accuracies are
    compared where long enough (:func:`_judge`). A run too short for either is reported as such and changes nothing.
    Runs at ``options.resolution`` (default: each strategy's planned resolution, at most 64 px on a CPU).
    ``options.steps`` instead trains each strategy exactly that many steps, whatever the machine's speed or load
    (repeatable; the time is then what it costs). The result and the model's errors are stored in ``state`` unless
    ``options.save`` is false. :func:`advisor.probe` is the keyword form that builds the plan.
    """
    if plan.scanned is None:
        raise AdvisorError("The probe trains on images: plan it from a data folder, not from numbers.")
    state = state or MachineState()
    rec = decide(plan)
    total = options.seconds if options.seconds is not None else probe_seconds(rec, options.fraction)
    hw = plan.hardware

    def res_of(name: str) -> int:  # each strategy at its own planned resolution (scratch: the images' own side)
        side = rec.estimate(name).settings.resolution
        return options.resolution or (side if hw.device == "cuda" else min(side, 64))

    train_items, val_items = _subset(plan.scanned, options)
    decoded: dict[int, tuple] = {}
    for side in sorted({res_of(name) for name in options.strategies} | {res_of("retrain")}):
        log(f"probe: decoding {len(train_items)} training and {len(val_items)} validation images at {side}px …")
        decoded[side] = images.load(train_items, side), images.load(val_items, side)
    res = res_of("retrain")  # the pretrained strategies' resolution, at which an epoch-equivalent is defined
    n_train, n_val = len(decoded[res][0][0]), len(decoded[res][1][0])
    runs, spent, load = _train_all(plan, rec, options, decoded, res_of, total)

    runs, ranking, agrees, verdict = _judge_all(plan, rec, runs, n_train, n_val, res)
    k_budget = plan.k.value if plan.k else None
    steps, budget = options.steps, plan.budget
    result = ProbeResult(recommendation=rec, runs=runs, ranking=ranking, agrees=agrees, verdict=verdict,
                         train_images=n_train, val_images=n_val, resolution=res,
                         seconds_per_strategy=round((total if steps is None else spent) / len(options.strategies), 1),
                         cost=Quantity(value=round(spent, 1), unit="s", source="measured",
                                       detail=f"{spent / budget.seconds:.1%} of the {budget.given_as} budget; asked for "
                                              + (f"{total:.0f} s" if steps is None else f"{steps} steps per strategy")))
    result = _calibrate(plan, result, n_train, k_budget, state, options.save)
    return _record(plan, result, load, state, options.save)


def _judge_all(plan: Plan, rec: Recommendation, runs: list[ProbeRun], n_train: int, n_val: int,
               res: int) -> tuple[list[ProbeRun], list, bool | None, str]:
    """The runs with how far each got (``reach``) and their forecasts or judgements; the ranking, whether it agrees
    with the recommendation, and the verdict."""
    # How far each trained strategy got, in epoch-equivalents of the probe's images: its training seconds ÷ one
    # all-layer epoch, timed by the probe's own retrain steps (measured here, now; else timed for it).
    batch = rec.estimate(rec.strategy).settings.batch_size
    retrain_ips = next((r.images_per_second for r in runs if r.strategy == "retrain"), None) or (
        n_train / engine.measure_epoch_seconds(n_train, res, batch, plan.hardware, plan.backbone))
    epoch_s = n_train / retrain_ips
    k_budget = plan.k.value if plan.k else None
    pred = plan.predictor  # the gains build on the measured FE before and after calibration
    runs = [r.model_copy(update={"reach": None if r.strategy == "feature_extraction" else round(r.seconds / epoch_s, 3)}) for r in runs]
    if pred is not None and pred.forecaster is not None and k_budget:
        full = pred.normalised(plan.facts, EpochEquivalents(k_budget), plan.speed_ratios)
        runs = [_forecast(pred, plan, r, n_train, n_val, k_budget, full) for r in runs]
        return runs, *_forecast_verdict(rec, runs, pred.forecaster)
    runs = [_judge(r, len(plan.scanned.classes), n_val, k_budget) for r in runs]  # no learned model: the runs' own accuracies
    return runs, *_verdict(rec, runs, n_val)


def _subset(scanned: ScannedData, options: ProbeOptions) -> tuple[list, list]:
    """The probe's class-stratified training and validation images: from the folder's val/ split when it has
    one, else 20 % of the training images held out."""
    train_items, n_classes = scanned.split("train"), len(scanned.classes)
    if scanned.layout == "split" and scanned.split("eval"):
        val_items = images.stratified(scanned.split("eval"), max(1, options.max_val // n_classes))
    else:
        train_items, val_items = images.split_stratified(train_items, 0.2)
        val_items = images.stratified(val_items, max(1, options.max_val // n_classes))
    if not val_items:
        raise AdvisorError("Too few images to hold any out for validation; add images or a val/ split.")
    return images.stratified(train_items, max(1, options.max_train // n_classes)), val_items


def _train_all(plan: Plan, rec: Recommendation, options: ProbeOptions, decoded: dict[int, tuple], res_of,
               total: float) -> tuple[list[ProbeRun], float, float | None]:
    """Each strategy's short run with its advised settings, in ``options.steps`` steps or its share of the
    ``total`` seconds (what is left, shared by the strategies still to run); also the seconds spent and the
    share of the CPUs other processes used meanwhile."""
    hw, strategies, n_classes = plan.hardware, options.strategies, len(plan.scanned.classes)
    batch = rec.estimate(rec.strategy).settings.batch_size
    augment = rec.estimate("retrain").settings  # the rules choose one augmentation for every trained strategy
    flip, pad = augment.hflip, augment.crop_padding or 1 / 8
    runs, started, clock = [], time.perf_counter(), timing.CpuClock()
    for i, name in enumerate(strategies):
        share = max(0.0, total - (time.perf_counter() - started)) / (len(strategies) - i)
        with tqdm(total=100, desc=f"probe {name}", unit="%", disable=not options.progress, leave=True,
                  bar_format="{desc:<26}{bar}| {n:.0f}% [{elapsed}]") as bar:
            def tick(done: float, bar=bar) -> None:
                bar.update(round(100 * done) - bar.n)
            depth = rec.estimate(name).settings.fine_tune_depth  # the advised configuration, not the registry's default
            side = res_of(name)
            x_train, x_val = decoded[side]
            n = len(x_train[0])
            budget_of_run = ({"seconds": max(share, 1e-3), "wall_seconds": max(share, 1e-3)} if options.steps is None
                             else {"epochs": options.steps * min(batch, n) / n})
            r = engine.run(registry.resolve(name, side, n, depth=depth), x_train, x_val, n_classes, hw,
                           batch_size=batch, flip=flip, pad_fraction=pad, backbone=plan.backbone, weights=plan.weights,
                           progress=tick, **budget_of_run)
        runs.append(ProbeRun(strategy=name, val_accuracy=round(r.val_accuracy, 4), steps=r.steps, epochs=round(r.epochs, 2),
                             seconds=round(r.seconds, 2), images_per_second=round(r.images_per_second, 1), curve=r.curve,
                             resolution=side, variant=r.variant, batch_size=r.batch_size,
                             step_images_per_second=r.step_images_per_second and round(r.step_images_per_second, 1),
                             diverged=r.diverged, viable=not r.diverged))
    return runs, time.perf_counter() - started, clock.other_load()


def _calibrate(plan: Plan, result: ProbeResult, n_train: int, k_budget: float | None, state: MachineState,
               save: bool) -> ProbeResult:
    """The model's errors the probe's judged runs show, the advice after they correct the plan's predictor, and
    (with ``save``) the probe record that corrects later advice."""
    rec, pred, n_val = result.recommendation, plan.predictor, result.val_images
    judged = [r for r in result.runs if r.judged and r.viable]
    if pred is None or not judged:
        return result
    errors = _model_errors(pred, plan, judged, n_train, k_budget)  # only what the probe can judge calibrates
    reach = {r.strategy: k_budget if r.forecast is not None else r.reach for r in judged}
    observed = calibration.probe_record(errors, reach, n_val, str(plan.scanned.root), rec.facts)
    after = decide(plan.with_predictor(pred.with_probes([observed])))
    weights = {s: round(calibration.probe_weight(None if reach[s] is None else EpochEquivalents(reach[s]), n_val,
                                                 EpochEquivalents(k_budget)), 3)
               for s in reach} if k_budget else None
    if save:
        calibration.record_probe(state, {**observed, "advice": {"before": rec.strategy, "after": after.strategy}}, plan.hardware)
    return result.model_copy(update={"model_errors": errors, "calibration_weights": weights, "calibrated": after})


def _record(plan: Plan, result: ProbeResult, load: float | None, state: MachineState, save: bool) -> ProbeResult:
    """What the probe's step times do to this machine's throughput record, and (with ``save``) the result stored."""
    hw, book, rec = plan.hardware, plan.rules, result.recommendation
    new_tp, changes, what = throughput_mod.from_probe(rec, result.runs, hw, book, load, plan.backbone)
    if new_tp is not None and save:
        calibration.record_throughput(state, new_tp.at_batch(standard_batch_size(hw, book)), hw, plan.backbone,
                                      throughput_mod.scratch_key(rec.facts, book), changes)  # records are kept at the standard batch
    result = result.model_copy(update={"throughput_record": what if save or new_tp is None else what + " (not saved)"})
    if save:
        record = {"time": datetime.now(timezone.utc).isoformat(), "machine": state.machine, **result.model_dump(mode="json")}
        with state.database() as db:
            stored = db.add("probe_result", record)
        if stored:
            result = result.model_copy(update={"stored_at": f"{state.db_path} (table probe_result)"})
    return result
