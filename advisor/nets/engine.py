"""The benchmark engine: really train one strategy on (train, val) uint8 tensors under a time or epoch budget.

Images arrive decoded once (uint8, N×3×R×R); batches are cut, augmented (random crop with padding,
optional horizontal flip) and normalised on the device, so no per-sample Python runs in the hot loop.
Feature extraction embeds once without gradients and fits a multinomial logistic regression.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from . import backbone as bb
from .. import hardware, registry
from . import strategies as st
from ..schemas import Hardware, RunResult
from ..units import EpochEquivalents


CURVE_IMAGES = 256  # validation images a dense curve's intermediate points are measured on (the final one: all)


def curve_steps(total_steps: int, points: int) -> set[int]:
    """About ``points`` steps, log-spaced from the first to ``total_steps`` (each step at most once)."""
    if points <= 0 or total_steps <= 0:
        return set()
    return {int(round(v)) for v in np.geomspace(1, total_steps, points)} | {total_steps}


def augment(x: torch.Tensor, flip: bool, pad_fraction: float = 1 / 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with reflect padding (``pad_fraction`` of the side) and optional horizontal flip, per sample."""
    n, _, h, w = x.shape
    pad = max(1, int(h * pad_fraction))
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, device=x.device, generator=generator) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


def lr_factor(progress: float, warmup: float = 0.05) -> float:
    """Linear warm-up then cosine decay to zero, as a function of the budget used (0–1)."""
    if progress < warmup:
        return max(progress / warmup, 0.02)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, hw: Hardware, backbone: str, batch_size: int = 128, features: bool = False) -> torch.Tensor:
    """Logits (or pooled features) of uint8 images, batched, in eval mode."""
    model.eval()
    device = torch.device(hw.device)
    outs = []
    for i in range(0, len(x), batch_size):
        xb = bb.normalise(x[i : i + batch_size].to(device, non_blocking=True), backbone)
        xb = xb.contiguous(memory_format=hardware.memory_format(hw))
        with hardware.autocast(hw):
            out = model.forward_head(model.forward_features(xb), pre_logits=True) if features else model(xb)
        outs.append(out.float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hw: Hardware, backbone: str) -> float:
    if len(x) == 0:
        return float("nan")
    return float((predict(model, x, hw, backbone).argmax(1) == y).float().mean())


def fit_linear(train_f: np.ndarray, train_y: np.ndarray, seed: int = 0):
    """Standardise + multinomial logistic regression; L2 strength picked on a held-out quarter of train, then refit."""
    cs = (0.01, 0.1, 1.0)
    classes, counts = np.unique(train_y, return_counts=True)
    best_c = 0.1
    if counts.min() >= 4 and len(classes) >= 2:
        rng = np.random.default_rng(seed)
        hold = np.zeros(len(train_y), bool)
        for c in classes:
            idx = rng.permutation(np.flatnonzero(train_y == c))
            hold[idx[: max(1, len(idx) // 4)]] = True
        scores = []
        for c in cs:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))
            clf.fit(train_f[~hold], train_y[~hold])
            scores.append(clf.score(train_f[hold], train_y[hold]))
        best_c = cs[int(np.argmax(scores))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=best_c, max_iter=500))
    return clf.fit(train_f, train_y)


def run_feature_extraction(
    train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], hw: Hardware,
    backbone: str = registry.DEFAULT_BACKBONE, weights: str | None = None, model: nn.Module | None = None,
) -> RunResult:
    t0 = time.perf_counter()
    model = model or bb.create(backbone, weights=weights).to(hw.device)
    train_f = predict(model, train[0], hw, backbone, features=True).numpy()
    val_f = predict(model, val[0], hw, backbone, features=True).numpy()
    embed_s = time.perf_counter() - t0
    clf = fit_linear(train_f, train[1].numpy())
    acc = float(clf.score(val_f, val[1].numpy())) if len(val_f) else float("nan")
    seconds = time.perf_counter() - t0
    return RunResult(strategy="feature_extraction", val_accuracy=acc, steps=1, epochs=1.0, seconds=seconds,
                     images_per_second=len(train[0]) / max(embed_s, 1e-9), curve=[(round(seconds, 3), acc)],
                     peak_memory_mb=hardware.peak_memory_mb(hw), variant="feature_extraction")


