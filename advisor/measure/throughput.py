"""Training throughput (images/s of each strategy's step) and where it comes from: a hardware profile of the
target device, this machine's stored record (checked now), a timing now, or a probe's own training steps.

One policy for all of them: records are kept per device, backbone, resolution and scratch network at the
device's standard batch, other batches derived (:meth:`Throughput.at_batch`); a record timed on a busy machine
is provisional; a busy machine never costs more than one timing."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from . import calibration, profiles, timing

from .. import registry
from .. import rules as rules_mod
from ..rules import plan_batch_size, plan_resolution, standard_batch_size
from ..errors import AdvisorError
from ..schemas import DataFacts, Hardware, ProbeRun, Recommendation, StrategyName, Throughput
from ..state import MachineState

Log = Callable[[str], None]  # where progress lines go (planning.quiet, planning.stderr_log)


FIRST_TIMING_SECONDS: float | None = 20.0  # what timing this machine may cost a recommendation (None: unbounded)


def measure_throughput(hw: Hardware, resolution: int, batch_size: int, backbone: str = registry.DEFAULT_BACKBONE,
                       scratch_resolution: int | None = None, n_images: int = 0, retries: int = 1,
                       budget_seconds: float | None = None) -> Throughput:
    """Images/s of each strategy's training step on this device, timed now (:mod:`advisor.measure.timing`): interleaved
    rounds, the others' load measured alongside, figures checked for plausibility and re-timed ``retries``
    times when implausible.

    Scratch is timed on the network the registry sizes to ``n_images`` at ``scratch_resolution`` (the images'
    own side; default ``resolution``), the others at ``resolution``. Steps are timed at ``batch_size``
    (a recommendation passes the device's standard batch): a smaller batch is quicker to time but slower per image (on a quiet 2-core CPU, batch 8
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


def scratch_key(facts: DataFacts, book: rules_mod.RuleBook) -> str:
    """The scratch network planned for ``facts`` and its side, e.g. ``cnn_s@28px``: part of a throughput record's key."""
    side = plan_resolution(facts.resolution, book, native=True)
    return f"{registry.resolve('scratch', side, facts.n_images).arch}@{side}px"


RECHECK_SECONDS = 300.0  # a record quick-checked this recently in this process is used without another check
_checked: dict[tuple, tuple[float, Throughput]] = {}  # (home, device, backbone, resolution, batch, scratch) → (when, result)


def acquire(state: MachineState, facts: DataFacts, hw: Hardware, book: rules_mod.RuleBook, backbone: str, log: Log,
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
    throughput = _recorded_or_timed(state, facts, hw, backbone, log, target, res, batch, scratch_res,
                                    scratch_key(facts, book))
    return throughput.at_batch(planned)


def _recorded_or_timed(state: MachineState, facts: DataFacts, hw: Hardware, backbone: str, log: Log, target: Target,
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


def from_probe(rec: Recommendation, runs: list[ProbeRun], hw: Hardware, book: rules_mod.RuleBook,
               load: float | None, backbone: str = registry.DEFAULT_BACKBONE,
               ) -> tuple[Throughput | None, dict[StrategyName, tuple[float, float]], str]:
    """The recommendation's throughput with the probe's own step times in place of the timed figures, for each
    trained strategy the probe ran in the timed configuration (network, resolution, batch) for three steps or
    more: (the new throughput, or None when nothing may be replaced; each replaced strategy's (timed, probed)
    images/s; a line saying what happened). Only a throughput timed on this device, probed on a quiet machine,
    with plausible figures after the replacement, is replaced. Feature extraction keeps its timed figure: its
    probe is one pass that includes loading the network."""
    tp = rec.throughput
    if tp is None or tp.conditions is None or rec.hardware.name != hw.name:
        return None, {}, "the plan's throughput was not timed on this device, so the probe changed no record"
    if not (tp.conditions.quiet and tp.conditions.plausible):  # the figures it keeps would pass as quiet ones
        return None, {}, "the plan's throughput was timed on a busy machine or is implausible, so the probe completes no record"
    if load is not None and load > timing.BUSY_LOAD:
        return None, {}, (f"the machine was busy during the probe (other processes used {load:.0%} of the CPUs): "
                          "its step times did not replace the throughput record")
    configs = timing.strategy_configs(tp.resolution, rec.facts.n_images,
                                      plan_resolution(rec.facts.resolution, book, native=True))
    ips, changes = dict(tp.images_per_second), {}
    for r in runs:
        strat, side = configs[r.strategy]
        if strat.trains_backbone and r.step_images_per_second and (r.variant, r.resolution, r.batch_size) == (
                strat.variant, side, tp.batch_size):
            changes[r.strategy] = (ips[r.strategy], r.step_images_per_second)
            ips[r.strategy] = r.step_images_per_second
    if not changes:
        return None, {}, (f"no probe run trained a timed configuration ({tp.resolution}px, batch {tp.batch_size}) long "
                          "enough: the throughput record stands")
    problems = timing.plausibility(ips, configs, hw, tp.conditions.matmul_gflops * 1e9, backbone)
    changed = ", ".join(f"{s} {a:.0f} → {b:.0f}" for s, (a, b) in changes.items())
    if problems:
        return None, changes, f"the probe's step times ({changed} img/s) are implausible, so they replaced nothing: " + "; ".join(problems)
    new = tp.model_copy(update={
        "images_per_second": ips, "seconds": 0.0, "origin": "measured by a probe's training steps",
        "detail": tp.detail + f"; {', '.join(changes)} replaced by a probe's step times at batch {tp.batch_size}",
        "conditions": tp.conditions.model_copy(update={"other_load": load, "quiet": True, "plausible": True}),
        "problems": []})
    return new, changes, f"the probe's step times replace the timed throughput ({changed} img/s)"
