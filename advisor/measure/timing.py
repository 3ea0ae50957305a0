"""Timing that survives a busy machine.

Each configuration's step is timed in several interleaved rounds (so a burst of other work slows every
configuration alike, and the least disturbed round is kept), the CPU time other processes used meanwhile is
read from ``/proc/stat``, and every figure is checked for plausibility against the others and against the
device's arithmetic speed (a matrix product timed alongside). The result says whether the machine was quiet
and the figures plausible; only such timings are stored for reuse (:mod:`advisor.measure.calibration`).
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from dataclasses import dataclass, field, replace

import torch

from ..nets import backbone as bb
from ..nets import engine
from .. import registry
from ..nets import strategies as st
from ..registry import Strategy
from ..schemas import Hardware, TimingConditions

BUSY_LOAD = 0.25  # other processes using more than this share of all CPUs: the machine is busy
WIDE_SPREAD = 0.35  # a configuration's median round slower than its best by more than this share: unstable
MIN_STEPS, MIN_SECONDS, ROUNDS, MAX_ROUNDS = 3, 0.4, 3, 6
# Plausibility, each bound with its reason:
FORWARD_EDGE = 1.2  # feature extraction (a forward pass) must beat all-layer training (forward + backward ≈ 3×) by this
FEWER_GRADIENTS = 0.75  # fine-tune (gradients of fewer layers) may not be slower than this share of all-layer training
CPU_FLOOR = 0.002  # on a CPU, training below 0.2 % of its own matrix-product speed means something else held it up
CEILING = 1.5  # no step runs faster than the device's dense matrix product (with this margin for the measurement)


class CpuClock:
    """CPU seconds used by every process (``/proc/stat``) and by this one, to measure the others' load."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None  # not Linux: load unknown
        busy = (sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)) / os.sysconf("SC_CLK_TCK")
        return busy, time.process_time(), time.perf_counter()

    def other_load(self) -> float | None:
        """Share of all CPUs that other processes used since this clock started (0–1); None where unknown."""
        end = self._read()
        if self.start is None or end is None or end[2] - self.start[2] < 0.05:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        return max(0.0, min(1.0, (busy - own) / (wall * (os.cpu_count() or 1))))


def current_load(seconds: float = 0.5) -> float | None:
    """Share of all CPUs other processes use now, sampled over ``seconds`` while this one waits."""
    clock = CpuClock()
    time.sleep(seconds)
    return clock.other_load()


def matmul_flops(hw: Hardware, n: int | None = None, repeats: int = 20) -> float:
    """The device's dense matrix-product speed in FLOP/s (best of ``repeats``; bf16 on a bf16 GPU). The product
    is large enough to keep the device busy: 4096² on a GPU (a 512² one measured an H100 at 1 % of its peak)."""
    n = n or (4096 if hw.device == "cuda" else 512)
    dtype = torch.bfloat16 if hw.device == "cuda" and hw.precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=hw.device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        if hw.device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


