"""Honest evaluation of the advice: leave-one-family-out over the meta-dataset.

For every cell of a held-out data-set family, each method advises a strategy without having seen that family;
we compare with the strategy that really won the cell. Printed per method: agreement with the winner (a tie
counts as agreement), mean and worst accuracy regret in points (best accuracy − accuracy of the advised
strategy), overall and at k ≥ 3 and k ≥ 10 epoch-equivalents (the region users with GPU-hours are in),
and for the learned models the coverage of their prediction intervals.

Feature extraction "measured": advisor measures FE on the user's own images by cross-validation before it
decides. Here that measurement is the cell's FE accuracy plus the sampling error such a cross-validation has
(normal, SE = √(p(1 − p)/m) for m = the images advisor would use, at most FE_IMAGES_CPU; seeded per cell), so
the input is no better than advisor's own.

Beside them, a reference for the noise (:func:`seed_ceiling`): each cell advised with its other seeds' winner.

Methods: gain model + rules (FE measured, the gain over it predicted, the rules exclude: what `advisor
recommend` does), the same after probe calibration (the probe is the cell of the same data set, size and
seed with at most 1/10 of the budget), the absolute model (+ rules; without FE measured: what advisor did
before), rules only, and the baselines "always fine-tune", "always retrain", "always feature extraction" and
the 2×2 rule (dataset size × domain similarity).

Fine-tune is scored at the depth the rules advise for each cell (advisor.model.cells.as_advised), as `advisor
recommend` trains it, where the cell measured that variant; ``--registry-depth`` scores the 4-stage run instead.

    python benchmarks/evaluate.py [--results FILE ...] [--registry-depth]   # default: the CPU and GPU cells
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
from scipy import optimize

from advisor.measure import calibration, fe_accuracy

from advisor.model import cells, learned

from advisor.data import datasets

from advisor import rules, store
from advisor.advice.decide import decide
from advisor.advice.plan import Plan
from advisor.registry import STRATEGY_NAMES
from advisor.schemas import Hardware, Quantity
from advisor.units import EpochEquivalents, accuracy_interval, accuracy_se, speed_ratios


REGIONS = {  # name "a / b": True puts a cell in a
    "greyscale / colour": lambda r: r["channels"] == 1,
    "≤ 64 px / > 64 px": lambda r: r["resolution"] <= 64,
    "k ≤ 30 / k > 30": lambda r: r["k"] <= 30,
    "CPU / GPU": lambda r: r.get("device", "cpu") == "cpu",
}
CELL_HW = Hardware(device="cpu", name="the cell's device", cpu_threads=2, gpu_available=False, precision="fp32")


def proxy_probe(index, row, predictor, X, Y) -> dict | None:
    """A probe stands in as the cell of the same data set, size and seed with the largest budget ≤ 1/10 of this
    cell's (k=0.3 for k=3, k=1 for k=10, k=3 for k=30; advisor's probe spends 5 %): the predictor's errors
    there, as a calibration record. Its accuracies come from the same test images, a leak that makes this row
    optimistic (feature extraction in particular reaches the same accuracy at every budget)."""
    found = [(k, j) for (d, n, k, seed), j in index.items()
             if (d, n, seed) == (row["dataset"], row["per_class"], row["seed"]) and k <= row["k"] / 10]
    if not found:
        return None
    k_probe, j = max(found)
    facts, _, tp = cells.inputs(row)
    errors = Y[j] - predictor.normalised(facts, EpochEquivalents(k_probe), speed_ratios(tp.images_per_second))
    reach = {s: None if s == "feature_extraction" else k_probe for s in STRATEGY_NAMES}
    return calibration.probe_record(dict(zip(STRATEGY_NAMES, errors)), reach, row["test_images"], row["dataset"], facts)


def measured_fe(row: dict) -> Quantity:
    """FE as advisor would measure it on the cell's training images: the cell's FE accuracy plus the sampling
    error of a cross-validation on the images advisor would use (at most fe_accuracy.IMAGES_CPU), seeded by the cell."""
    p = row["runs"]["feature_extraction"]["val_accuracy"]
    m = min(row["n_images"], fe_accuracy.IMAGES_CPU)
    rng = np.random.default_rng(zlib.crc32(row["key"].encode()))
    value = float(np.clip(p + rng.normal() * accuracy_se(p, m), 0, 1))
    low, high = accuracy_interval(value, m)
    return Quantity(value=value, source="measured", low=low, high=high,
                    detail=f"simulated cross-validation on {m} images")


def two_by_two(row: dict, book: rules.RuleBook) -> str:
    small = row["per_class"] < book.thresholds["few_per_class"]
    similar = row["similarity"]["score"] >= book.thresholds["similar"]
    return {(True, True): "feature_extraction", (True, False): "fine_tune",
            (False, True): "fine_tune", (False, False): "retrain"}[(small, similar)]


def regrets(choices: list[str], accuracies: list[dict[str, float] | None]) -> tuple[list[bool], list[float]]:
    """Per cell with accuracies (None: skipped): whether the choice is the best, and its regret in points."""
    agree, regret = [], []
    for choice, acc in zip(choices, accuracies):
        if acc is not None:
            best = max(acc.values())
            agree.append(acc[choice] >= best - 1e-9)
            regret.append((best - acc[choice]) * 100)
    return agree, regret


def accuracies(row: dict) -> dict[str, float]:
    return {s: row["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES}


def score(choices: list[str], rows: list[dict]) -> tuple[float, float, float]:
    """Agreement, mean and worst regret (points) against each cell's own accuracies."""
    agree, regret = regrets(choices, [accuracies(r) for r in rows])
    return float(np.mean(agree)), float(np.mean(regret)), float(np.max(regret))


