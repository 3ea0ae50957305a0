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
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from PIL import Image

import advisor
from advisor.model import cells
from advisor.data import datasets, images, similarity
from advisor.nets import engine
from advisor.measure import fe_accuracy
from advisor import hardware, registry, store
from advisor.registry import STRATEGY_NAMES
from advisor.units import EpochEquivalents

_RES = {"digits": 32, "mnist": 32, "fashion-mnist": 32, "lfw": 32, "tuxpaint": 64, "clipart": 64, "crawl": 32, "animals": 32, "emoji": 32, "elpv": 48}
_TEST = {"digits": 50, "mnist": 100, "fashion-mnist": 100, "lfw": 30, "tuxpaint": 6, "clipart": 20, "crawl": 100, "animals": 100, "emoji": 20, "elpv": 20}
# a subset or a family member trains at its family's resolution and keeps as many test images per class
RESOLUTION = {name: _RES[datasets.family(name)] for name in datasets.NAMES}
TEST_PER_CLASS = {name: _TEST[datasets.family(name)] for name in datasets.NAMES} | {"clipart-41": 10}
PER_CLASS = (5, 10, 20, 50, 100, 200, 500, 1000)
BUDGETS = (0.3, 1, 3, 10, 30)
SEEDS = (0, 1)
CURVE_POINTS = 24  # dense learning-curve points per trained run (log-spaced in steps), for the probe's forecasts
IPS_GUESS = 100.0  # training images/s assumed when estimating a cell's cost before running it (2-core CPU, 32 px)


@dataclass(frozen=True)
class Cell:
    dataset: str
    per_class: int
    k: float
    seed: int
    resolution: int = 0  # 0: the data set's default (RESOLUTION)

    @property
    def res(self) -> int:
        return self.resolution or RESOLUTION[self.dataset]

    @property
    def key(self) -> str:
        return f"{self.dataset}|n={self.per_class}|k={self.k:g}|seed={self.seed}|res={self.res}"


POOL_LIMIT = 12_000  # images kept of a large data set (Fashion-MNIST): more than any cell draws


@functools.cache
def source(name: str) -> tuple[np.ndarray | list[np.ndarray], np.ndarray, list[str]]:
    """The data set's original images (the first POOL_LIMIT), labels and class names."""
    x, y, classes = datasets.load(name)
    return x[:POOL_LIMIT], np.asarray(y)[:POOL_LIMIT], classes


def resize(name: str, res: int, index: np.ndarray | None = None) -> torch.Tensor:
    """The data set's images (or those at ``index``) as uint8 (N, 3, res, res), resized from the originals."""
    x = source(name)[0]
    index = np.arange(len(x)) if index is None else index
    if isinstance(x, np.ndarray) and x.ndim == 3:  # equal-sized greyscale: resize as one batch
        t = torch.from_numpy(np.array(x[index])).float()[:, None]
        t = torch.nn.functional.interpolate(t, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
        return t.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    arr = np.stack([images.square(Image.fromarray(x[i]), res) for i in index])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@functools.cache
def pool(name: str, res: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str], np.ndarray]:
    """All images of a data set at ``res`` (default: its RESOLUTION), labels, class names and a fixed test mask."""
    _, y, classes = source(name)
    x = resize(name, res or RESOLUTION[name])
    rng = np.random.default_rng(1234)
    test = np.zeros(len(y), bool)
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: min(TEST_PER_CLASS[name], len(idx) // 3)]] = True
    return x, torch.from_numpy(np.array(y)).long(), classes, test


def max_per_class(name: str) -> int:
    _, y, classes, test = pool(name)
    return int(min(np.sum((y.numpy() == c) & ~test) for c in range(len(classes))))


def cell_cost(cell: Cell, n_classes: int, ips_guess: float = IPS_GUESS, runs: int = 3) -> float:
    """Rough seconds a cell takes: ``runs`` trained strategies for k epochs each, plus fixed costs."""
    scale = (cell.res / 32) ** 2
    return runs * cell.k * cell.per_class * n_classes * scale / ips_guess + 15


def grid(names: list[str], max_cell_seconds: float, per_class=PER_CLASS, budgets=BUDGETS, seeds=SEEDS,
         resolution: int = 0, ips_guess: float = IPS_GUESS) -> list[Cell]:
    cells = []
    for name in names:
        n_classes, cap = len(source(name)[2]), max_per_class(name)
        for n in sorted(set(min(n, cap) for n in per_class)):
            for k in budgets:
                for seed in seeds:
                    cell = Cell(name, n, k, seed, resolution)
                    if cell_cost(cell, n_classes, ips_guess) <= max_cell_seconds:
                        cells.append(cell)
    return sorted(cells, key=lambda c: (c.seed, cell_cost(c, len(source(c.dataset)[2]), ips_guess), c.dataset))


@functools.cache
def train_indices(name: str, per_class: int, seed: int) -> np.ndarray:
    """Training images of a (data set, size, seed): a class-stratified draw that never touches the test mask."""
    _, y, classes, test = pool(name)
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero((y.numpy() == c) & ~test))[:per_class] for c in range(len(classes))])


