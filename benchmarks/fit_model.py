"""Fit the learned strategy model on the meta-dataset and save it, with its card, inside the package.

Reproducible: the same results file gives the same model (fixed seeds). Fine-tune's runs are the ones at the
depth the rules advise for each cell (advisor.model.cells.as_advised), as advisor trains it. Three models: the absolute strategy
model and the gain model (each trained strategy's gain over feature extraction; advisor/model/learned.py), and the
probe's forecaster (a short run → the full budget; advisor/model/forecast.py). The card
records the data they saw and their leave-one-family-out error; the same residuals set the prediction intervals. It also
compares the model's inputs with the finer image measures added, so each refit re-checks that choice.

Finished ``advisor train`` runs that users contributed (``advisor calibrate --export --cells`` files, given
with ``--contributed``) join the gain model's fit for the one strategy each trained, beside FE's measured
accuracy; each contributed data set is its own family in the leave-one-family-out folds.

    python benchmarks/fit_model.py [--results FILE ...] [--contributed FILE ...]   # default: the CPU and GPU cells
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import advisor
from advisor.model import cells, forecast, learned
from advisor import rules
from advisor.state import PACKAGED_MODEL
from advisor.registry import STRATEGY_NAMES



def lodo_figures(oof: np.ndarray, Y: np.ndarray, n_classes: np.ndarray) -> dict:
    """Out-of-fold error per strategy and the quality of the decision it implies (scratch included)."""
    ok = ~np.isnan(oof).any(axis=1)
    pred, true = (learned.to_accuracy(a[ok], n_classes[ok, None]) for a in (oof, Y))
    regret = (true.max(1) - true[np.arange(len(true)), pred.argmax(1)]) * 100
    return {
        "mean_abs_error_points": {s: round(float(np.abs(pred - true)[:, j].mean()) * 100, 2) for j, s in enumerate(STRATEGY_NAMES)},
        "winner_agreement": round(float(np.mean(regret < 1e-9)), 3),
        "mean_regret_points": round(float(regret.mean()), 2),
        "worst_regret_points": round(float(regret.max()), 2),
    }


def gain_figures(oof: np.ndarray, rows: list[dict]) -> dict:
    """Out-of-fold error of the predicted gains over FE, in points, and the decision they imply (FE kept
    unless a predicted gain is positive)."""
    _, D = learned.gain_table(rows)
    ok = ~np.isnan(oof).any(axis=1)
    acc = np.array([[r["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES] for r in rows])[ok]
    choice = np.column_stack([np.zeros(ok.sum()), oof[ok]]).argmax(1)
    order = [STRATEGY_NAMES.index(s) for s in ("feature_extraction", *learned.GAINED)]
    picked = acc[np.arange(len(acc)), np.array(order)[choice]]
    regret = (acc.max(1) - picked) * 100
    return {
        "mean_abs_error_points": {s: round(float((np.abs(oof[ok] - D[ok]) * 100)[:, j].mean()), 2) for j, s in enumerate(learned.GAINED)},
        "winner_agreement": round(float(np.mean(regret < 1e-9)), 3),
        "mean_regret_points": round(float(regret.mean()), 2),
    }


def typical_ratios(rows: list[dict]) -> dict[str, float]:
    """The cells' median speed ratio per strategy the gain model reads."""
    return {s: float(np.median([r["speed_ratios"][s] for r in rows])) for s in learned.RATIO_STRATEGIES}


