"""How well a short run forecasts a strategy's accuracy at the full budget: leave one family out.

A "short run" is a cell of the same data set, images per class and seed trained to a smaller budget (a
complete run with its own schedule, as advisor's probe trains); "share" = its budget ÷ the full budget. Each
family's forecasts come from models that have not seen it (the gain model's priors and the forecaster's
weights). Printed per share bucket, at full budgets k ≥ 10 and overall: mean absolute error (points) and the
coverage of the 80 % interval, for

* prior — the gain model alone at the full budget (FE's accuracy + the predicted gain; ignores the short run),
* short run as is — the short run's own accuracy,
* full shift — prior(full) + (observed − prior(short)),
* forecaster — advisor's (advisor/model/forecast.py): the shift weighted by w(share), fitted on the other families,
* power law — observed + b·(k_short^−c − k_full^−c), (b, c) per strategy fitted on the other families,
* learned — extra trees over the short run's and the cell's features (target: full − observed),

then the decision each implies at k ≥ 10 (feature extraction's accuracy known, the best forecast advised),
beside always feature extraction and a shift whose weight is tuned for the decisions rather than the error;
successive halving across strategies (a first round at share 1/30 drops the strategies whose forecasts are
beaten beyond their intervals, the survivors run to 1/10); the seed-to-seed spread of the same configuration
(the noise no forecaster can remove); and forecasts from a *true prefix* of the full run (its dense curve's
point at 2–20 % of its steps, same warm-up and schedule): the prior, the prefix as is, a linear blend and
extra trees, each fitted without the family.

    python benchmarks/forecast.py [--results FILE ...]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import LinearRegression

from advisor.model import cells, forecast, learned

from advisor.data import datasets
from advisor.model.forecast import priors
from advisor.registry import STRATEGY_NAMES

BUCKETS = ((0.2, 1.0, "share 1/3"), (0.05, 0.2, "share 1/10"), (0.02, 0.05, "share 1/30"), (0.0, 0.02, "share ≤ 1/100"))


def candidates(rows: list[dict], data: list[forecast.Pair], oof: np.ndarray) -> dict[str, np.ndarray]:
    """Held-out forecasts of every candidate for every pair (the forecaster's are ``oof``)."""
    A = {f: np.array([getattr(p, f) for p in data]) for f in ("observed", "target", "prior_short", "prior_full", "share", "k_full", "family")}
    s = np.array([learned.GAINED.index(p.strategy) for p in data])
    c = np.array([rows[p.cell]["n_classes"] for p in data], dtype=float)
    n = np.array([rows[p.cell]["n_images"] for p in data], dtype=float)
    fe = np.array([rows[p.cell]["runs"]["feature_extraction"]["val_accuracy"] for p in data])
    k_short = A["share"] * A["k_full"]
    norm = lambda a: (a - 1 / c) / (1 - 1 / c)  # noqa: E731
    F = np.column_stack([s == 0, s == 1, s == 2, np.log(k_short), np.log(A["k_full"]), np.log(A["share"]), norm(A["observed"]),
                         norm(fe), A["prior_full"] - fe, A["prior_short"] - fe, np.log(n), np.log(c), np.log(n / c),
                         [rows[p.cell]["channels"] for p in data], [rows[p.cell]["similarity"]["score"] for p in data]])
    out = {"prior": A["prior_full"], "short run as is": A["observed"],
           "full shift": A["prior_full"] + A["observed"] - A["prior_short"], "forecaster": oof,
           "power law": np.full(len(data), np.nan), "learned": np.full(len(data), np.nan)}
    for g in np.unique(A["family"]):
        held, train = A["family"] == g, A["family"] != g
        for j in range(3):
            m, mt = train & (s == j), held & (s == j)

            def law(th, M):
                return norm(A["observed"])[M] + th[0] * (k_short[M] ** -th[1] - A["k_full"][M] ** -th[1])

            th = least_squares(lambda th: law(th, m) - norm(A["target"])[m], [0.2, 0.5], bounds=([0, 0.01], [5, 3])).x
            out["power law"][mt] = np.clip(law(th, mt), 0, 1) * (1 - 1 / c[mt]) + 1 / c[mt]
        trees = ExtraTreesRegressor(200, min_samples_leaf=5, random_state=0, n_jobs=1)
        out["learned"][held] = A["observed"][held] + trees.fit(F[train], (A["target"] - A["observed"])[train]).predict(F[held])
    return out


def interval_of(pred: np.ndarray, target: np.ndarray, shares: np.ndarray, family: np.ndarray) -> np.ndarray:
    """Each pair's 80 % half-width: the quantile of the other families' |error| in its share bucket."""
    err, b = np.abs(pred - target), np.array([forecast.bucket(x) for x in shares])
    out = np.full(len(pred), np.nan)
    for g in np.unique(family):
        for j in np.unique(b):
            ref = (family != g) & (b == j)
            if ref.sum() >= 20:
                out[(family == g) & (b == j)] = np.quantile(err[ref], forecast.COVERAGE)
    return out


def outcome(row: dict, forecasts: dict[str, float]) -> tuple[bool, float]:
    """Advise the best of ``forecasts`` and feature extraction's measured accuracy on the cell ``row``: whether that
    is the cell's winner and the regret in points."""
    acc = {s: row["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES}
    fc = {"feature_extraction": acc["feature_extraction"]} | forecasts
    pick, best = max(fc, key=fc.get), max(acc.values())
    return acc[pick] >= best - 1e-9, (best - acc[pick]) * 100


def decisions(rows: list[dict], data: list[forecast.Pair], preds: dict[str, np.ndarray], lo: float, hi: float) -> dict:
    """Per candidate: (cells, agreement, mean regret in points) at full budgets k ≥ 10 when the best forecast
    is advised, FE's accuracy known, the short run at a share in (lo, hi]."""
    by: dict[tuple, dict] = defaultdict(dict)
    for idx, p in enumerate(data):
        if lo < p.share <= hi and p.k_full >= 10:
            by[(p.cell, p.short_cell)][p.strategy] = idx
    out = {}
    for name, pred in preds.items():
        agree, regret = [], []
        for (cell, _), idx in by.items():
            if len(idx) < 3:
                continue
            right, lost = outcome(rows[cell], {s: pred[i] for s, i in idx.items()})
            agree.append(right)
            regret.append(lost)
        out[name] = (len(agree), float(np.mean(agree)) if agree else float("nan"), float(np.mean(regret)) if regret else float("nan"))
    return out


def decision_tuned(rows: list[dict], data: list[forecast.Pair], lo: float, hi: float,
                   grid: np.ndarray = np.linspace(0, 1.5, 13)) -> tuple[tuple, float, float]:
    """The shift prior(full) + w × (observed − prior(short)) with w chosen for the decisions instead of the error:
    per held-out family, the w of ``grid`` with the least mean regret on the other families' decisions at a share in
    (lo, hi]. Returns (cells, agreement, mean regret) as :func:`decisions` does, the median w chosen and the
    forecasts' mean absolute error in points at k ≥ 10."""
    fam = np.array([p.family for p in data])
    shift = np.array([p.observed - p.prior_short for p in data])
    full = np.array([p.prior_full for p in data])
    got, chosen, err = [], [], []
    for g in np.unique(fam):
        other, mine = np.flatnonzero(fam != g), np.flatnonzero(fam == g)
        regret = [decisions(rows, [data[i] for i in other], {"w": full[other] + w * shift[other]}, lo, hi)["w"]
                  for w in grid]
        w = float(grid[int(np.argmin([r[2] if r[0] else np.inf for r in regret]))])
        c, a, r = decisions(rows, [data[i] for i in mine], {"w": full[mine] + w * shift[mine]}, lo, hi)["w"]
        if c:
            got.append((c, a, r))
            chosen.append(w)
        err += [abs(full[i] + w * shift[i] - data[i].target) for i in mine if lo < data[i].share <= hi and data[i].k_full >= 10]
    n = sum(c for c, _, _ in got)
    return ((n, sum(c * a for c, a, _ in got) / n, sum(c * r for c, _, r in got) / n) if n else (0, float("nan"), float("nan")),
            float(np.median(chosen)) if chosen else float("nan"), float(np.mean(err)) * 100 if err else float("nan"))


def halving(rows: list[dict], data: list[forecast.Pair], pred: np.ndarray, width: np.ndarray,
            first: tuple[float, float] = (0.02, 0.05), second: tuple[float, float] = (0.05, 0.2)) -> tuple[dict, tuple]:
    """Successive halving across strategies at k ≥ 10, against running every strategy to the second round's share.
    Round one runs every trained strategy at a share in ``first``; a strategy whose forecast's upper bound (80 %
    interval) lies below another's lower bound, or below FE's accuracy (measured), is dropped; the survivors run at a
    share in ``second`` and the best of their forecasts and FE is advised. Returns, per policy, (decisions, agreement,
    mean regret in points, mean probe cost in shares of the full run summed over strategies), and (trained
    strategies, dropped, dropped that were the cell's winner)."""
    rounds: list[dict] = [defaultdict(lambda: defaultdict(dict)), defaultdict(lambda: defaultdict(dict))]  # cell -> short cell -> strategy -> pair
    for idx, p in enumerate(data):
        for at, (lo, hi) in zip(rounds, (first, second)):
            if p.k_full >= 10 and lo < p.share <= hi:
                at[p.cell][p.short_cell][p.strategy] = idx
    got: dict[str, list] = defaultdict(list)
    dropped = winners = trained = 0
    for cell in set(rounds[0]) & set(rounds[1]):
        row, fe = rows[cell], rows[cell]["runs"]["feature_extraction"]["val_accuracy"]
        best = max(row["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES)
        for one in (v for v in rounds[0][cell].values() if len(v) == 3):
            for two in (v for v in rounds[1][cell].values() if len(v) == 3):
                low = {s: pred[i] - width[i] for s, i in one.items()} | {"feature_extraction": fe}
                keep = [s for s, i in one.items() if not pred[i] + width[i] < max(v for o, v in low.items() if o != s)]
                trained += 3
                dropped += 3 - len(keep)
                winners += sum(row["runs"][s]["val_accuracy"] >= best - 1e-9 for s in one if s not in keep)
                share1, share2 = data[next(iter(one.values()))].share, data[next(iter(two.values()))].share
                for policy, runs, cost in (("halving", {s: two[s] for s in keep}, 3 * share1 + len(keep) * share2),
                                           ("all at round one's share", one, 3 * share1),
                                           ("all at round two's share", two, 3 * share2)):
                    got[policy].append((*outcome(row, {s: pred[i] for s, i in runs.items()}), cost))
    return ({policy: (len(v), *(float(np.mean(x)) for x in zip(*v))) for policy, v in got.items()},
            (trained, dropped, winners))


def seed_spread(rows: list[dict], k_min: float = 10) -> tuple[int, float]:
    """Mean |difference| of a trained strategy's accuracy between seeds of the same configuration, ÷ √2: the
    error of a perfect forecast of the configuration's mean accuracy, in points."""
    by = cells.by_configuration([r for r in rows if r["k"] >= k_min])
    diffs = [abs(a["runs"][s]["val_accuracy"] - b["runs"][s]["val_accuracy"])
             for same in by.values() for i, a in enumerate(same) for b in same[i + 1:] for s in learned.GAINED]
    return len(diffs), float(np.mean(diffs)) * 100 / np.sqrt(2) if diffs else float("nan")


def seed_mean_targets(rows: list[dict], data: list[forecast.Pair]) -> np.ndarray:
    """Each pair's long-run strategy accuracy averaged over the seeds of its configuration (NaN with one seed)."""
    by = cells.by_configuration(rows)
    return np.array([float(np.mean([o["runs"][p.strategy]["val_accuracy"] for o in same]))
                     if len(same := by[cells.configuration(rows[p.cell])]) > 1 else float("nan") for p in data])


PREFIXES = (0.02, 0.05, 0.1, 0.2)


def prefix_forecasts(rows: list[dict], groups: np.ndarray, k_min: float = 10) -> list[str]:
    """Forecasts of each trained run at k ≥ ``k_min`` from a true prefix of itself: the dense curve's last point at
    or before each share of its steps (at least 5 steps and 2 points in), leave one family out."""
    X, D = learned.gain_table(rows)
    held_out = {g: learned.GainModel().fit(X[groups != g], D[groups != g]) for g in np.unique(groups)}
    recs = []
    for i, r in enumerate(rows):
        if r["k"] < k_min or not all(r["runs"][s].get("dense") for s in learned.GAINED):
            continue
        prior = priors(rows, held_out[groups[i]], [r["k"]], [i])[0]
        fe = r["runs"]["feature_extraction"]["val_accuracy"]
        for j, s in enumerate(learned.GAINED):
            run = r["runs"][s]
            for share in PREFIXES:
                seen = [d for d in run["dense"] if d[0] <= share * run["steps"]]  # [step, images, LR factor, seconds, accuracy]
                if len(seen) < 2 or seen[-1][0] < 5:
                    continue
                last, mid = seen[-1], seen[max(0, len(seen) // 2 - 1)]
                recs.append((groups[i], i, j, share, last[4], last[4] - mid[4], last[2], last[0], prior[j], fe,
                             run["val_accuracy"], r["k"], r["n_classes"]))
    if not recs:
        return ["true prefix of the full run: no cells with dense curves"]
    fam, cell, s, share, pre, slope, lr, steps, prior, fe, final, k, c = (np.array(v) for v in zip(*recs))
    F = np.column_stack([s == 0, s == 1, s == 2, pre - fe, prior - fe, slope, lr, np.log(steps), np.log(share), np.log(k), np.log(c), fe])
    out = {"prior": prior, "prefix as is": pre, "linear blend": np.full(len(recs), np.nan), "learned": np.full(len(recs), np.nan)}
    for g in np.unique(fam):
        held, train = fam == g, fam != g
        for x in PREFIXES:
            m, mt = train & (share == x), held & (share == x)
            if mt.any() and m.sum() > 10:
                Z = lambda M: np.column_stack([prior[M], pre[M], slope[M]])  # noqa: E731
                out["linear blend"][mt] = LinearRegression().fit(Z(m), final[m]).predict(Z(mt))
        trees = ExtraTreesRegressor(200, min_samples_leaf=5, random_state=0, n_jobs=1).fit(F[train], (final - prior)[train])
        out["learned"][held] = prior[held] + trees.predict(F[held])
    lines = [f"true prefix of the full run (dense curves, k ≥ {k_min:g}; {len(set(cell))} cells): mean absolute error in points"]
    for x in PREFIXES:
        m = share == x
        if m.any():
            lines.append(f"  prefix {x:>4.0%} {m.sum():>5} runs  " + "  ".join(
                f"{n} {np.nanmean(np.abs(v[m] - final[m])) * 100:.2f}" for n, v in out.items()))
    return lines


def report(rows: list[dict]) -> str:
    groups = np.array([datasets.family(r["dataset"]) for r in rows])
    _, data, oof = forecast.fit(rows, groups)
    preds = candidates(rows, data, oof)
    target = np.array([p.target for p in data])
    shares = np.array([p.share for p in data])
    family = np.array([p.family for p in data])
    k_full = np.array([p.k_full for p in data])
    widths = {name: interval_of(pred, target, shares, family) for name, pred in preds.items()}
    lines = [f"leave-one-family-out over {len(data)} (short run, full run, strategy) pairs from {len(rows)} cells",
             "mean absolute error in points / coverage of the 80 % interval:",
             f"{'':<26}" + "".join(f"{name:>20}" for name in preds)]
    for k_min in (10, 0):
        for lo, hi, label in BUCKETS:
            m = (shares > lo) & (shares <= hi) & (k_full >= k_min)
            if not m.any():
                continue
            cells_ = "".join(f"{np.mean(np.abs(p[m] - target[m])) * 100:>11.2f} / {np.mean(np.abs(p[m] - target[m]) <= widths[n][m] + 1e-9):>4.0%}"
                             for n, p in preds.items())
            lines.append(f"{label + f', k ≥ {k_min}':<20}{m.sum():>6}" + cells_)
    lines.append("decision at k ≥ 10 (FE known, the best forecast advised): cells, agreement, mean regret")
    for lo, hi, label in BUCKETS[1:]:
        got = decisions(rows, data, preds | {"always feature extraction": np.full(len(data), -1.0)}, lo, hi)
        lines.append(f"  {label:<16}" + "; ".join(f"{n} {c} {a:.0%} {r:.2f}p" for n, (c, a, r) in got.items()))
        (c, a, r), w, err = decision_tuned(rows, data, lo, hi)
        lines.append(f"  {'':<16}shift with its weight tuned for decisions (per held-out family, on the others) {c} {a:.0%} {r:.2f}p; "
                     f"median weight {w:.2f}, mean absolute error {err:.2f}")
    got, (trained, dropped, winners) = halving(rows, data, preds["forecaster"], widths["forecaster"])
    lines.append(f"successive halving at k ≥ 10 (the forecaster; round one at share 1/30, survivors at 1/10): dropped "
                 f"{dropped} of {trained} trained strategies, {winners} of them the cell's winner")
    lines.append("  " + "; ".join(f"{n} {c} {a:.0%} {r:.2f}p cost {x:.2f}" for n, (c, a, r, x) in got.items())
                 + " (decisions, agreement, mean regret, probe cost in full runs)")
    means = seed_mean_targets(rows, data)
    lines.append("against the long run's mean over the seeds of its configuration (less test-set and training noise "
                 "in the truth): mean absolute error in points, k ≥ 10")
    for lo, hi, label in BUCKETS:
        m = (shares > lo) & (shares <= hi) & (k_full >= 10) & ~np.isnan(means)
        if m.any():
            lines.append(f"  {label:<16}{m.sum():>6}" + "".join(f"  {n} {np.mean(np.abs(p[m] - means[m])) * 100:.2f}"
                                                              for n, p in preds.items()))
    n, spread = seed_spread(rows)
    lines.append(f"seed-to-seed spread of a trained strategy's accuracy at k ≥ 10 ({n} pairs of seeds): {spread:.2f} points "
                 "(the error of a perfect forecast of a configuration's mean)")
    return "\n".join(lines + prefix_forecasts(rows, groups))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, nargs="+", default=list(cells.FILES))
    print(report(cells.read(parser.parse_args().results, required=True)))


if __name__ == "__main__":
    main()
