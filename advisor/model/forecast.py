"""Forecasts of a trained strategy's accuracy at the full budget from a short run of it (the probe).

The forecast is the learned model's prior at the full budget, moved by a share of what the short run showed
the model got wrong at the short run's own conditions:

    forecast = prior(full budget) + w(share) × (observed − prior(short run))

``share`` is the short run's training images seen ÷ the full budget's; ``w(share) = a + b·log(share)``, kept
in [0, 1], is fitted on pairs of cells of the meta-dataset (the same data set, size and seed trained to a
smaller and a larger budget), and the 80 % interval is the quantile of the leave-one-family-out |error| at
that share. The short run is complete in itself (its own warm-up and cosine decay, not a prefix of the full
run's schedule): what a complete short run says about a longer one is what the pairs measure, so the
schedule's difference is modelled, not assumed away.

``benchmarks/forecast.py`` compares this with the other forecasters tried (the prior alone, the short run's
accuracy as it is, the full shift, a power law with fitted priors, learned models over prefix features),
leave one family out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data import datasets

from . import learned
from ..schemas import StrategyName
from ..units import EpochEquivalents

COVERAGE = 0.8
SHARE_EDGES = (0.02, 0.05, 0.2)  # interval buckets of the share: ≤ 1/50, ≤ 1/20, ≤ 1/5, larger


@dataclass(frozen=True)
class Pair:
    """One trained strategy in a short run and the long run of the same data set, size and seed."""

    strategy: StrategyName
    family: str
    share: float  # images seen in the short run ÷ in the long run
    observed: float  # the short run's accuracy
    target: float  # the long run's accuracy
    prior_short: float  # the model's accuracy at the short run's budget
    prior_full: float  # ... and at the long run's
    k_full: float
    cell: int  # the long run's row in the cells given to :func:`pairs`
    short_cell: int


def priors(rows: list[dict], gain: learned.GainModel, ks: list[float], index: list[int]) -> np.ndarray:
    """The gain model's accuracy for each trained strategy (:data:`learned.GAINED`) of ``rows[index[i]]`` at
    budget ``ks[i]``, from the cell's own feature-extraction accuracy: (n, 3)."""
    X, fe = [], []
    for i, k in zip(index, ks):
        r = rows[i]
        acc = r["runs"]["feature_extraction"]["val_accuracy"]
        fe.append(acc)
        X.append(learned.gain_row(r["n_images"], r["n_classes"], r["channels"], r["similarity"]["score"], EpochEquivalents(k),
                                  float(learned.to_normalised(acc, r["n_classes"])), r["speed_ratios"], r.get("pixel_accuracy")))
    return np.asarray(fe)[:, None] + gain.predict(np.asarray(X)) if X else np.zeros((0, 3))