def seed_means(rows: list[dict]) -> list[dict[str, float] | None]:
    """Each cell's strategies' accuracies averaged over every seed of its configuration (the cell itself
    included; :func:`advisor.model.cells.configuration`); None where the configuration has one seed."""
    groups = cells.by_configuration(rows)
    return [None if len(same := groups[cells.configuration(r)]) < 2 else
            {s: float(np.mean([o["runs"][s]["val_accuracy"] for o in same])) for s in STRATEGY_NAMES} for r in rows]


def score_on_means(choices: list[str], means: list[dict[str, float] | None]) -> tuple[float, float, int]:
    """Agreement and mean regret (points) against the seed-averaged accuracies, over the cells that have them."""
    agree, regret = regrets(choices, means)
    return (float(np.mean(agree)), float(np.mean(regret)), len(agree)) if agree else (float("nan"), float("nan"), 0)


METHODS = ("gain model + rules", "gain model + rules + probe calibration", "absolute model + rules", "absolute model",
           "rules only", "always fine-tune", "always retrain", "always feature extraction", "2×2 rule")
PRODUCT = "gain model + rules"  # what `advisor recommend` does


def choose(rows: list[dict], groups: np.ndarray, book: rules.RuleBook) -> tuple[list[dict], dict[str, list[str]], list, dict]:
    """Every method's choice for every cell, each family held out in turn; (where, covered) per interval; and the
    stated confidence per cell of the product and of the rules alone: (value, source, runner-up or None, the
    rules' score gap to it or None)."""
    X, Y, n_classes, _ = learned.table(rows)
    fe_in = [measured_fe(r) for r in rows]
    XG, D = learned.gain_table(rows, np.array([q.value for q in fe_in]))
    _, D_true = learned.gain_table(rows)
    choices: dict[str, list[str]] = {m: [] for m in METHODS}
    index = {(r["dataset"], r["per_class"], r["k"], r["seed"]): i for i, r in enumerate(rows)}
    covered, ordered, stated = [], [], {PRODUCT: [], "rules only": []}
    for g in np.unique(groups):
        held = np.flatnonzero(groups == g)
        train = groups != g
        if train.sum() < 5 or len(np.unique(groups[train])) < 2:
            continue
        model, _ = learned.fit(X[train], Y[train], groups[train])
        gain, _ = learned.fit_gain(learned.gain_table([r for r, t in zip(rows, train) if t])[0], D_true[train], groups[train])
        models = {"default": model, "gain": gain}
        card = {"name": f"lofo-without-{g}", "cells": int(train.sum())}
        for i in held:  # intervals as advisor shows them, FE measured: widened with the distance out
            row = rows[i]
            facts, budget, tp = cells.inputs(row)
            k = EpochEquivalents(row["k"])
            pixels = cells.pixel_baseline(row)
            predictor = learned.LearnedPredictor(models, card, row["similarity"], fe=fe_in[i], pixels=pixels)
            shown = predictor.predict(facts, k, speed_ratios(tp.images_per_second))
            for s in STRATEGY_NAMES:
                q, truth = shown[s], row["runs"][s]["val_accuracy"]
                if q.low is not None:
                    covered.append((q.domain or "inside", bool(q.low - 1e-9 <= truth <= q.high + 1e-9)))
            ordered.append(row)
            absolute = learned.LearnedPredictor({"default": model}, card, row["similarity"])
            plan = Plan(facts, budget, CELL_HW, book, tp, fe_in[i])
            advice = decide(plan.with_predictor(predictor))
            choices["gain model + rules"].append(advice.strategy)
            stated[PRODUCT].append((advice.confidence.value, advice.confidence.source, advice.runner_up, None))
            record = proxy_probe(index, row, predictor, X, Y)
            calibrated = learned.LearnedPredictor(models, card, row["similarity"], [record] if record else None, row["dataset"],
                                                  fe=fe_in[i], pixels=pixels)
            choices["gain model + rules + probe calibration"].append(decide(plan.with_predictor(calibrated)).strategy)
            choices["absolute model + rules"].append(decide(Plan(facts, budget, CELL_HW, book, tp, predictor=absolute)).strategy)
            choices["absolute model"].append(STRATEGY_NAMES[int(np.argmax(absolute.normalised(facts, k)))])
            by_rules = decide(plan)
            choices["rules only"].append(by_rules.strategy)
            scores = {e.strategy: e.score.value for e in by_rules.estimates}
            stated["rules only"].append((by_rules.confidence.value, by_rules.confidence.source, by_rules.runner_up,
                                         scores[by_rules.strategy] - scores[by_rules.runner_up] if by_rules.runner_up else None))
            choices["always fine-tune"].append("fine_tune")
            choices["always retrain"].append("retrain")
            choices["always feature extraction"].append("feature_extraction")
            choices["2×2 rule"].append(two_by_two(row, book))
    return ordered, choices, covered, stated