def train_step(
    model, optimizer, xb, yb, strategy: registry.Strategy, hw: Hardware, backbone: str, flip: bool, pad_fraction: float = 1 / 8,
) -> float:
    """One optimisation step on a uint8 batch already on the device, augmented there; returns the loss."""
    x = augment(xb, flip, pad_fraction)
    x = bb.normalise(x, backbone).contiguous(memory_format=hardware.memory_format(hw))
    with hardware.autocast(hw):
        loss = F.cross_entropy(model(x), yb, label_smoothing=strategy.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def to_device(train: tuple[torch.Tensor, torch.Tensor], hw: Hardware) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images on the device when they fit there (else pinned host memory, copied a batch at a time), labels on it."""
    x = train[0].to(hw.device) if hardware.fits_on_device(hw, train[0].numel()) else train[0].pin_memory()
    return x, train[1].to(hw.device)


def guarded_step(model, optimizer, x_train: torch.Tensor, y_train: torch.Tensor, idx: torch.Tensor, strategy: registry.Strategy,
                 hw: Hardware, backbone: str, flip: bool, pad_fraction: float) -> float | None:
    """:func:`train_step` on the batch ``idx`` (synchronised on CUDA, so its time is real); None when it ran out of
    memory — the caller halves its batch — unless the batch is a single image (then it raises)."""
    try:
        loss = train_step(model, optimizer, x_train[idx].to(hw.device, non_blocking=True), y_train[idx.to(hw.device)],
                          strategy, hw, backbone, flip, pad_fraction)
    except torch.OutOfMemoryError:
        if len(idx) == 1:
            raise
        torch.cuda.empty_cache()
        return None
    if hw.device == "cuda":
        torch.cuda.synchronize()
    return loss


def run(
    strategy: str | registry.Strategy,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    n_classes: int,
    hw: Hardware,
    *,
    seconds: float | None = None, epochs: float | None = None, equivalents: EpochEquivalents | None = None,  # one budget
    speed_ratio: float | None = None,
    batch_size: int = 32,
    flip: bool = True, pad_fraction: float = 1 / 8,  # augmentation
    backbone: str = registry.DEFAULT_BACKBONE, weights: str | None = None,
    eval_points: int = 4, curve_points: int = 0,
    seed: int = 0,
    progress=None,
    wall_seconds: float | None = None,
) -> RunResult:
    """Train ``strategy`` on uint8 ``train`` images and report accuracy on ``val``, under one budget:

    * ``seconds`` of training time (evaluation excluded),
    * ``epochs`` passes over ``train``, or
    * ``equivalents``: a budget in :class:`EpochEquivalents`, comparable across hardware, spent as the images
      that time buys at the strategy's speed: k × ``speed_ratio`` epochs (the strategy's images/s ÷ all-layer
      training's; measured with :func:`measure_speed_ratio` when not given), so other load cannot shift budgets.

    ``wall_seconds`` also bounds the whole run's wall time — building, evaluations, the final one included
    (estimated by the last) — to within about one step. Feature extraction ignores the budget: it embeds once
    and fits a classifier. ``progress``, if given, is called with the fraction of the budget used (0–1). On CUDA
    out-of-memory the batch size is halved; a loss that becomes NaN or infinite stops the run (:attr:`RunResult.diverged`).
    ``curve_points`` > 0 also records a dense curve (:attr:`RunResult.dense`) at log-spaced steps of an
    ``epochs`` or ``equivalents`` budget, for learning-curve forecasts.
    ``strategy`` is a name (scratch gets the network sized to ``train``) or a concrete :class:`Strategy`.
    """
    if sum(b is not None for b in (seconds, epochs, equivalents)) != 1:
        raise ValueError("give exactly one of seconds, epochs or equivalents")
    started = time.perf_counter()
    strat = registry.resolve(strategy, train[0].shape[-1], len(train[0]))
    torch.manual_seed(seed)
    hardware.reset_peak_memory(hw)
    if not strat.trains_backbone:
        result = run_feature_extraction(train, val, hw, backbone, weights)
        if progress:
            progress(1.0)
        return result
    n, batch_size = len(train[0]), min(batch_size, len(train[0]))
    if equivalents is not None:
        epochs = equivalents.epochs(speed_ratio or measure_speed_ratio(strat, train[0].shape[-1], batch_size, hw, backbone))
    model = st.build(strat, n_classes, backbone, weights).to(hw.device).to(memory_format=hardware.memory_format(hw))
    spent = _Spent(started, seconds, None if epochs is None else max(batch_size, round(epochs * n)), wall_seconds)
    curves = _Curves(val, hw, backbone, eval_points,
                     curve_steps(math.ceil(spent.total_images / batch_size), curve_points) if spent.total_images else set())
    done = _train(model, strat, to_device(train, hw), hw, backbone, spent, curves, _Batches(n, seed), batch_size, flip,
                  pad_fraction, progress)
    if done.diverged:
        if progress:
            progress(1.0)
        curves.evaluate(model, done.trained_s)
    if curve_points > 0:
        curves.dense.append((done.step, done.seen, round(done.lr, 4), round(done.trained_s, 3), curves.curve[-1][1]))
    return _result(strat, curves, done, n, hw)


def _result(strat: registry.Strategy, curves: "_Curves", done: "_Done", n: int, hw: Hardware) -> RunResult:
    """The :class:`RunResult` of a trained run that stopped at ``done``, on ``n`` training images."""
    steady = done.batch_size / statistics.median(done.step_s[1:]) if len(done.step_s) >= 3 else None
    return RunResult(strategy=strat.name, val_accuracy=curves.curve[-1][1], steps=done.step, epochs=done.seen / n,
                     seconds=done.trained_s, images_per_second=done.seen / max(done.trained_s, 1e-9), curve=curves.curve,
                     batch_size=done.batch_size, peak_memory_mb=hardware.peak_memory_mb(hw), variant=strat.variant,
                     step_images_per_second=steady, dense=curves.dense, diverged=done.diverged)


@dataclass
class _Done:
    """Where a training loop stopped: steps, images seen, training seconds, the last LR factor, the batch size
    (halved on out-of-memory), each step's seconds, and whether the loss diverged."""

    batch_size: int
    step: int = 0
    seen: int = 0
    trained_s: float = 0.0
    lr: float = 1.0
    diverged: bool = False
    step_s: list[float] = field(default_factory=list)


def _train(model: nn.Module, strat: registry.Strategy, train: tuple[torch.Tensor, torch.Tensor], hw: Hardware, backbone: str,
           spent: "_Spent", curves: "_Curves", batches: "_Batches", batch_size: int, flip: bool, pad_fraction: float,
           progress=None) -> _Done:
    """The loop of :func:`run`: AdamW with warm-up and cosine decay until ``spent`` says the budget is used,
    evaluating as ``curves`` asks; stops early on a loss that is no longer finite."""
    optimizer = torch.optim.AdamW(st.param_groups(model, strat))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    done = _Done(batch_size)
    while spent.done < 1.0:
        done.lr = lr_factor(spent.done)
        for g, base in zip(optimizer.param_groups, base_lrs):
            g["lr"] = base * done.lr
        idx = batches.next(done.batch_size)
        st.set_train_mode(model, strat, backbone)
        t = time.perf_counter()
        loss = guarded_step(model, optimizer, *train, idx, strat, hw, backbone, flip, pad_fraction)
        if loss is None:  # out of memory: try again with half the batch
            done.batch_size //= 2
            continue
        done.step_s.append(time.perf_counter() - t)
        done.trained_s += done.step_s[-1]
        done.step, done.seen = done.step + 1, done.seen + len(idx)
        if not math.isfinite(loss):  # diverged: nothing later can recover it
            done.diverged = True
            break
        spent.advance(done.trained_s, done.seen, curves.eval_seconds)
        if progress:
            progress(spent.done)
        curves.after_step(model, done.step, done.seen, done.lr, done.trained_s, spent.done)
    return done


class _Spent:
    """How much of a run's budget is spent (0–1): training seconds against ``seconds``, or images seen against
    ``total_images``; with ``wall_seconds``, also the wall time since ``started`` plus one more evaluation (as
    long as the last one took) against it."""

    def __init__(self, started: float, seconds: float | None, total_images: int | None, wall_seconds: float | None):
        self.started, self.seconds, self.total_images, self.wall_seconds = started, seconds, total_images, wall_seconds
        self.done = 0.0

    def advance(self, trained_s: float, seen: int, eval_s: float) -> None:
        done = min(1.0, trained_s / self.seconds if self.seconds is not None else seen / self.total_images)
        if self.wall_seconds is not None:  # leave room for the final evaluation
            done = max(done, min(1.0, (time.perf_counter() - self.started + eval_s) / self.wall_seconds))
        self.done = done


class _Curves:
    """A run's validation curve: all of ``val`` at ``eval_points`` even shares of the budget (the last at its
    end), and a dense curve on :data:`CURVE_IMAGES` of them at the steps ``dense_at``."""

    def __init__(self, val: tuple[torch.Tensor, torch.Tensor], hw: Hardware, backbone: str, eval_points: int, dense_at: set[int]):
        self.val, self.hw, self.backbone, self.dense_at = val, hw, backbone, dense_at
        self.checkpoints = [(i + 1) / eval_points for i in range(eval_points)]
        self.curve: list[tuple[float, float]] = []
        self.dense: list[tuple[int, int, float, float, float]] = []
        self.eval_seconds = 0.0

    def evaluate(self, model: nn.Module, trained_s: float) -> None:
        t = time.perf_counter()
        self.curve.append((round(trained_s, 3), _accuracy(model, self.val[0], self.val[1], self.hw, self.backbone)))
        self.eval_seconds = time.perf_counter() - t

    def after_step(self, model: nn.Module, step: int, seen: int, lr: float, trained_s: float, done: float) -> None:
        if step in self.dense_at and done < 1.0:
            part = self.val[0][:CURVE_IMAGES], self.val[1][:CURVE_IMAGES]
            self.dense.append((step, seen, round(lr, 4), round(trained_s, 3), _accuracy(model, *part, self.hw, self.backbone)))
        if self.checkpoints and done >= self.checkpoints[0] - 1e-9:
            while self.checkpoints and done >= self.checkpoints[0] - 1e-9:
                self.checkpoints.pop(0)
            self.evaluate(model, trained_s)


class _Batches:
    """Indices of shuffled batches: each epoch a new permutation of ``n`` (seeded), cut in order; a batch that
    would run past the end starts the next epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.gen = n, torch.Generator(device="cpu").manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.gen), 0

    def next(self, batch_size: int) -> torch.Tensor:
        if self.pos + batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + batch_size]
        self.pos += batch_size
        return idx


def measure_speed_ratio(strategy: str | registry.Strategy, resolution: int, batch_size: int, hw: Hardware,
                        backbone: str = registry.DEFAULT_BACKBONE, steps: int = 5) -> float:
    """Training images/s of ``strategy`` ÷ that of all-layer training, from the median of timed steps."""
    strat = registry.resolve(strategy, resolution, 0)
    if strat.variant == "retrain":
        return 1.0
    return (measure_images_per_second(strat, resolution, batch_size, hw, steps, backbone)
            / measure_images_per_second("retrain", resolution, batch_size, hw, steps, backbone))


def measure_epoch_seconds(n_images: int, resolution: int, batch_size: int, hw: Hardware, backbone: str = registry.DEFAULT_BACKBONE) -> float:
    """Seconds of one epoch of all-layer training (retrain) over ``n_images`` on this device: the budget unit."""
    return n_images / measure_images_per_second("retrain", resolution, batch_size, hw, steps=3, backbone=backbone)


def measure_images_per_second(
    strategy: str | registry.Strategy, resolution: int, batch_size: int, hw: Hardware, steps: int = 2,
    backbone: str = registry.DEFAULT_BACKBONE, model: nn.Module | None = None, min_seconds: float = 0.0,
) -> float:
    """Images/s of ``strategy``'s training step (forward only for feature extraction), from real timed steps:
    ``batch_size`` ÷ the median step time (see :func:`step_times`)."""
    times = step_times(strategy, resolution, batch_size, hw, steps, backbone, model, min_seconds)
    return batch_size / statistics.median(times)  # the median resists a step slowed by other load


def step_fn(strategy: str | registry.Strategy, resolution: int, batch_size: int, hw: Hardware, backbone: str = registry.DEFAULT_BACKBONE,
            model: nn.Module | None = None) -> Callable[[], None]:
    """One step of ``strategy`` (a forward pass for feature extraction) at ``batch_size`` as a callable that
    returns when the device is done. The network is built once; image content does not change the cost of a
    step, so random pixels are used. A scratch ``strategy`` given by name gets the network for ``resolution``."""
    strat = registry.resolve(strategy, resolution, 0)
    device = torch.device(hw.device)
    x = torch.randint(0, 256, (batch_size, 3, resolution, resolution), dtype=torch.uint8, device=device)
    if not strat.trains_backbone:
        model = model or bb.create(backbone, pretrained=False).to(device)

        def step():
            predict(model, x, hw, backbone, batch_size=batch_size, features=True)
    else:
        model = st.build(replace(strat, pretrained=False), 10, backbone).to(device)
        model = model.to(memory_format=hardware.memory_format(hw))
        optimizer = torch.optim.AdamW(st.param_groups(model, strat))
        y = torch.randint(0, 10, (batch_size,), device=device)
        st.set_train_mode(model, strat, backbone)

        def step():
            train_step(model, optimizer, x, y, strat, hw, backbone, flip=True)

    def synced():
        step()
        if hw.device == "cuda":
            torch.cuda.synchronize()

    return synced


def time_steps(step: Callable[[], None], steps: int, min_seconds: float = 0.0, warmup: int = 0) -> list[float]:
    """Seconds of each of at least ``steps`` timed calls of ``step`` (and at least ``min_seconds`` of them),
    after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    while len(times) < steps or sum(times) < min_seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def step_times(
    strategy: str | registry.Strategy, resolution: int, batch_size: int, hw: Hardware, steps: int = 2,
    backbone: str = registry.DEFAULT_BACKBONE, model: nn.Module | None = None, min_seconds: float = 0.0, warmup: int = 1,
) -> list[float]:
    """Seconds of each timed step of ``strategy`` (:func:`step_fn`): ``warmup`` untimed steps, then at least
    ``steps`` timed ones and at least ``min_seconds`` of them."""
    return time_steps(step_fn(strategy, resolution, batch_size, hw, backbone, model), steps, min_seconds, warmup)