@functools.cache
def cell_similarity(name: str, per_class: int, seed: int) -> dict:
    """Similarity measured as advisor measures it on a user's folder: the sample :func:`similarity.sample_indices`
    draws from the training images, resized from the originals to :data:`similarity.RESOLUTION`."""
    train_idx = train_indices(name, per_class, seed)
    y = pool(name)[1]
    sample = train_idx[similarity.sample_indices(y.numpy()[train_idx].tolist())]
    return similarity.measure(resize(name, similarity.RESOLUTION, sample), y[sample], hardware.detect()).model_dump()


def _subset(name: str, per_class: int, seed: int, res: int) -> tuple[np.ndarray, dict, float]:
    """Training indices of a (data set, size, seed), their similarity measures, and one epoch's seconds."""
    train_idx = train_indices(name, per_class, seed)
    epoch_s = engine.measure_epoch_seconds(len(train_idx), res, min(32, len(train_idx)), hardware.detect())
    return train_idx, cell_similarity(name, per_class, seed), epoch_s


@functools.cache
def speed_ratio(variant: registry.Strategy, resolution: int, batch_size: int) -> float:
    """A trained configuration's images/s ÷ all-layer training's on this device (median of timed steps)."""
    return round(engine.measure_speed_ratio(variant, resolution, batch_size, hardware.detect()), 4)


def variants(n_images: int, res: int, depths: tuple[int, ...]) -> dict[str, registry.Strategy]:
    """The configurations a cell trains: the four strategies (scratch sized to the data) and fine-tune's other depths."""
    out = {name: registry.resolve(name, res, n_images) for name in STRATEGY_NAMES}
    for d in depths:
        v = registry.resolve("fine_tune", res, n_images, depth=d)
        if v.variant != out["fine_tune"].variant:
            out[v.variant] = v
    return out


def train_config(v: registry.Strategy, cell: Cell, train, test_set, n_classes: int, flip: bool) -> tuple[float, dict]:
    """Train one configuration for the cell's k epoch-equivalents: (its speed ratio, its run as stored)."""
    ratio = speed_ratio(v, cell.res, min(32, len(train[0]))) if v.trains_backbone else 1.0
    r = engine.run(v, train, test_set, n_classes, hardware.detect(), equivalents=EpochEquivalents(cell.k), speed_ratio=ratio,
                   batch_size=32, flip=flip, seed=cell.seed, curve_points=CURVE_POINTS)
    return ratio, r.model_dump(exclude={"strategy"})