def beat(acc: dict[str, float], chosen: str, runner_up: str) -> float:
    """1 if the chosen strategy beat the runner-up, ½ for a tie, else 0."""
    return 1.0 if acc[chosen] > acc[runner_up] else 0.5 if acc[chosen] == acc[runner_up] else 0.0


def rule_temperature(stated: list, choices: list[str], truths: list[dict[str, float] | None]) -> tuple[float, int]:
    """The temperature at which the logistic of the rules' score gap best predicts (maximum likelihood) whether
    their choice beat the runner-up (a tie counts half), over the cells with a runner-up and seed means; and how
    many cells that is. rules/default.toml's ``decision.temperature`` is this, rounded."""
    g, y = [], []
    for (_, _, r, gap), c, acc in zip(stated, choices, truths):
        if gap is not None and acc is not None:
            g.append(gap)
            y.append(beat(acc, c, r))
    g, y = np.array(g), np.array(y)

    def loss(temperature: float) -> float:
        p = np.clip(1 / (1 + np.exp(-g / temperature)), 1e-6, 1 - 1e-6)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    return float(optimize.minimize_scalar(loss, bounds=(0.05, 1e3), method="bounded").x), len(g)


CONFIDENCE_BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def reliability(stated: list, choices: list[str], truths: list[dict[str, float] | None]) -> list[str]:
    """How often the advised strategy really beat the runner-up it was compared with (a tie counts half), per
    source and bin of the stated confidence: a confidence of 80 % should be right about 80 % of the time."""
    lines = []
    for source in sorted({s for _, s, _, _ in stated}):
        parts = []
        for lo, hi in zip(CONFIDENCE_BINS, CONFIDENCE_BINS[1:]):
            right = [beat(acc, c, r) for (value, src, r, _), c, acc in zip(stated, choices, truths)
                     if src == source and r is not None and acc is not None and lo <= value < hi + (hi == 1.0)]
            if right:
                parts.append(f"{lo:.0%}–{hi:.0%}: {np.mean(right):.0%} of {len(right)}")
        lines.append(f"  {source} ({sum(s == source for _, s, _, _ in stated)} cells): "
                     + "; ".join(parts + [f"{single} with one feasible strategy (confidence 100 %), none to compare"
                                          for single in [sum(s == source and r is None for _, s, r, _ in stated)] if single]))
    return lines