@functools.cache
def step_flops(strat: Strategy, resolution: int, backbone: str = registry.DEFAULT_BACKBONE) -> float:
    """FLOPs of one image's step, counted by torch's FLOP counter on the real network's forward pass: that
    alone for feature extraction; for training, plus a backward pass costing about two forward passes over the
    trained share of the network (all of it for retrain and scratch, the trained stages' share of the weights
    for fine-tune: a rough proxy, stated)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = (bb.create(backbone, pretrained=False) if not strat.trains_backbone
             else st.build(replace(strat, pretrained=False), 10, backbone)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, resolution, resolution))
    share = registry.trainable_fraction(strat, backbone) if strat.trains_backbone else 0.0
    return counter.get_total_flops() * (1 + 2 * share)


@dataclass
class Timing:
    """Images/s of each configuration and the conditions they were timed under."""

    images_per_second: dict[str, float]
    conditions: TimingConditions
    problems: list[str] = field(default_factory=list)


def time_configurations(configs: dict[str, tuple[Strategy, int]], batch_size: int, hw: Hardware,
                        backbone: str = registry.DEFAULT_BACKBONE, rounds: int = ROUNDS, max_rounds: int = MAX_ROUNDS,
                        min_steps: int = MIN_STEPS, min_seconds: float = MIN_SECONDS,
                        budget_seconds: float | None = None) -> Timing:
    """Time each named (configuration, resolution) in interleaved rounds; keep each one's best round (median
    step of the round). Rounds are added, up to ``max_rounds``, while the spread is wide or the machine busy.

    ``budget_seconds`` bounds the whole timing: after one warm-up step each (which shows what a step costs),
    the steps per round and the rounds shrink to fit, down to one round of one step (its spread then unknown,
    so the timing is not called stable; a round of fewer than :data:`MIN_STEPS` steps keeps its fastest)."""
    t0 = time.perf_counter()
    clock = CpuClock()
    flops = matmul_flops(hw)
    steps = {name: engine.step_fn(strat, res, batch_size, hw, backbone) for name, (strat, res) in configs.items()}
    warm = {name: sum(engine.time_steps(step, 1 if budget_seconds else 2)) for name, step in steps.items()}  # allocate, pick kernels
    if budget_seconds is not None:  # what fits: a warm-up step costs at least what a timed one does
        left = budget_seconds - (time.perf_counter() - t0)
        per_step = sum(warm.values())
        min_steps = max(1, min(min_steps, int(left / max(per_step * rounds, 1e-9))))
        min_seconds = min(min_seconds, max(0.0, left / rounds))
    medians: dict[str, list[float]] = {name: [] for name in steps}
    done = 0
    while True:
        round_t = time.perf_counter()
        for name, step in steps.items():
            times = engine.time_steps(step, min_steps, min_seconds / len(steps))
            # a round of one or two steps (a tight budget): its fastest step, as quick checks take
            medians[name].append(statistics.median(times) if len(times) >= MIN_STEPS else min(times))
        done += 1
        spread = max((statistics.median(m) - min(m)) / min(m) for m in medians.values())
        load = clock.other_load()
        busy = load is not None and load > BUSY_LOAD
        out_of_time = budget_seconds is not None and (
            time.perf_counter() - t0 + (time.perf_counter() - round_t) > budget_seconds)
        # more rounds help against bursts on a quiet machine; under steady load they only cost time
        if out_of_time or done >= max_rounds or (done >= rounds and (busy or spread <= WIDE_SPREAD)):
            break
    ips = {name: batch_size / min(m) for name, m in medians.items()}
    problems = plausibility(ips, configs, hw, flops, backbone)
    conditions = TimingConditions(
        other_load=None if load is None else round(load, 3), spread=round(spread, 3), rounds=done,
        steps_per_round=min_steps, matmul_gflops=round(flops / 1e9, 1), seconds=round(time.perf_counter() - t0, 2),
        quiet=load is None or load <= BUSY_LOAD, stable=done >= 2 and spread <= WIDE_SPREAD, plausible=not problems,
    )
    return Timing({n: round(v, 2) for n, v in ips.items()}, conditions, problems)


def plausibility(ips: dict[str, float], configs: dict[str, tuple[Strategy, int]], hw: Hardware, flops: float,
                 backbone: str = registry.DEFAULT_BACKBONE) -> list[str]:
    """What is implausible about these figures (empty when nothing): the order the strategies' costs impose,
    and the device's arithmetic speed as a ceiling (and, on a CPU, a floor)."""
    problems = []
    if {"feature_extraction", "retrain"} <= ips.keys() and ips["feature_extraction"] < FORWARD_EDGE * ips["retrain"]:
        problems.append(f"feature extraction ({ips['feature_extraction']:.0f} img/s) should be at least {FORWARD_EDGE:g}× "
                        f"all-layer training ({ips['retrain']:.0f} img/s): it runs the forward pass only")
    if {"fine_tune", "retrain"} <= ips.keys() and ips["fine_tune"] < FEWER_GRADIENTS * ips["retrain"]:
        problems.append(f"fine-tune ({ips['fine_tune']:.0f} img/s) should not be slower than all-layer training "
                        f"({ips['retrain']:.0f} img/s): it computes fewer gradients")
    for name, (strat, res) in configs.items():
        achieved = ips[name] * step_flops(strat, res, backbone)
        if achieved > CEILING * flops:
            problems.append(f"{name} at {ips[name]:.0f} img/s would compute {achieved / 1e9:.0f} GFLOP/s, faster than "
                            f"this device's matrix product ({flops / 1e9:.0f} GFLOP/s)")
        elif hw.device == "cpu" and achieved < CPU_FLOOR * flops:
            problems.append(f"{name} at {ips[name]:.1f} img/s uses {achieved / flops:.2%} of this CPU's arithmetic speed: "
                            "something else held it up")
    return problems


