"""The learned models: each strategy's test accuracy from data descriptors, the budget and what feature extraction reaches.

Fitted on the benchmark engine's meta-dataset (``benchmarks/results/cells.jsonl``) by
``benchmarks/fit_model.py``. Accuracies are rescaled so chance = 0 and perfect = 1, which makes data sets
with different numbers of classes comparable. Two models:

* :class:`StrategyModel` predicts every strategy's absolute accuracy (gradient boosting, non-decreasing in
  images and budget). Advisor uses it for feature extraction when FE was not measured.
* :class:`GainModel` predicts what fine-tune, retrain and scratch gain *over feature extraction*, with FE's
  accuracy among its inputs. FE is cheap to measure on the user's own data, so the decision rests on the
  measured FE plus a predicted gain; between data sets the gains are far easier to predict than absolute
  accuracies (``benchmarks/evaluate.py`` compares both, leave one family out).

Intervals come from the residuals of leave-one-family-out cross-validation (split-conformal style), so their
width is what the models missed on data sets they had not seen.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from ..measure import calibration

from ..data import datasets

from .. import store
from ..state import PACKAGED_MODEL
from ..registry import STRATEGY_NAMES
from ..schemas import DataFacts, Quantity, Similarity, StrategyName
from ..units import Z80, EpochEquivalents

FEATURES = (
    "log_images", "log_classes", "log_per_class", "channels", "similarity",
    "confidence", "entropy", "log_shift", "separability", "log_budget",
)
NUMBERS_FEATURES = ("log_images", "log_classes", "log_per_class", "channels", "similarity", "log_budget")  # no images
# The model's inputs. The finer image measures (confidence, entropy, shift, separability) scored worse in
# leave-one-family-out evaluation: with a handful of families they identify the data set rather than generalise.
# benchmarks/fit_model.py re-checks this at every refit and records both in the model card.
DEFAULT_FEATURES = NUMBERS_FEATURES
# Shape knowledge, as constraints on the fitted model (+1: accuracy never falls as the feature grows).
MONOTONE = {"log_images": 1, "log_per_class": 1, "log_budget": 1}  # more data or more time never hurts
MONOTONE_BY_STRATEGY: dict[str, dict[str, int]] = {
    # A frozen ImageNet backbone separates classes at least as well the closer the images are to ImageNet;
    # unconstrained, the model read noise between data sets as the reverse (FE higher at 0.1 than at 0.9).
    "feature_extraction": {"similarity": 1},
}
# Not imposed: "the transfer strategies' edge over scratch shrinks as data grows". It spans two models, and the
# cells support it only in part — at a fixed budget in epoch-equivalents more images also buy fine-tune and
# retrain more steps. :func:`edge_support` measures it on the cells and :func:`edge_growth` on a fitted model;
# benchmarks/fit_model.py records both in the model card ("shape_checks") at every refit.
TRANSFER: tuple[StrategyName, ...] = ("feature_extraction", "fine_tune", "retrain")
EPS = 0.01  # normalised accuracies are clipped to [EPS, 1 − EPS] before the logit: the model never predicts 0 or 1
NEAR, OUTSIDE = 0.0, 0.25  # a feature beyond its fitted range by more than this share of the range is "outside"
DESCRIBE = {  # how each feature is shown when a query lies outside the fitted region
    "log_images": ("images", math.exp), "log_classes": ("classes", math.exp), "log_per_class": ("images per class", math.exp),
    "channels": ("channels", float), "similarity": ("similarity", float), "log_budget": ("budget in epoch-equivalents", math.exp),
}


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))


def feature_row(n_images: float, n_classes: float, channels: float, similarity: float, budget: EpochEquivalents,
                measures: Similarity | dict | None = None) -> list[float]:
    """One row of :data:`FEATURES`; the image measures are NaN when unknown (numbers-only form)."""
    m = measures.model_dump() if isinstance(measures, Similarity) else (measures or {})

    def get(key: str) -> float:
        v = m.get(key)
        return float("nan") if v is None else float(v)

    return [
        math.log(n_images), math.log(n_classes), math.log(n_images / n_classes), float(channels), float(similarity),
        get("imagenet_confidence"), get("imagenet_entropy"), math.log1p(get("feature_shift")), get("separability"),
        math.log(max(budget.value, 1e-3)),
    ]


def to_accuracy(normalised: np.ndarray, n_classes: np.ndarray | float) -> np.ndarray:
    c = 1.0 / np.asarray(n_classes, dtype=float)
    return np.clip(c + normalised * (1 - c), 0.0, 1.0)


def _span(n_classes: float) -> float:
    """Accuracy between chance and perfect, 1 − 1/classes: normalised = (accuracy − 1/classes) / span."""
    return 1 - 1 / n_classes


def to_normalised(accuracy: np.ndarray, n_classes: np.ndarray | float) -> np.ndarray:
    c = 1.0 / np.asarray(n_classes, dtype=float)
    return (np.asarray(accuracy, dtype=float) - c) / (1 - c)


def table(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Meta-dataset rows → (X features, Y normalised accuracies (n, 4), n_classes, data set family per row: a class
    subset is grouped with the set it is drawn from, so leaving one group out never leaks shared images)."""
    X = np.array([feature_row(r["n_images"], r["n_classes"], r["channels"], r["similarity"]["score"], EpochEquivalents(r["k"]),
                              r["similarity"])
                  for r in rows])
    acc = np.array([[r["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES] for r in rows])
    n_classes = np.array([r["n_classes"] for r in rows], dtype=float)
    return X, to_normalised(acc, n_classes[:, None]), n_classes, np.array([datasets.family(r["dataset"]) for r in rows])


def edge_support(rows: list[dict], min_sizes: int = 3) -> dict[str, float]:
    """For each transfer strategy, the share of (data set, budget, seed) groups with ≥ ``min_sizes`` sizes in
    which its accuracy edge over scratch falls as the images per class grow (Spearman ρ < 0; ties skipped)."""
    from scipy.stats import spearmanr

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["k"], r["seed"], r.get("device_name")), []).append(r)
    falls = {s: [] for s in TRANSFER}
    for group in groups.values():
        if len({r["per_class"] for r in group}) < min_sizes:
            continue
        sizes = [r["per_class"] for r in group]
        for s in TRANSFER:
            edge = [r["runs"][s]["val_accuracy"] - r["runs"]["scratch"]["val_accuracy"] for r in group]
            if len(set(edge)) > 1:
                falls[s].append(spearmanr(sizes, edge).statistic < 0)
    return {s: round(float(np.mean(v)), 3) if v else float("nan") for s, v in falls.items()}


def edge_growth(model: "StrategyModel", step: float = 0.01) -> dict[str, float]:
    """For each transfer strategy, the share of steps up a grid of sizes (5 to 1000 images per class, over
    classes, similarity, budget and channels) at which the model's edge over scratch grows by more than ``step``
    (normalised accuracy): how often the fitted model breaks "the edge shrinks as data grows"."""
    grows, total = {s: 0 for s in TRANSFER}, 0
    for classes in (2, 10, 100):
        for similarity in (0.1, 0.4, 0.7):
            for k in (0.3, 3, 30, 300):
                for channels in (1, 3):
                    X = np.array([feature_row(classes * n, classes, channels, similarity, EpochEquivalents(k))
                                  for n in (5, 10, 20, 50, 100, 200, 500, 1000)])
                    P = model.predict(X)
                    scratch = P[:, STRATEGY_NAMES.index("scratch")]
                    for s in TRANSFER:
                        grows[s] += int(np.sum(np.diff(P[:, STRATEGY_NAMES.index(s)] - scratch) > step))
                    total += len(X) - 1
    return {s: round(v / total, 3) for s, v in grows.items()}


def leave_one_dataset_out(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, **params) -> np.ndarray:
    """Out-of-fold predictions: each data set predicted by a model fitted on all the others."""
    pred = np.full_like(Y, np.nan)
    for g in np.unique(groups):
        held = groups == g
        if (~held).sum() < 5:
            continue
        pred[held] = StrategyModel(**params).fit(X[~held], Y[~held]).predict(X[held])
    return pred


def fit(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, **params) -> tuple["StrategyModel", np.ndarray]:
    """A model fitted on every row, its intervals set by leave-one-dataset-out residuals; also returns the
    out-of-fold predictions (NaN where a data set could not be held out)."""
    oof = leave_one_dataset_out(X, Y, groups, **params)
    ok = ~np.isnan(oof).any(axis=1)
    model = StrategyModel(**params)
    return model.fit(X, Y, (model.transform(Y) - model.transform(oof))[ok] if ok.any() else None), oof


class StrategyModel:
    """Predicts the normalised accuracy of every strategy from the columns ``features``; sklearn-style.

    ``scale``: "linear" fits the normalised accuracy itself, "logit" its logit (a scale that cannot saturate).
    Either way predictions are kept inside [EPS, 1 − EPS] and intervals reach past the prediction on both
    sides, so no point prediction of 100 % and no zero-width interval. Measured in leave-one-dataset-out
    evaluation the logit scale decided worse (README), so "linear" is the default. The model remembers the
    range of every feature it was fitted on (:meth:`domain`), so a query far outside it can be flagged and its
    interval widened.
    """

    def __init__(self, features: tuple[str, ...] = DEFAULT_FEATURES, max_iter: int = 300, learning_rate: float = 0.05,
                 max_depth: int = 2, min_samples_leaf: int = 5, coverage: float = 0.8, scale: str = "linear"):
        self.features = features
        self.scale = scale
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.coverage = coverage

    def transform(self, normalised: np.ndarray) -> np.ndarray:
        """Normalised accuracy → the scale the model is fitted on."""
        return logit(normalised) if self.scale == "logit" else np.asarray(normalised, dtype=float)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(z) if self.scale == "logit" else np.clip(z, -1.0, 1 - EPS)

    def _columns(self, X: np.ndarray) -> np.ndarray:
        return X[:, [FEATURES.index(f) for f in self.features]]

    def _estimator(self, strategy: str) -> HistGradientBoostingRegressor:
        monotone = {**MONOTONE, **MONOTONE_BY_STRATEGY.get(strategy, {})}
        return HistGradientBoostingRegressor(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                             max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                             monotonic_cst=[monotone.get(f, 0) for f in self.features], random_state=0)

    def fit(self, X: np.ndarray, Y: np.ndarray, residuals: np.ndarray | None = None) -> "StrategyModel":
        """``X``: rows of :data:`FEATURES`; ``Y``: (n, 4) normalised accuracies in :data:`STRATEGY_NAMES` order.
        ``residuals``: out-of-fold errors on the model's scale that set the interval half-widths (unknown without them)."""
        Xc = self._columns(X)
        Z = self.transform(Y)
        self.estimators_ = [self._estimator(s).fit(Xc, Z[:, j]) for j, s in enumerate(STRATEGY_NAMES)]
        self.ranges_ = {f: (float(np.nanmin(Xc[:, i])), float(np.nanmax(Xc[:, i]))) for i, f in enumerate(self.features)}
        if residuals is not None and len(residuals):
            self.half_width_ = np.quantile(np.abs(residuals), self.coverage, axis=0)
        else:
            self.half_width_ = np.full(Y.shape[1], np.nan)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Normalised accuracies (chance = 0, perfect = 1), strictly inside (0, 1)."""
        if not hasattr(self, "estimators_"):
            raise RuntimeError("StrategyModel is not fitted yet; call fit first.")
        Xc = self._columns(X)
        with threadpool_limits(1, user_api="openmp"):  # a few rows: threads only wait for each other, more so on a busy machine
            return self.inverse(np.column_stack([e.predict(Xc) for e in self.estimators_]))

    def interval(self, normalised: np.ndarray, widen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The interval around normalised predictions: ± the half-width on the model's scale, × ``widen``; its
        upper end stays below perfect but above the prediction."""
        z, w = self.transform(normalised), self.half_width_ * widen
        lo, hi = self.inverse(z - w), self.inverse(z + w)
        return lo, np.maximum(hi, np.minimum(np.asarray(normalised) + EPS / 2, 1 - EPS / 4))

    def domain(self, row: list[float] | np.ndarray) -> tuple[str, float, list[str]]:
        """Where one row of :data:`FEATURES` lies against the fitted region (:func:`domain`)."""
        return domain(self.features, self.ranges_, self._columns(np.asarray([row], dtype=float))[0])


def domain(features: tuple[str, ...], ranges: dict[str, tuple[float, float]], values) -> tuple[str, float, list[str]]:
    """Where one row of ``features`` values lies against the fitted ``ranges``: ("inside" | "near" | "outside",
    the total distance beyond the ranges in range widths, and a phrase per feature that is beyond)."""
    total, out = 0.0, []
    for f, v in zip(features, values):
        lo, hi = ranges[f]
        if not (math.isfinite(v) and math.isfinite(lo) and math.isfinite(hi)):
            continue  # not measured (or never in the fit): says nothing of the region
        excess = max(lo - v, v - hi, 0.0) / max(hi - lo, 1e-9)
        if excess > NEAR:
            name, show = DESCRIBE.get(f, (f, float))
            out.append(f"{name} {show(v):.3g} (fitted {show(lo):.3g}–{show(hi):.3g})")
            total += excess
    return ("outside" if total > OUTSIDE else "near" if total > NEAR else "inside"), total, out


GAINED: tuple[StrategyName, ...] = ("fine_tune", "retrain", "scratch")  # the strategies a gain over FE is predicted for
GAIN_FEATURES = (*NUMBERS_FEATURES, "fe_normalised", "log_steps", "log_epochs_fine_tune", "log_epochs_scratch",
                 "pixel_normalised")
# fe_normalised: FE's accuracy, chance = 0 and perfect = 1 (its headroom is 1 − this); log_steps: log of the
# training steps of batch 32 the budget buys at all-layer speed (k × images ÷ 32), how far the trained strategies get;
# log_epochs_*: the passes fine-tune (at the registry's depth) and scratch make in the budget at their own speed
# (k × speed ratio, :mod:`advisor.units`): the scratch network sized to small images runs several times faster than
# the pretrained one. With them, leave-one-family-out regret fell 1.46 → 1.37 points (k ≥ 10: 3.99 → 3.74; README).
DESCRIBE["fe_normalised"] = ("feature extraction's normalised accuracy", float)
DESCRIBE["log_steps"] = ("training steps of batch 32", math.exp)
DESCRIBE["log_epochs_fine_tune"] = ("fine-tune epochs", math.exp)
DESCRIBE["log_epochs_scratch"] = ("scratch epochs", math.exp)
DESCRIBE["pixel_normalised"] = ("the pixel baseline's normalised accuracy", float)
RATIO_STRATEGIES = ("fine_tune", "scratch")  # speed ratios (images/s ÷ all-layer training's) the gain model reads


def gain_row(n_images: float, n_classes: float, channels: float, similarity: float, budget: EpochEquivalents,
             fe_normalised: float, ratios: dict[str, float], pixel_accuracy: float | None = None) -> list[float]:
    """One row of :data:`GAIN_FEATURES`; ``ratios``: fine-tune's and scratch's speed ratios (:func:`advisor.units.speed_ratios`);
    ``pixel_accuracy``: the pixel baseline's accuracy (None: not measured)."""
    k = max(budget.value, 1e-3)
    pixels = math.nan if pixel_accuracy is None else float(to_normalised(np.array(pixel_accuracy), n_classes))
    return [math.log(n_images), math.log(n_classes), math.log(n_images / n_classes), float(channels), float(similarity),
            math.log(k), float(fe_normalised), math.log(k * n_images / 32 + 1),
            *(math.log(k * ratios[s] + 1e-3) for s in RATIO_STRATEGIES), pixels]


def gain_table(rows: list[dict], fe_accuracy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Meta-dataset rows → (rows of :data:`GAIN_FEATURES`, (n, 3) gains over FE in accuracy (a fraction, not
    normalised), in :data:`GAINED` order). ``fe_accuracy`` replaces the cells' FE accuracies as the input (e.g.
    with noise)."""
    acc = np.array([[r["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES] for r in rows])
    n_classes = np.array([r["n_classes"] for r in rows], dtype=float)
    fe_in = to_normalised(acc[:, 0] if fe_accuracy is None else fe_accuracy, n_classes)
    X = np.array([gain_row(r["n_images"], r["n_classes"], r["channels"], r["similarity"]["score"], EpochEquivalents(r["k"]), f,
                           r["speed_ratios"], r.get("pixel_accuracy")) for r, f in zip(rows, fe_in)])
    return X, acc[:, [STRATEGY_NAMES.index(s) for s in GAINED]] - acc[:, [0]]


def contributed_gain_table(contributed: list, typical_ratios: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contributed cells (:class:`advisor.model.cells.ContributedCell`, one trained strategy each) → (rows of
    :data:`GAIN_FEATURES`, (n, 3) gains over FE with NaN where the cell did not train that strategy, groups:
    each contributed data set its own family). Only cells with FE measured, a budget in epoch-equivalents and
    a trained strategy count; speed ratios the cell lacks are ``typical_ratios``."""
    X, D, groups = [], [], []
    for c in contributed:
        trained = [s for s in c.runs if s in GAINED]
        if c.fe_measured is None or c.k is None or not trained:
            continue
        ratios = {**typical_ratios, **(c.speed_ratios or {})}
        fe_norm = float(to_normalised(np.array(c.fe_measured.value), c.n_classes))
        X.append(gain_row(c.n_images, c.n_classes, c.channels, c.similarity, EpochEquivalents(c.k), fe_norm, ratios,
                          c.pixel_measured.value if c.pixel_measured else None))
        D.append([c.runs[s].val_accuracy - c.fe_measured.value if s in trained else np.nan for s in GAINED])
        groups.append(c.dataset)
    return np.array(X).reshape(-1, len(GAIN_FEATURES)), np.array(D, dtype=float).reshape(-1, len(GAINED)), np.array(groups)


class GainModel:
    """Predicts each trained strategy's accuracy minus feature extraction's (a fraction); sklearn-style.

    One extremely-randomised-trees regressor per strategy in :data:`GAINED`. The target is the plain accuracy
    difference, the unit regret is scored in: in leave-one-family-out tests it chose better than the difference
    of normalised accuracies (1.31 against 1.37 points of mean regret over three seeds) or of logits (1.62),
    and ExtraTrees better than gradient boosting or absolute-accuracy models (README). Rows without the pixel
    baseline (:data:`OPTIONAL`: NaN, e.g. numbers-only calls) are predicted by a second set of trees fitted
    without that input, on every row; the trees with it are fitted on the rows that have it. Intervals: ± the
    ``coverage`` quantile of the out-of-fold |residual| per strategy, for each set. A NaN target (a contributed
    cell that trained one strategy) is left out of that strategy's fit only.
    """

    OPTIONAL = "pixel_normalised"

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 5, coverage: float = 0.8):
        self.features = GAIN_FEATURES
        self.n_estimators, self.min_samples_leaf, self.coverage = n_estimators, min_samples_leaf, coverage

    def _trees(self, X: np.ndarray, D: np.ndarray) -> list[ExtraTreesRegressor]:
        known = np.isfinite(D)
        return [ExtraTreesRegressor(self.n_estimators, min_samples_leaf=self.min_samples_leaf, random_state=0, n_jobs=1)
                .fit(X[known[:, j]], D[known[:, j], j]) for j in range(D.shape[1])]

    @property
    def _optional(self) -> int:
        return self.features.index(self.OPTIONAL)

    def _without(self, X: np.ndarray) -> np.ndarray:
        return np.delete(X, self._optional, axis=1)

    def fit(self, X: np.ndarray, D: np.ndarray, residuals: np.ndarray | None = None,
            residuals_without: np.ndarray | None = None) -> "GainModel":
        """``residuals`` / ``residuals_without``: out-of-fold residuals of the trees with / without the pixel baseline."""
        X = np.asarray(X, dtype=float)
        has = np.isfinite(X[:, self._optional])
        self.estimators_ = self._trees(X[has], D[has]) if has.sum() >= 2 else None
        self.fallback_ = self._trees(self._without(X), D)
        self.ranges_ = {f: (float(np.nanmin(X[:, i])), float(np.nanmax(X[:, i]))) if np.isfinite(X[:, i]).any() else (math.nan, math.nan)
                        for i, f in enumerate(self.features)}

        def width(r):
            return np.nanquantile(np.abs(r), self.coverage, axis=0) if r is not None and len(r) else np.full(D.shape[1], np.nan)

        self.half_width_, self.half_width_without_ = width(residuals), width(residuals_without)
        log_k = X[:, self.features.index("log_budget")]  # the cells' median speed ratios: used when none is measured
        self.typical_ratios_ = {s: float(np.exp(np.median(X[:, self.features.index(f"log_epochs_{s}")] - log_k)))
                                for s in RATIO_STRATEGIES}
        return self

    def uses_pixels(self, row: list[float] | np.ndarray) -> bool:
        """Whether a row is predicted by the trees that read the pixel baseline (it was measured and they were fitted)."""
        return self.estimators_ is not None and bool(np.isfinite(np.asarray(row, dtype=float)[self._optional]))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) predicted gains over FE (accuracy, a fraction), :data:`GAINED` order."""
        if not hasattr(self, "fallback_"):
            raise RuntimeError("GainModel is not fitted yet; call fit first.")
        X = np.asarray(X, dtype=float)
        out = np.column_stack([e.predict(self._without(X)) for e in self.fallback_])
        has = np.isfinite(X[:, self._optional])
        if self.estimators_ is not None and has.any():
            out[has] = np.column_stack([e.predict(X[has]) for e in self.estimators_])
        return out

    def half_widths(self, row: list[float] | np.ndarray) -> np.ndarray:
        """The interval half-widths (accuracy) that go with the trees predicting ``row``."""
        return self.half_width_ if self.uses_pixels(row) else self.half_width_without_

    def domain(self, row: list[float] | np.ndarray) -> tuple[str, float, list[str]]:
        return domain(self.features, self.ranges_, np.asarray(row, dtype=float))


def fit_gain(X: np.ndarray, D: np.ndarray, groups: np.ndarray, **params) -> tuple[GainModel, np.ndarray]:
    """A :class:`GainModel` fitted on every row, its intervals set by leave-one-family-out residuals; also
    returns the out-of-fold predictions (NaN where a family could not be held out) as advice would make them:
    with the pixel baseline where the row has it."""
    X = np.asarray(X, dtype=float)
    oof, oof_without = np.full_like(D, np.nan), np.full_like(D, np.nan)
    for g in np.unique(groups):
        held = groups == g
        if (~held).sum() >= 5:
            model = GainModel(**params).fit(X[~held], D[~held])
            oof[held] = model.predict(X[held])
            oof_without[held] = model.predict(np.where(np.arange(X.shape[1]) == model._optional, np.nan, X[held]))
    has = np.isfinite(X[:, GAIN_FEATURES.index(GainModel.OPTIONAL)])
    ok, ok_without = ~np.isnan(oof).any(axis=1) & has, ~np.isnan(oof_without).any(axis=1)
    model = GainModel(**params).fit(X, D, (D - oof)[ok] if ok.any() else None,
                                    (D - oof_without)[ok_without] if ok_without.any() else None)
    return model, oof


def save(models: dict, card: dict, path: Path | None = None) -> Path:
    """Save ``{"default": StrategyModel, "gain": GainModel}`` and its card (compressed joblib to a temporary
    file, then rename)."""
    return store.atomic_replace(Path(path or PACKAGED_MODEL),
                                lambda tmp: joblib.dump({"models": models, "card": card}, tmp, compress=3))


def load(path: Path | None = None) -> tuple[dict[str, StrategyModel], dict] | None:
    """The packaged models and their card, or None when none has been fitted (read once per file version)."""
    path = Path(path or PACKAGED_MODEL).resolve()
    if not path.is_file():
        return None
    return _load(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> tuple[dict[str, StrategyModel], dict]:
    bundle = joblib.load(path)
    return bundle["models"], bundle["card"]


class LearnedPredictor:
    """Plugs the fitted models into :func:`advisor.advice.decide.decide` as its ``predictor``.

    Feature extraction: ``fe`` when it was measured on the data (or given), else the :class:`StrategyModel`'s
    prediction. The trained strategies: FE's normalised accuracy + the :class:`GainModel`'s predicted gain
    (when the bundle has one; else the absolute model). ``probes`` (calibration records: the model's errors
    seen by probes) correct the predictions at each budget through :func:`advisor.measure.calibration.correction`;
    ``data`` names the data being advised on, whose own probes count fully; probes of other data count only
    when it is close (:func:`advisor.measure.calibration.closeness`).
    """

    def __init__(self, models: dict, card: dict, measures: Similarity | dict | None = None,
                 probes: list[dict] | None = None, data: str | None = None, fe: Quantity | None = None,
                 pixels: Quantity | None = None):
        self.card, self.measures = card, measures
        self.model = models["default"]
        self.gain: GainModel | None = models.get("gain")
        self.forecaster = models.get("forecast")  # advisor.model.forecast.Forecaster: the probe's short runs → the full budget
        self.probes, self.data, self.fe, self.pixels = probes or [], data, fe, pixels
        self.name = card.get("name", "strategy_model")
        self._sigma: dict[str, float] = {}  # set by predict(): each strategy's σ against FE, for confidence()
        self._norm: dict[str, float] = {}
        self.domain_note = ""  # set by predict(): where the last facts lie against the fitted region, when beyond it

    def with_probes(self, extra: list[dict]) -> LearnedPredictor:
        """The same models and measures, corrected by ``extra`` probe records as well (e.g. a probe's own, before it is stored)."""
        models = {"default": self.model, **({"gain": self.gain} if self.gain else {}),
                  **({"forecast": self.forecaster} if self.forecaster else {})}
        return LearnedPredictor(models, self.card, self.measures, self.probes + extra, self.data, self.fe, self.pixels)

    @property
    def anchored(self) -> bool:
        """Whether the predictions are gains over a feature-extraction accuracy measured on the images."""
        return self.gain is not None and self.fe is not None and self.fe.source == "measured"

    def _ratios(self, ratios: dict[str, float] | None) -> dict[str, float]:
        """Speed ratios for the gain model: the measured ones, any missing one the cells' typical value."""
        return {**self.gain.typical_ratios_, **(ratios or {})}

    def _gain_row(self, facts: DataFacts, budget: EpochEquivalents, fe_norm: float, ratios: dict[str, float] | None) -> list[float]:
        return gain_row(facts.n_images, facts.n_classes, facts.channels, facts.similarity, budget, fe_norm, self._ratios(ratios),
                        self.pixels.value if self.pixels is not None else None)

    def normalised(self, facts: DataFacts, budget: EpochEquivalents, ratios: dict[str, float] | None = None) -> np.ndarray:
        """The models' raw normalised predictions (no correction) for these facts and budget, FE measured or not;
        ``ratios``: fine-tune's and scratch's speed ratios (:func:`advisor.units.speed_ratios`; the cells' typical ones if not given)."""
        row = np.array([feature_row(facts.n_images, facts.n_classes, facts.channels, facts.similarity, budget, self.measures)])
        norm = self.model.predict(row)[0]
        if self.fe is not None:
            norm[0] = float(np.clip(to_normalised(self.fe.value, facts.n_classes), EPS, 1 - EPS))
        if self.gain is not None:
            gains = self.gain.predict([self._gain_row(facts, budget, norm[0], ratios)])[0]
            for s, g in zip(GAINED, gains):  # an accuracy gain g is g / (1 − 1/classes) in normalised accuracy
                norm[STRATEGY_NAMES.index(s)] = float(np.clip(norm[0] + g / _span(facts.n_classes), EPS, 1 - EPS))
        return norm

    def _fe_half_width(self, facts: DataFacts) -> float:
        """FE's uncertainty (normalised): its measured interval, else the absolute model's half-width."""
        if self.fe is not None and self.fe.low is not None and self.fe.high is not None:
            return float(to_normalised(self.fe.high, facts.n_classes) - to_normalised(self.fe.low, facts.n_classes)) / 2
        return float(self.model.half_width_[0]) if self.model.scale == "linear" else 0.1

    def confidence(self, best: StrategyName, other: StrategyName) -> float | None:
        """P(``best`` really beats ``other``) from the gains' uncertainties after :meth:`predict` (FE's own
        uncertainty cancels: both are FE + a gain); None without a gain model."""
        if best not in self._sigma or other not in self._sigma:
            return None
        sigma = math.hypot(self._sigma[best], self._sigma[other])
        gap = self._norm[best] - self._norm[other]
        return 1.0 if sigma <= 0 else 0.5 * (1 + math.erf(gap / (sigma * math.sqrt(2))))

    def _region(self, facts: DataFacts, budget: EpochEquivalents, fe_normalised: float,
                ratios: dict[str, float] | None) -> tuple[str, float, np.ndarray | None, str]:
        """Where the query lies against the fitted region ("inside" | "near" | "outside", its distance), the gain
        model's interval half-widths for it (None without a gain model), and what the detail should say of it
        (inputs not measured, the region); sets :attr:`domain_note`."""
        note, gain_widths = "", None
        if self.gain is not None:
            row = self._gain_row(facts, budget, fe_normalised, ratios)
            where, distance, beyond = self.gain.domain(row)
            gain_widths = self.gain.half_widths(row)
            if not self.gain.uses_pixels(row):
                note += "; the pixel baseline was not measured: the gain model's trees fitted without it"
            missing = [s for s in RATIO_STRATEGIES if s not in (ratios or {})]
            if missing:
                note += ("; speed not measured for " + " and ".join(missing) + ": the cells' typical "
                         + ", ".join(f"{s} ×{self.gain.typical_ratios_[s]:.2g}" for s in missing) + " of all-layer training's speed assumed")
        else:
            where, distance, beyond = self.model.domain(
                feature_row(facts.n_images, facts.n_classes, facts.channels, facts.similarity, budget, self.measures))
        self.domain_note = (f"{where} the region the model was fitted on — " + ", ".join(beyond)
                            + f": a guess, its interval widened ×{1 + distance:.2g}") if beyond else ""
        return where, distance, gain_widths, (note + "; " + self.domain_note) if beyond else note

    def predict(self, facts: DataFacts, budget: EpochEquivalents | None,
                ratios: dict[str, float] | None = None) -> dict[StrategyName, Quantity]:
        """Each strategy's accuracy with its interval; nothing when the budget is unknown in epoch-equivalents
        (no throughput measured). ``ratios`` as for :meth:`normalised`."""
        if budget is None:
            return {}
        k = budget.value
        norm = self.normalised(facts, budget, ratios)
        offsets, used = calibration.correction(self.probes, budget, self.data, facts)
        if self.fe is not None:
            offsets.pop("feature_extraction", None)  # measured: nothing to correct
        note = (f"; corrected by {used} probe(s) of this or close data on this machine: "
                + ", ".join(f"{s} {v:+.3f}" for s, v in offsets.items())) if used else ""
        where, distance, gain_widths, said = self._region(facts, budget, norm[0], ratios)
        note += said
        mu = np.clip(norm + np.array([offsets.get(s, 0.0) for s in STRATEGY_NAMES]), EPS, 1 - EPS)
        self._norm = dict(zip(STRATEGY_NAMES, mu))
        span = _span(facts.n_classes)
        self._sigma = ({"feature_extraction": 0.0} | {s: w / span * (1 + distance) / Z80 for s, w in zip(GAINED, gain_widths)}
                       if self.gain is not None else {})  # FE's own uncertainty is common to all: it cancels
        out = {}
        fe_hw = self._fe_half_width(facts)
        abs_lo, abs_hi = self.model.interval(mu, 1 + distance)
        fe_how = ("measured" if self.fe is not None else "the model's prediction")
        for j, s in enumerate(STRATEGY_NAMES):
            if s == "feature_extraction" and self.fe is not None:
                out[s] = self.fe
                continue
            if self.gain is not None and s in GAINED:
                gain_hw = float(gain_widths[GAINED.index(s)]) / span * (1 + distance)
                known = not np.isnan(gain_hw)
                hw = math.hypot(gain_hw, fe_hw)
                lo, hi = mu[j] - hw, max(mu[j] + hw, min(mu[j] + EPS / 2, 1 - EPS / 4))
                detail = (f"feature extraction's accuracy ({fe_how}) + the gain model's predicted gain "
                          f"{(mu[j] - mu[0]) * (1 - 1 / facts.n_classes) * 100:+.1f} points; {self.gain.coverage:.0%} interval "
                          f"from leave-one-family-out residuals")
            else:
                known = not np.isnan(self.model.half_width_[j])
                lo, hi = float(abs_lo[j]), float(abs_hi[j])
                detail = f"{self.model.coverage:.0%} interval from leave-one-family-out residuals"
            out[s] = Quantity(
                value=round(float(to_accuracy(mu[j], facts.n_classes)), 4), source="model", domain=where,
                low=round(float(to_accuracy(lo, facts.n_classes)), 4) if known else None,
                high=round(float(to_accuracy(min(hi, 1 - EPS / 4), facts.n_classes)), 4) if known else None,
                detail=f"{detail}; fitted on {self.card.get('cells', '?')} real runs; budget {k:.1f} epoch-equivalents" + note,
            )
        return out