def seed_ceiling(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """A reference for the seed-to-seed noise of the winner: every cell with other seeds of the same
    configuration (data set, size, budget, resolution, device) advised with the strategy of best mean accuracy
    over those other seeds. It has seen the configuration's own outcome, which no left-out selector has, so
    what it misses is mostly noise (the draw of training images, the training run, the test images); from one
    or two other seeds it is itself a noisy estimate, so a perfect selector could do somewhat better."""
    kept, picks = [], []
    for same in cells.by_configuration(rows).values():
        for r in same:
            others = [o for o in same if o is not r]
            if others:
                kept.append(r)
                picks.append(max(STRATEGY_NAMES, key=lambda s: np.mean([o["runs"][s]["val_accuracy"] for o in others])))
    return kept, picks


def evaluate(rows: list[dict], misses: Path | None = None) -> str:
    """The evaluation's text; ``misses``: also write each cell's advice (the product's), winner and regret there."""
    book = rules.load()
    groups = np.array([datasets.family(r["dataset"]) for r in rows])
    ordered, choices, covered, stated = choose(rows, groups, book)
    ks = np.array([r["k"] for r in ordered])
    lines = [f"leave-one-family-out over {len(ordered)} cells of {len(np.unique(groups))} families "
             f"({', '.join(f'{g} {int((groups == g).sum())}' for g in np.unique(groups))}); "
             f"cells at k ≥ 3: {int((ks >= 3).sum())}, k ≥ 10: {int((ks >= 10).sum())}",
             f"{'method':<40}" + "".join(f"{'all cells' if lo == 0 else f'k ≥ {lo}':>26}" for lo in (0, 3, 10)),
             f"{'':<40}" + f"{'agree  mean  worst':>26}" * 3]
    for method, picks in choices.items():
        parts = []
        for lo in (0, 3, 10):
            m = ks >= lo
            a, mean, worst = score([c for c, keep in zip(picks, m) if keep], [r for r, keep in zip(ordered, m) if keep])
            parts.append(f"{a:>10.0%} {mean:>6.2f}p {worst:>6.1f}p")
        lines.append(f"{method:<40}" + "".join(parts))
    kept, picks = seed_ceiling(rows)
    k_kept = np.array([r["k"] for r in kept])
    parts = []
    for lo in (0, 3, 10):
        a, mean, worst = score([c for c, keep in zip(picks, k_kept >= lo) if keep], [r for r, keep in zip(kept, k_kept >= lo) if keep])
        parts.append(f"{a:>10.0%} {mean:>6.2f}p {worst:>6.1f}p")
    lines.append(f"{'(reference: other seeds’ winner)':<40}" + "".join(parts))
    lines.append(f"  the reference is scored on the {len(kept)} cells with other seeds of the same configuration "
                 f"({int((k_kept >= 3).sum())} at k ≥ 3, {int((k_kept >= 10).sum())} at k ≥ 10); it is not left out: "
                 "it shows how much of the regret is seed-to-seed noise")
    means = seed_means(ordered)
    lines.append("against each configuration's mean over its seeds (the same held-out choices; less of the test sets' "
                 "and training runs' noise in the truth):")
    for method in (PRODUCT, "absolute model + rules", "always feature extraction", "always fine-tune"):
        parts = []
        for lo in (0, 10):
            a, mean, n = score_on_means([c for c, m in zip(choices[method], ks >= lo) if m], [q for q, m in zip(means, ks >= lo) if m])
            parts.append(f"{'all' if lo == 0 else f'k ≥ {lo}'} {n} cells {a:.0%} {mean:.2f}p")
        lines.append(f"  {method:<38}" + "; ".join(parts))
    lines.append("stated confidence (by source and bin) against how often the advised strategy beat its runner-up, "
                 "over each configuration's mean over its seeds:")
    for method in (PRODUCT, "rules only"):
        lines += [f"  {method}: " + line.strip() for line in reliability(stated[method], choices[method], means)]
    temperature, n = rule_temperature(stated["rules only"], choices["rules only"], means)
    lines.append(f"  the rules' temperature that fits the {n} rule decisions with a runner-up (maximum likelihood): {temperature:.1f} "
                 f"(rules/default.toml: {book.decision.temperature:g})")
    lines.append("interval coverage (80 % intervals as shown, FE measured) by where the held-out cell lies: " + "; ".join(
        f"{w} {np.mean([c for d, c in covered if d == w]):.0%} of {sum(d == w for d, _ in covered)}"
        if any(d == w for d, _ in covered) else f"{w}: none" for w in ("inside", "near", "outside")))
    for method in (PRODUCT, "absolute model + rules", "always feature extraction"):
        lines.append(f"{method} by budget: " + "; ".join(
            "k={:g} {:.0%} {:.2f}p".format(k, *score([c for c, m in zip(choices[method], ks == k) if m],
                                                     [r for r, m in zip(ordered, ks == k) if m])[:2])
            for k in np.unique(ks)))
    lines.append("cells per budget: " + ", ".join(f"k={k:g} {int((ks == k).sum())}" for k in np.unique(ks)))
    lines.append(f"{PRODUCT} by region (cells: agreement, mean regret, worst regret):")
    for name, test in REGIONS.items():
        parts = []
        for label, keep in ((name.split(" / ")[0], True), (name.split(" / ")[1], False)):
            mask = [test(r) == keep for r in ordered]
            if any(mask):
                a, mean, worst = score([c for c, m in zip(choices[PRODUCT], mask) if m], [r for r, m in zip(ordered, mask) if m])
                parts.append(f"{label} {sum(mask)}: {a:.0%} {mean:.2f}p {worst:.2f}p")
            else:
                parts.append(f"{label} 0: no cells")
        lines.append(f"  {'; '.join(parts)}")
    for method in (PRODUCT, "always feature extraction"):
        lines.append(f"{method}: advised " + ", ".join(f"{s} {choices[method].count(s)}" for s in STRATEGY_NAMES))
    winners = [r["winner"] for r in ordered]
    lines.append("winners: " + ", ".join(f"{s} {winners.count(s)}" for s in STRATEGY_NAMES))
    if misses is not None:
        _, regret = regrets(choices[PRODUCT], [accuracies(r) for r in ordered])
        store.write_lines(misses, [{"key": r["key"], "dataset": r["dataset"], "k": r["k"], "per_class": r["per_class"],
                                    "device": r.get("device", "cpu"), "advised": c, "winner": r["winner"],
                                    "regret": round(g, 2), "accuracy": accuracies(r), "confidence": s[0], "source": s[1],
                                    "runner_up": s[2]}
                                   for r, c, g, s in zip(ordered, choices[PRODUCT], regret, stated[PRODUCT])])
    lines.append("goal (issue 19): agreement ≥ 85 %, mean regret ≤ 1.0 point overall; at k ≥ 10 a mean regret ≥ 2 points "
                 "below always feature extraction's")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, nargs="+", default=list(cells.FILES))
    parser.add_argument("--registry-depth", action="store_true",
                        help="score (and fit) fine-tune's 4-stage run in every cell, not the depth the rules advise")
    parser.add_argument("--cells-out", type=Path, help="write each held-out cell's advice, winner and regret (JSON lines)")
    args = parser.parse_args()
    rows = cells.read(args.results, required=True)
    if args.registry_depth:
        print("fine-tune at the registry's depth (4 stages) in every cell")
    else:
        rows, changed = cells.as_advised(rows, rules.load())
        print(f"fine-tune at the depth the rules advise, as advisor trains it: {changed} of {len(rows)} cells measured "
              "that variant (the others, collected before the variants, keep the 4-stage run)")
    print(evaluate(rows, args.cells_out))


if __name__ == "__main__":
    main()
