"""Timing that survives a busy machine.

Each configuration's step is timed in several interleaved rounds (so a burst of other work slows every
configuration alike, and the least disturbed round is kept), the CPU time other processes used meanwhile is
read from ``/proc/stat``, and every figure is checked for plausibility against the others and against the
device's arithmetic speed (a matrix product timed alongside). The result says whether the machine was quiet
and the figures plausible; only such timings are stored for reuse (:mod:`advisor.calibration`).
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from dataclasses import dataclass, field, replace

import torch

from . import backbone as bb
from . import engine, registry
from . import strategies as st
from .registry import Strategy
from .schemas import Hardware, TimingConditions

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
def step_flops(strat: Strategy, resolution: int, backbone: str = bb.DEFAULT_BACKBONE) -> float:
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
                        backbone: str = bb.DEFAULT_BACKBONE, rounds: int = ROUNDS, max_rounds: int = MAX_ROUNDS,
                        min_steps: int = MIN_STEPS, min_seconds: float = MIN_SECONDS) -> Timing:
    """Time each named (configuration, resolution) in interleaved rounds; keep each one's best round (median
    step of the round). Rounds are added, up to ``max_rounds``, while the spread is wide or the machine busy."""
    t0 = time.perf_counter()
    clock = CpuClock()
    steps = {name: engine.step_fn(strat, res, batch_size, hw, backbone) for name, (strat, res) in configs.items()}
    for step in steps.values():  # warm-up: first calls allocate, pick kernels and fill caches
        engine.time_steps(step, 2)
    medians: dict[str, list[float]] = {name: [] for name in steps}
    done = 0
    while True:
        for name, step in steps.items():
            medians[name].append(statistics.median(engine.time_steps(step, min_steps, min_seconds / len(steps))))
        done += 1
        spread = max((statistics.median(m) - min(m)) / min(m) for m in medians.values())
        load = clock.other_load()
        busy = load is not None and load > BUSY_LOAD
        # more rounds help against bursts on a quiet machine; under steady load they only cost time
        if done >= max_rounds or (done >= rounds and (busy or spread <= WIDE_SPREAD)):
            break
    ips = {name: batch_size / min(m) for name, m in medians.items()}
    flops = matmul_flops(hw)
    problems = plausibility(ips, configs, hw, flops, backbone)
    conditions = TimingConditions(
        other_load=None if load is None else round(load, 3), spread=round(spread, 3), rounds=done,
        steps_per_round=min_steps, matmul_gflops=round(flops / 1e9, 1), seconds=round(time.perf_counter() - t0, 2),
        quiet=load is None or load <= BUSY_LOAD, stable=spread <= WIDE_SPREAD, plausible=not problems,
    )
    return Timing({n: round(v, 2) for n, v in ips.items()}, conditions, problems)


def plausibility(ips: dict[str, float], configs: dict[str, tuple[Strategy, int]], hw: Hardware, flops: float,
                 backbone: str = bb.DEFAULT_BACKBONE) -> list[str]:
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
    if not conditions.stable:
        out.append(f"the timed rounds were uneven (the median round {conditions.spread:.0%} slower than the best)")
    return out


def quick_check(strat: Strategy, resolution: int, batch_size: int, hw: Hardware, backbone: str = bb.DEFAULT_BACKBONE,
                ) -> tuple[float, float | None]:
    """A short timing of one configuration (a few steps) to test a stored record: (images/s, others' load)."""
    clock = CpuClock()
    step = engine.step_fn(strat, resolution, batch_size, hw, backbone)
    engine.time_steps(step, 2)
    times = engine.time_steps(step, MIN_STEPS, 0.3)
    return batch_size / min(times), clock.other_load()


SMALL_BATCH = 8  # the second batch size all-layer training is timed at, to derive the others


def step_overhead(strat: Strategy, resolution: int, batch_size: int, images_per_second: float, hw: Hardware,
                  backbone: str = bb.DEFAULT_BACKBONE) -> float | None:
    """A training step's fixed cost in images' worth of work, ``c`` in ``step time ∝ c + batch``: from
    ``images_per_second`` at ``batch_size`` and a quick timing at :data:`SMALL_BATCH`. None when the batch is
    already that small or the two timings contradict the model (a smaller batch faster per image)."""
    if batch_size <= SMALL_BATCH:
        return None
    small, _ = quick_check(strat, resolution, SMALL_BATCH, hw, backbone)
    t_big, t_small = batch_size / images_per_second, SMALL_BATCH / small
    per_image = (t_big - t_small) / (batch_size - SMALL_BATCH)
    if per_image <= 0:
        return None
    return round(min(max(0.0, t_small / per_image - SMALL_BATCH), 4.0 * batch_size), 1)


def strategy_configs(resolution: int, n_images: int, scratch_resolution: int | None = None,
                     ) -> dict[str, tuple[Strategy, int]]:
    """The configurations advisor plans for data of ``n_images``: each strategy at ``resolution``, scratch's
    right-sized network at ``scratch_resolution`` (its images' own side)."""
    out = {s: (registry.resolve(s, resolution, n_images), resolution) for s in registry.STRATEGY_NAMES if s != "scratch"}
    scratch_res = scratch_resolution or resolution
    out["scratch"] = (registry.resolve("scratch", scratch_res, n_images), scratch_res)
    return out