def fit(rows: list[dict], contributed: list[cells.ContributedCell] = ()) -> tuple[dict, dict]:
    X, Y, n_classes, groups = learned.table(rows)
    model, oof = learned.fit(X, Y, groups)
    XG, D = learned.gain_table(rows)
    XC, DC, GC = learned.contributed_gain_table(list(contributed), typical_ratios(rows))
    gain, gain_oof = learned.fit_gain(np.vstack([XG, XC]), np.vstack([D, DC]), np.concatenate([groups, GC]))
    gain_oof = gain_oof[:len(rows)]
    no_pixels = XG.copy()
    no_pixels[:, learned.GAIN_FEATURES.index(learned.GainModel.OPTIONAL)] = np.nan
    _, oof_no_pixels = learned.fit_gain(no_pixels, D, groups)  # the same, as numbers-only advice decides (no pixel baseline)
    with_measures = learned.leave_one_dataset_out(X, Y, groups, features=learned.FEATURES)
    forecaster, held, oof_fc = forecast.fit(rows, groups)
    card = {
        "name": "strategy_model",
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "advisor_version": advisor.__version__,
        "cells": len(rows),
        "contributed_cells": len(GC),
        "datasets": {str(g): int((groups == g).sum()) for g in np.unique(groups)},
        "devices": sorted({r["device_name"] for r in rows}),
        "features": list(model.features),
        "target": f"accuracy rescaled so chance = 0, perfect = 1, on the {model.scale} scale (kept within 1-99 %); one "
                  "HistGradientBoostingRegressor per strategy, non-decreasing in images and budget",
        "interval": f"{model.coverage:.0%} quantile of |leave-one-dataset-out residual| per strategy",
        "interval_half_width_logit": {s: round(float(w), 4) for s, w in zip(STRATEGY_NAMES, model.half_width_)},
        "fitted_ranges": {f: [round(lo, 4), round(hi, 4)] for f, (lo, hi) in model.ranges_.items()},
        "lodo": lodo_figures(oof, Y, n_classes),
        "lodo_with_image_measures": lodo_figures(with_measures, Y, n_classes),
        "gain_model": {
            "features": list(gain.features),
            "target": "accuracy minus feature extraction's, per trained strategy; one ExtraTreesRegressor "
                      f"({gain.n_estimators} trees, ≥ {gain.min_samples_leaf} cells a leaf) each; FE's accuracy is an input",
            "interval_half_width_accuracy": {s: round(float(w), 4) for s, w in zip(learned.GAINED, gain.half_width_)},
            "interval_half_width_accuracy_without_pixels": {s: round(float(w), 4) for s, w in
                                                            zip(learned.GAINED, gain.half_width_without_)},
            "cells_with_pixel_baseline": int(np.isfinite(XG[:, learned.GAIN_FEATURES.index(learned.GainModel.OPTIONAL)]).sum()),
            "fitted_ranges": {f: [round(lo, 4), round(hi, 4)] for f, (lo, hi) in gain.ranges_.items()},
            "lofo": gain_figures(gain_oof, rows),
            "lofo_without_pixel_baseline": gain_figures(oof_no_pixels, rows),
        },
        "forecast": {
            "what": "a strategy's accuracy at the full budget from a short complete run: prior(full) + w(share) × "
                    "(observed − prior(short)), w = a + b·log(share) in [0, 1], fitted on pairs of cells (same data set, size, seed)",
            "pairs": forecaster.n_,
            "a": round(forecaster.a_, 4), "b": round(forecaster.b_, 4),
            "weight_at": {f"{s:g}": round(forecaster.weight(s), 3) for s in (0.01, 0.03, 0.1, 0.33)},
            "interval_half_width_accuracy_by_share": dict(zip(
                [f"≤{e:g}" for e in forecast.SHARE_EDGES] + [f">{forecast.SHARE_EDGES[-1]:g}"],
                [round(w, 4) for w in forecaster.half_width_])),
            "lofo_mean_abs_error_points": round(float(np.nanmean(np.abs(oof_fc - np.array([p.target for p in held])))) * 100, 2),
        },
        "shape_checks": {  # "a transfer strategy's edge over scratch shrinks as data grows" (learned.TRANSFER note)
            "edge_falls_with_size_in_cells": learned.edge_support(rows),
            "edge_grows_with_size_in_model": learned.edge_growth(model),
        },
    }
    return {"default": model, "gain": gain, "forecast": forecaster}, card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, nargs="+", default=list(cells.FILES))
    parser.add_argument("--contributed", type=Path, nargs="*", default=[],
                        help="contributed cells (advisor calibrate --export --cells): join the gain model's fit")
    parser.add_argument("--out", type=Path, default=PACKAGED_MODEL)
    args = parser.parse_args()
    rows, changed = cells.as_advised(cells.read(args.results, required=True), rules.load())
    print(f"fine-tune at the depth the rules advise: {changed} of {len(rows)} cells", file=sys.stderr)
    contributed = cells.read_contributed(args.contributed)
    models, card = fit(rows, contributed)
    print(f"contributed cells: {card['contributed_cells']} of {len(contributed)} usable (FE measured, a budget in "
          "epoch-equivalents, a trained strategy)", file=sys.stderr)
    card["fine_tune_runs"] = (f"at the depth the rules advise in {changed} cells (advisor.model.cells.as_advised); "
                              "the registry's 4 stages in the rest (collected before the variants)")
    path = learned.save(models, card, args.out)
    print(json.dumps(card, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