def pairs(rows: list[dict], gain_for: dict[str, learned.GainModel]) -> list[Pair]:
    """Every (shorter, longer) pair of cells of the same data set, images per class, seed, resolution and device,
    for each trained strategy; the priors from ``gain_for[family]`` (a model that has not seen the family, for an
    honest evaluation; the same model for every family to fit the final forecaster)."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["dataset"], r["per_class"], r["seed"], r["resolution"], r.get("device", "cpu")), []).append(i)
    found = [(i, j) for idx in groups.values() for i in idx for j in idx if rows[j]["k"] < rows[i]["k"]]
    out: list[Pair] = []
    fams = np.array([datasets.family(rows[i]["dataset"]) for i, _ in found])
    for fam in np.unique(fams):
        mine = [p for p, f in zip(found, fams) if f == fam]
        full = priors(rows, gain_for[fam], [rows[i]["k"] for i, _ in mine], [i for i, _ in mine])
        short = priors(rows, gain_for[fam], [rows[j]["k"] for _, j in mine], [i for i, _ in mine])
        for (i, j), pf, ps in zip(mine, full, short):
            for s, a, b in zip(learned.GAINED, pf, ps):
                out.append(Pair(s, fam, rows[j]["k"] / rows[i]["k"], rows[j]["runs"][s]["val_accuracy"],
                                rows[i]["runs"][s]["val_accuracy"], float(b), float(a), rows[i]["k"], i, j))
    return out


def bucket(share: float) -> int:
    return int(np.searchsorted(SHARE_EDGES, share, side="left"))


class Forecaster:
    """forecast = prior(full) + w(share) × (observed − prior(short)); ``w = a + b·log(share)`` in [0, 1]."""

    def fit(self, data: list[Pair], residuals: np.ndarray | None = None, shares: np.ndarray | None = None) -> "Forecaster":
        """Least squares for (a, b) on ``data``; ``residuals`` at ``shares`` (out-of-fold) set the interval per
        share bucket (:data:`SHARE_EDGES`); buckets without residuals take the widest known half-width."""
        e = np.array([p.observed - p.prior_short for p in data])
        t = np.array([p.target - p.prior_full for p in data])
        log_share = np.log([p.share for p in data])
        self.a_, self.b_ = (float(v) for v in np.linalg.lstsq(np.column_stack([e, e * log_share]), t, rcond=None)[0])
        self.half_width_ = [float("nan")] * (len(SHARE_EDGES) + 1)
        self.n_ = len(data)
        if residuals is not None and len(residuals):
            b = np.array([bucket(s) for s in shares])
            for j in range(len(self.half_width_)):
                if (b == j).sum() >= 20:
                    self.half_width_[j] = float(np.quantile(np.abs(residuals[b == j]), COVERAGE))
            known = [w for w in self.half_width_ if not math.isnan(w)]
            self.half_width_ = [w if not math.isnan(w) else max(known, default=float("nan")) for w in self.half_width_]
        return self

    def weight(self, share: float) -> float:
        """How much of the short run's surprise carries to the full budget."""
        return float(np.clip(self.a_ + self.b_ * math.log(max(share, 1e-6)), 0.0, 1.0))

    def share_for(self, weight: float) -> float:
        """The share from which a short run's surprise carries ``weight`` of itself to the full budget."""
        return float(math.exp((weight - self.a_) / self.b_)) if self.b_ > 0 else float("nan")

    def predict(self, observed: float, prior_short: float, prior_full: float, share: float) -> float:
        return float(np.clip(prior_full + self.weight(share) * (observed - prior_short), 0.0, 1.0))

    def half_width(self, share: float) -> float:
        return self.half_width_[bucket(share)]


def fit(rows: list[dict], groups: np.ndarray, gain_params: dict | None = None) -> tuple[Forecaster, list[Pair], np.ndarray]:
    """The forecaster, fitted on every pair with each family's priors from a gain model that has not seen it
    (as a user's data is not among the cells), its intervals from leave-one-family-out residuals ((a, b) fitted
    without the family too); also returns those pairs and their held-out forecasts."""
    X, D = learned.gain_table(rows)
    held_out = {g: learned.GainModel(**(gain_params or {})).fit(X[groups != g], D[groups != g]) for g in np.unique(groups)}
    data = pairs(rows, held_out)
    oof = np.full(len(data), np.nan)
    fams = np.array([p.family for p in data])
    for g in np.unique(fams):
        f = Forecaster().fit([p for p, h in zip(data, fams) if h != g])
        for i in np.flatnonzero(fams == g):
            p = data[i]
            oof[i] = f.predict(p.observed, p.prior_short, p.prior_full, p.share)
    target = np.array([p.target for p in data])
    return Forecaster().fit(data, target - oof, np.array([p.share for p in data])), data, oof


def viable(accuracy: float, n_classes: int, n_val: int, diverged: bool, z: float = 2.0) -> str | None:
    """Why a short run shows its strategy is not viable, or None: its loss diverged (NaN), or after the steps
    it trained its accuracy is still within ``z`` standard errors of chance."""
    if diverged:
        return "its training loss diverged (not a number)"
    chance = 1 / n_classes
    noise = z * math.sqrt(chance * (1 - chance) / max(n_val, 1))
    if accuracy <= chance + noise:
        return f"{accuracy:.1%} is still within noise of chance ({chance:.1%} ± {noise:.1%})"
    return None