def describe(conditions: TimingConditions) -> str:
    """One line on how a timing was taken."""
    load = "load unknown" if conditions.other_load is None else f"other processes used {conditions.other_load:.0%} of the CPUs"
    return (f"best of {conditions.rounds} interleaved rounds of ≥ {conditions.steps_per_round} steps; median round "
            f"{conditions.spread:.0%} slower than the best; {load}")


def problems_of(conditions: TimingConditions) -> list[str]:
    out = []
    if not conditions.quiet:
        out.append(f"the machine was busy while timing (other processes used {conditions.other_load:.0%} of the CPUs): "
                   "the times are those of a machine this busy, often 2–3× slower than a quiet one")
    if conditions.rounds < 2:
        out.append("one round only (the timing kept to its time limit): its spread is unknown, "
                   "so a later quick check or a probe's steps confirm it")
    elif not conditions.stable:
        out.append(f"the timed rounds were uneven (the median round {conditions.spread:.0%} slower than the best)")
    return out


def quick_check(strat: Strategy, resolution: int, batch_size: int, hw: Hardware, backbone: str = registry.DEFAULT_BACKBONE,
                warmup: int = 2, steps: int = MIN_STEPS) -> tuple[float, float | None]:
    """A short timing of one configuration (a few steps) to test a stored record: (images/s, others' load)."""
    clock = CpuClock()
    step = engine.step_fn(strat, resolution, batch_size, hw, backbone)
    engine.time_steps(step, warmup)
    times = engine.time_steps(step, steps, 0.3)
    return batch_size / min(times), clock.other_load()


SMALL_BATCH = 8  # the second batch size all-layer training is timed at, to derive the others


def batch_exponent(strat: Strategy, resolution: int, batch_size: int, images_per_second: float, hw: Hardware,
                   backbone: str = registry.DEFAULT_BACKBONE) -> float | None:
    """``α`` in ``images/s ∝ batch^α``, from ``images_per_second`` at ``batch_size`` and a quick timing at
    :data:`SMALL_BATCH` (kept within ±1); None when the batch is already that small. On a 2-core CPU α was
    about +0.5 at 64 px (fixed costs per step) and below 0 at 224 px (a large batch outgrows the caches)."""
    if batch_size <= SMALL_BATCH:
        return None
    small, _ = quick_check(strat, resolution, SMALL_BATCH, hw, backbone, warmup=1, steps=2)
    alpha = math.log(images_per_second / small) / math.log(batch_size / SMALL_BATCH)
    return round(min(1.0, max(-1.0, alpha)), 3)


def strategy_configs(resolution: int, n_images: int, scratch_resolution: int | None = None,
                     ) -> dict[str, tuple[Strategy, int]]:
    """The configurations advisor plans for data of ``n_images``: each strategy at ``resolution``, scratch's
    right-sized network at ``scratch_resolution`` (its images' own side)."""
    out = {s: (registry.resolve(s, resolution, n_images), resolution) for s in registry.STRATEGY_NAMES if s != "scratch"}
    scratch_res = scratch_resolution or resolution
    out["scratch"] = (registry.resolve("scratch", scratch_res, n_images), scratch_res)
    return out
