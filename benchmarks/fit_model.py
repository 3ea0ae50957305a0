"""Fit the learned strategy model on the meta-dataset and save it, with its card, inside the package.

Reproducible: the same results file gives the same model (fixed seeds). The card records the data it saw
and its leave-one-dataset-out (LODO) error; the same LODO residuals set the prediction intervals.

    python benchmarks/fit_model.py [--results benchmarks/results/cells.jsonl]
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import advisor
from advisor import learned
from advisor.schemas import STRATEGIES

import meta


def _fit_one(X, Y, n_classes, groups, features) -> tuple[learned.StrategyModel, dict]:
    oof = learned.leave_one_dataset_out(X, Y, groups, features=features)
    ok = ~np.isnan(oof).any(axis=1)
    acc_err = np.abs(learned.to_accuracy(oof[ok], n_classes[ok, None]) - learned.to_accuracy(Y[ok], n_classes[ok, None]))
    model = learned.StrategyModel(features=features).fit(X, Y, (Y - oof)[ok])
    return model, {
        "features": list(features),
        "lodo_mean_abs_error_points": {s: round(float(acc_err[:, j].mean()) * 100, 2) for j, s in enumerate(STRATEGIES)},
        "lodo_winner_agreement": round(float(np.mean(oof[ok].argmax(1) == Y[ok].argmax(1))), 3),
        "interval_half_width_normalised": {s: round(float(w), 4) for s, w in zip(STRATEGIES, model.half_width_)},
    }


def fit(rows: list[dict]) -> tuple[dict[str, learned.StrategyModel], dict]:
    X, Y, n_classes, groups = learned.table(rows)
    models, cards = {}, {}
    for name, features in (("full", learned.FEATURES), ("numbers", learned.NUMBERS_FEATURES)):
        models[name], cards[name] = _fit_one(X, Y, n_classes, groups, features)
    card = {
        "name": "strategy_model",
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "advisor_version": advisor.__version__,
        "cells": len(rows),
        "datasets": {g: int((groups == g).sum()) for g in np.unique(groups)},
        "devices": sorted({r["device_name"] for r in rows}),
        "target": "accuracy rescaled so chance = 0, perfect = 1; one GradientBoostingRegressor per strategy",
        "interval": f"{models['full'].coverage:.0%} quantile of |leave-one-dataset-out residual| per strategy",
        "models": cards,
    }
    return models, card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=meta.RESULTS)
    parser.add_argument("--out", type=Path, default=learned.MODEL_PATH)
    args = parser.parse_args()
    models, card = fit(meta.rows(args.results))
    path = learned.save(models, card, args.out)
    print(json.dumps(card, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
