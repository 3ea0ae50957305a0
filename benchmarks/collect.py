"""Collect the meta-dataset: real runs of all four strategies over a grid of cells, one JSON line per cell.

A cell is (data set, images per class, budget k, seed). Its training images are a class-stratified draw
from the data set's training pool; its test images are a fixed held-out part of the data set that no cell
trains on. The budget is k full-training-epoch equivalents: k × the measured time of one epoch of
all-layer training over the cell's images on this device, so cells are comparable across hardware. Each
strategy spends it as the images that time buys at its own measured speed (k × its speed ratio to
all-layer training, in epochs), so other load on the machine during a run cannot shift the budgets.

Resumable: a cell whose key is already in the results file is skipped. Cells run through joblib, so the
sweep can run on a cluster by choosing a joblib backend, e.g. with Ray or Dask installed::

    from joblib import parallel_config
    with parallel_config(backend="ray"):        # or "dask" with a dask.distributed Client
        collect(cells, out, n_jobs=-1)

On one machine keep ``--n-jobs 1``: each run already uses every core.

    python benchmarks/collect.py                       # the default grid, cheapest cells first
    python benchmarks/collect.py --max-cell-seconds 60 --datasets digits lfw
    python benchmarks/collect.py --summary             # who won where, from the results file
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from PIL import Image

import advisor
from advisor import datasets, engine, hardware, images, similarity, store
from advisor.schemas import STRATEGIES

RESULTS = Path(__file__).parent / "results" / "cells.jsonl"
RESOLUTION = {"digits": 32, "mnist": 32, "fashion-mnist": 32, "lfw": 32, "tuxpaint": 64}
TEST_PER_CLASS = {"digits": 50, "mnist": 100, "fashion-mnist": 100, "lfw": 30, "tuxpaint": 6}
PER_CLASS = (5, 10, 20, 50, 100, 200, 500, 1000)
BUDGETS = (0.3, 1, 3, 10, 30)
SEEDS = (0, 1)
IPS_GUESS = 100.0  # training images/s assumed when estimating a cell's cost before running it (2-core CPU, 32 px)


@dataclass(frozen=True)
class Cell:
    dataset: str
    per_class: int
    k: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}|n={self.per_class}|k={self.k:g}|seed={self.seed}|res={RESOLUTION[self.dataset]}"


POOL_LIMIT = 12_000  # images kept of a large data set (Fashion-MNIST): more than any cell draws


@functools.cache
def pool(name: str) -> tuple[torch.Tensor, torch.Tensor, list[str], np.ndarray]:
    """All images of a data set at its resolution, labels, class names and a fixed test mask."""
    x, y, classes = datasets.load(name)
    res = RESOLUTION[name]
    if isinstance(x, np.ndarray):  # equal-sized greyscale: resize as one batch
        x, y = x[:POOL_LIMIT], np.asarray(y)[:POOL_LIMIT]
        t = torch.from_numpy(np.array(x)).float()[:, None]
        t = torch.nn.functional.interpolate(t, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
        arr = t.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()
    else:
        arr = np.stack([images.square(Image.fromarray(im), res) for im in x])
    rng = np.random.default_rng(1234)
    test = np.zeros(len(y), bool)
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: min(TEST_PER_CLASS[name], len(idx) // 3)]] = True
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.array(y)).long(), classes, test


def max_per_class(name: str) -> int:
    _, y, classes, test = pool(name)
    return int(min(np.sum((y.numpy() == c) & ~test) for c in range(len(classes))))


def cell_cost(cell: Cell, n_classes: int) -> float:
    """Rough seconds a cell takes: three trained strategies for k epochs each, plus fixed costs."""
    scale = (RESOLUTION[cell.dataset] / 32) ** 2
    return 3 * cell.k * cell.per_class * n_classes * scale / IPS_GUESS + 15


def grid(names: list[str], max_cell_seconds: float) -> list[Cell]:
    cells = []
    for name in names:
        n_classes, cap = len(pool(name)[2]), max_per_class(name)
        for n in PER_CLASS:
            if n > cap:
                continue
            for k in BUDGETS:
                for seed in SEEDS:
                    cell = Cell(name, n, k, seed)
                    if cell_cost(cell, n_classes) <= max_cell_seconds:
                        cells.append(cell)
    return sorted(cells, key=lambda c: (c.seed, cell_cost(c, len(pool(c.dataset)[2])), c.dataset))


@functools.cache
def _subset(name: str, per_class: int, seed: int) -> tuple[np.ndarray, dict, float]:
    """Training indices of a (data set, size, seed), their similarity measures, and one epoch's seconds."""
    x, y, classes, test = pool(name)
    rng = np.random.default_rng(seed)
    train_idx = np.concatenate([rng.permutation(np.flatnonzero((y.numpy() == c) & ~test))[:per_class] for c in range(len(classes))])
    hw = hardware.detect()
    sample = np.concatenate([train_idx[y.numpy()[train_idx] == c][: max(2, 128 // len(classes))] for c in range(len(classes))])
    big = torch.nn.functional.interpolate(x[sample].float(), size=128, mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)
    sim = similarity.measure(big, y[sample], hw).model_dump()
    epoch_s = engine.measure_epoch_seconds(len(train_idx), RESOLUTION[name], min(32, len(train_idx)), hw)
    return train_idx, sim, epoch_s


@functools.cache
def speed_ratios(resolution: int, batch_size: int) -> dict[str, float]:
    """Each trained strategy's images/s ÷ all-layer training's on this device (median of timed steps)."""
    hw = hardware.detect()
    return {s: round(engine.measure_speed_ratio(s, resolution, batch_size, hw), 4) for s in STRATEGIES if s != "feature_extraction"}


def run_cell(cell: Cell) -> dict:
    """Train every strategy on the cell's images for k epoch-equivalents; evaluate on the held-out test set."""
    torch.manual_seed(cell.seed)
    x, y, classes, test = pool(cell.dataset)
    train_idx, sim, epoch_s = _subset(cell.dataset, cell.per_class, cell.seed)
    hw = hardware.detect()
    train, test_set = (x[train_idx], y[train_idx]), (x[test], y[test])
    channels = 1 if cell.dataset in ("digits", "mnist", "fashion-mnist", "lfw") else 3
    ratios = speed_ratios(RESOLUTION[cell.dataset], min(32, len(train_idx)))
    runs = {}
    for name in STRATEGIES:
        r = engine.run(name, train, test_set, len(classes), hw, equivalents=cell.k, speed_ratio=ratios.get(name, 1.0),
                       batch_size=32, flip=channels == 3, seed=cell.seed)
        runs[name] = {k: v for k, v in asdict(r).items() if k != "strategy"}
    best = max(runs, key=lambda s: runs[s]["val_accuracy"])
    return {
        "key": cell.key, "dataset": cell.dataset, "per_class": cell.per_class, "k": cell.k, "seed": cell.seed,
        "n_images": len(train_idx), "n_classes": len(classes), "resolution": RESOLUTION[cell.dataset], "channels": channels,
        "imbalance": 1.0, "test_images": int(test.sum()), "similarity": sim, "epoch_seconds": round(epoch_s, 3),
        "budget_seconds": round(cell.k * epoch_s, 2), "speed_ratios": ratios, "device": hw.device, "device_name": hw.name,
        "runs": runs, "winner": best, "advisor_version": advisor.__version__,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def done_keys(out: Path) -> set[str]:
    return {row["key"] for row in store.read(out)}


def collect(cells: list[Cell], out: Path, n_jobs: int = 1) -> None:
    todo = [c for c in cells if c.key not in done_keys(out)]
    print(f"{len(cells)} cells in the grid, {len(cells) - len(todo)} already in {out}, {len(todo)} to run", flush=True)
    t0 = time.perf_counter()
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(run_cell)(c) for c in todo)
    for i, row in enumerate(results, 1):
        store.append(out, row)
        accs = " ".join(f"{s[:4]} {row['runs'][s]['val_accuracy']:.3f}" for s in STRATEGIES)
        print(f"[{i}/{len(todo)} {time.perf_counter() - t0:6.0f}s] {row['key']}: {accs} → {row['winner']}", flush=True)


def summary(out: Path) -> str:
    """For each data set and size: the winner at each budget (majority over seeds)."""
    rows = store.read(out)
    if not rows:
        return f"no results in {out}"
    table: dict[tuple[str, int], dict[float, list[str]]] = {}
    for r in rows:
        table.setdefault((r["dataset"], r["per_class"]), {}).setdefault(r["k"], []).append(r["winner"])
    ks = sorted({r["k"] for r in rows})
    short = {"feature_extraction": "feat", "fine_tune": "fine", "retrain": "retr", "scratch": "scr"}
    lines = [f"{len(rows)} cells; winner per budget k (epoch-equivalents), majority over seeds",
             f"{'dataset':<14}{'per class':>10}  " + "".join(f"{'k=' + format(k, 'g'):>10}" for k in ks)]
    for (name, n), by_k in sorted(table.items()):
        cells = []
        for k in ks:
            winners = by_k.get(k, [])
            cells.append(max(set(winners), key=winners.count) if winners else "")
        lines.append(f"{name:<14}{n:>10}  " + "".join(f"{short.get(c, c):>10}" for c in cells))
    counts = {s: sum(r["winner"] == s for r in rows) for s in STRATEGIES}
    lines.append("wins: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(RESOLUTION), choices=list(RESOLUTION))
    parser.add_argument("--max-cell-seconds", type=float, default=240.0, help="skip cells estimated to take longer")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--summary", action="store_true", help="only print the summary of the results file")
    parser.add_argument("--list", action="store_true", help="only list the cells that would run")
    args = parser.parse_args()
    if args.summary:
        print(summary(args.out))
        return
    names = []
    for name in args.datasets:
        try:
            pool(name)
            names.append(name)
        except advisor.AdvisorError as exc:
            print(f"skipping {name}: {exc}")
    cells = grid(names, args.max_cell_seconds)
    if args.list:
        for c in cells:
            print(c.key, f"~{cell_cost(c, len(pool(c.dataset)[2])):.0f}s")
        return
    collect(cells, args.out, args.n_jobs)
    print(summary(args.out))


if __name__ == "__main__":
    main()