@functools.cache
def cell_pixels(name: str, per_class: int, seed: int) -> float | None:
    """The pixel baseline as advisor measures it on a user's folder (:func:`advisor.measure.fe_accuracy.measure_pixels_data`):
    at most ⌈PIXEL_IMAGES ÷ classes⌉ of the cell's training images of each class, resized from the originals to
    PIXEL_SIDE; None where a class has fewer than 2 images."""
    train_idx = train_indices(name, per_class, seed)
    y = pool(name)[1].numpy()
    n_classes = len(source(name)[2])
    m = max(2, -(-fe_accuracy.PIXEL_IMAGES // n_classes))
    sample = np.concatenate([train_idx[y[train_idx] == c][:m] for c in range(n_classes)])
    found = fe_accuracy.measure_pixels(resize(name, fe_accuracy.PIXEL_SIDE, sample), torch.from_numpy(y[sample]))
    return None if isinstance(found, str) else found.value


def fill_pixels(out: Path) -> None:
    """Add the pixel baseline (:func:`cell_pixels`) to every row of ``out`` that lacks it; the file is rewritten
    atomically (stop a sweep appending to it first)."""
    rows = store.read(out)
    todo = [r for r in rows if "pixel_accuracy" not in r]
    print(f"{len(todo)} of {len(rows)} rows of {out} lack the pixel baseline", flush=True)
    t0 = time.perf_counter()
    for i, r in enumerate(todo, 1):
        r["pixel_accuracy"] = cell_pixels(r["dataset"], r["per_class"], r["seed"])
        if i % 100 == 0:
            print(f"  {i}/{len(todo)} {time.perf_counter() - t0:.0f}s", flush=True)
    store.write_lines(out, rows)


def run_cell(cell: Cell, depths: tuple[int, ...] = registry.FINE_TUNE_DEPTHS) -> dict:
    """Train every strategy (and fine-tune at each depth) on the cell's images for k epoch-equivalents;
    evaluate on the held-out test set. ``runs`` holds the four strategies, ``variants`` the other depths."""
    torch.manual_seed(cell.seed)
    x, y, classes, test = pool(cell.dataset, cell.res)
    train_idx, sim, epoch_s = _subset(cell.dataset, cell.per_class, cell.seed, cell.res)
    hw = hardware.detect()
    train, test_set = (x[train_idx], y[train_idx]), (x[test], y[test])
    channels = 1 if datasets.family(cell.dataset) in datasets.GREYSCALE else 3
    configs = variants(len(train_idx), cell.res, depths)
    ratios, results = {}, {}
    for name, v in configs.items():
        ratios[name], results[name] = train_config(v, cell, train, test_set, len(classes), channels == 3)
    runs = {s: results[s] for s in STRATEGY_NAMES}
    best = max(runs, key=lambda s: runs[s]["val_accuracy"])
    return {
        "key": cell.key, "dataset": cell.dataset, "per_class": cell.per_class, "k": cell.k, "seed": cell.seed,
        "n_images": len(train_idx), "n_classes": len(classes), "resolution": cell.res, "channels": channels,
        "imbalance": 1.0, "test_images": int(test.sum()), "similarity": sim,
        "pixel_accuracy": cell_pixels(cell.dataset, cell.per_class, cell.seed), "epoch_seconds": round(epoch_s, 3),
        "budget_seconds": round(cell.k * epoch_s, 2), "speed_ratios": {n: r for n, r in ratios.items() if n != "feature_extraction"},
        "device": hw.device, "device_name": hw.name, "precision": hw.precision, "torch_version": torch.__version__,
        "runs": runs, "variants": {n: results[n] for n in results if n not in STRATEGY_NAMES},
        "scratch_arch": configs["scratch"].arch, "fine_tune_depth": configs["fine_tune"].depth,
        "winner": best, "advisor_version": advisor.__version__, "schema": 2,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def update_row(row: dict, names: tuple[str, ...] = ("scratch",)) -> dict:
    """A stored cell brought up to date: similarity re-measured with advisor's own sampling, and the
    configurations ``names`` (e.g. ``scratch``, ``fine_tune@1``) re-run; the replaced values are kept under
    ``*_v1`` keys."""
    cell = Cell(row["dataset"], row["per_class"], row["k"], row["seed"], row["resolution"])
    x, y, classes, test = pool(cell.dataset, cell.res)
    train_idx = train_indices(cell.dataset, cell.per_class, cell.seed)
    assert len(train_idx) == row["n_images"], "the draw of training images changed"
    sim = cell_similarity(cell.dataset, cell.per_class, cell.seed)
    configs = variants(len(train_idx), cell.res, registry.FINE_TUNE_DEPTHS)
    runs, extra = dict(row["runs"]), dict(row.get("variants", {}))
    ratios = dict(row["speed_ratios"])
    old = {n: row["runs"][n] for n in names if n in row["runs"] and row.get("schema", 1) < 2}
    for name in names:
        ratios[name], (runs if name in STRATEGY_NAMES else extra)[name] = train_config(
            configs[name], cell, (x[train_idx], y[train_idx]), (x[test], y[test]), len(classes), row["channels"] == 3)
    out = {**row, "similarity": sim, "runs": runs, "variants": extra, "speed_ratios": ratios,
           "scratch_arch": configs["scratch"].arch, "fine_tune_depth": configs["fine_tune"].depth,
           "winner": max(runs, key=lambda s: runs[s]["val_accuracy"]), "schema": 2,
           "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch_version": torch.__version__}
    if row.get("schema", 1) < 2:
        out.update(similarity_v1=row["similarity"], runs_v1=old, winner_v1=row["winner"])
    return out


def update(src: Path, out: Path, names: tuple[str, ...], deadline: float | None = None) -> None:
    """Bring every row of ``src`` up to date into ``out`` (resumable: rows already in ``out`` are skipped)."""
    done = done_keys(out)
    rows = [r for r in store.read(src) if r["key"] not in done]
    rows.sort(key=lambda r: r["budget_seconds"])
    print(f"{len(rows)} rows of {src} to update into {out}", flush=True)
    t0 = time.perf_counter()
    for i, row in enumerate(rows, 1):
        if deadline is not None and time.perf_counter() - t0 > deadline:
            break
        new = update_row(row, names)
        store.append(out, new)
        print(f"[{i}/{len(rows)} {time.perf_counter() - t0:6.0f}s] {new['key']}: similarity {row['similarity']['score']:.3f} → "
              f"{new['similarity']['score']:.3f}; " + ", ".join(
                  f"{n} {(new['runs'] | new['variants'])[n]['val_accuracy']:.3f}" for n in names) + f" → {new['winner']}", flush=True)


def done_keys(out: Path) -> set[str]:
    return {row["key"] for row in store.read(out)}


def collect(cells: list[Cell], out: Path, n_jobs: int = 1, deadline: float | None = None,
            depths: tuple[int, ...] = registry.FINE_TUNE_DEPTHS) -> None:
    """Run the cells not yet in ``out`` and append each row as it finishes; with ``deadline`` (seconds),
    start no new cell after that long (one machine only: the cells then run in order). ``depths``: the
    fine-tune depths each cell trains (:func:`run_cell`)."""
    todo = [c for c in cells if c.key not in done_keys(out)]
    print(f"{len(cells)} cells in the grid, {len(cells) - len(todo)} already in {out}, {len(todo)} to run", flush=True)
    t0 = time.perf_counter()
    if deadline is not None:
        todo = iter(todo)
        results = (run_cell(c, depths) for c in todo if time.perf_counter() - t0 < deadline)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(run_cell)(c, depths) for c in todo)
    for i, row in enumerate(results, 1):
        store.append(out, row)
        accs = " ".join(f"{s[:4]} {row['runs'][s]['val_accuracy']:.3f}" for s in STRATEGY_NAMES)
        extra = " ".join(f"{n} {r['val_accuracy']:.3f}" for n, r in row.get("variants", {}).items())
        print(f"[{i} {time.perf_counter() - t0:6.0f}s] {row['key']}: {accs} | {extra} → {row['winner']}", flush=True)


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
        majority = []
        for k in ks:
            winners = by_k.get(k, [])
            majority.append(max(set(winners), key=winners.count) if winners else "")
        lines.append(f"{name:<14}{n:>10}  " + "".join(f"{short.get(c, c):>10}" for c in majority))
    counts = {s: sum(r["winner"] == s for r in rows) for s in STRATEGY_NAMES}
    lines.append("wins: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    every = cells.read()  # every results file, GPU cells with their device
    devices = ", ".join(f"{d} {sum(r['device'] == d for r in every)}" for d in sorted({r["device"] for r in every}))
    lines.append(f"all results files: {len(every)} cells ({devices}) over "
                 f"{len({datasets.family(r['dataset']) for r in every})} families; "
                 f"{sum(r['k'] >= 10 for r in every)} at k ≥ 10, {sum(r['k'] >= 100 for r in every)} at k ≥ 100")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(datasets.SOURCES), choices=list(RESOLUTION))
    parser.add_argument("--max-cell-seconds", type=float, default=240.0, help="skip cells estimated to take longer")
    parser.add_argument("--resolution", type=int, default=0, help="train at this side instead of each data set's default")
    parser.add_argument("--per-class", type=int, nargs="+", default=list(PER_CLASS))
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS), help="k, in epoch-equivalents")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--ips-guess", type=float, default=IPS_GUESS, help="training images/s at 32 px, for cell costs")
    parser.add_argument("--deadline", type=float, help="start no new cell after this many seconds")
    parser.add_argument("--update", type=Path, metavar="SRC", help="bring the rows of SRC up to date into --out "
                        "(similarity re-measured; the --rerun configurations trained again)")
    parser.add_argument("--rerun", nargs="+", default=["scratch"], help="configurations --update trains again")
    parser.add_argument("--fill-pixels", action="store_true", help="add the pixel baseline to the rows of --out that lack it")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=cells.CPU_CELLS)
    parser.add_argument("--summary", action="store_true", help="only print the summary of the results file")
    parser.add_argument("--list", action="store_true", help="only list the cells that would run")
    args = parser.parse_args()
    if args.summary:
        print(summary(args.out))
        return
    if args.update:
        update(args.update, args.out, tuple(args.rerun), args.deadline)
        return
    if args.fill_pixels:
        fill_pixels(args.out)
        return
    names = []
    for name in args.datasets:
        try:
            source(name)
            names.append(name)
        except advisor.AdvisorError as exc:
            print(f"skipping {name}: {exc}")
    todo = grid(names, args.max_cell_seconds, args.per_class, args.budgets, args.seeds, args.resolution, args.ips_guess)
    if args.list:
        for c in todo:
            print(c.key, f"~{cell_cost(c, len(source(c.dataset)[2]), args.ips_guess):.0f}s")
        return
    collect(todo, args.out, args.n_jobs, args.deadline)
    print(summary(args.out))


if __name__ == "__main__":
    main()
