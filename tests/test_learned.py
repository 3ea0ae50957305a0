"""The learned model: fit on the committed meta-dataset of real runs, save, load, predict, and decide with it."""


import numpy as np
import pytest

from advisor.units import EpochEquivalents
from advisor.model import cells, learned
from advisor.advice import decide
from advisor import rules
from advisor.advice.plan import Plan
from advisor.registry import STRATEGY_NAMES
from advisor.schemas import Budget, DataFacts, Hardware, Throughput

ROWS = cells.read()
pytestmark = pytest.mark.skipif(len({r["dataset"] for r in ROWS}) < 3, reason="meta-dataset too small")
CPU = Hardware(device="cpu", name="test CPU", cpu_threads=2, gpu_available=False, precision="fp32")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X, Y, n_classes, groups = learned.table(ROWS)
    models = {"default": learned.fit(X, Y, groups)[0]}
    path = learned.save(models, {"name": "test", "cells": len(ROWS)}, tmp_path_factory.mktemp("m") / "m.joblib")
    return X, Y, models, path


def test_table_has_one_row_per_cell_and_a_column_per_strategy():
    X, Y, n_classes, groups = learned.table(ROWS)
    assert X.shape == (len(ROWS), len(learned.FEATURES)) and Y.shape == (len(ROWS), 4)
    acc = learned.to_accuracy(Y, n_classes[:, None])
    assert np.allclose(acc[:, 0], [r["runs"]["feature_extraction"]["val_accuracy"] for r in ROWS])


@pytest.mark.slow
def test_fit_save_load_predict_round_trip(fitted):
    X, Y, models, path = fitted
    loaded, card = learned.load(path)
    assert card["cells"] == len(ROWS)
    assert np.allclose(loaded["default"].predict(X), models["default"].predict(X))
    assert np.all(models["default"].half_width_ >= 0)
    # in-sample fit is better than predicting the mean
    assert np.mean((models["default"].predict(X) - Y) ** 2) < np.mean((Y - Y.mean(0)) ** 2)


def test_unfitted_model_refuses_to_predict():
    with pytest.raises(RuntimeError, match="not fitted"):
        learned.StrategyModel().predict(np.zeros((1, len(learned.FEATURES))))


def test_decide_with_the_model_ranks_by_predicted_accuracy(fitted):
    _, _, models, path = fitted
    loaded, card = learned.load(path)
    row = ROWS[0]
    facts = DataFacts(n_images=row["n_images"], n_classes=row["n_classes"], resolution=32, channels=row["channels"],
                      similarity=row["similarity"]["score"])
    tp = Throughput(resolution=32, batch_size=32, images_per_second={s: 100.0 for s in STRATEGY_NAMES}, detail="t", seconds=0)
    seconds = 3 * row["n_images"] / 100  # 3 epoch-equivalents at the given 100 img/s: inside the fitted region
    rec = decide.decide(Plan(facts, Budget(seconds=seconds, given_as="3 epochs"), CPU, rules.load(), tp,
                             predictor=learned.LearnedPredictor(loaded, card, row["similarity"])))
    feasible = [e for e in rec.estimates if e.feasible]
    assert all(e.accuracy.source == "model" and e.accuracy.low <= e.accuracy.value <= e.accuracy.high for e in rec.estimates)
    assert rec.strategy == max(feasible, key=lambda e: e.accuracy.value).strategy
    assert rec.confidence.source == "model"  # the learned model ranked the strategies
    numbers_only = learned.LearnedPredictor(loaded, card).predict(facts, EpochEquivalents(3.0))
    assert set(numbers_only) == set(STRATEGY_NAMES)


def test_more_budget_or_more_images_never_predicts_lower(fitted):
    _, _, models, _ = fitted
    model = models["default"]
    for k_first in (0.3, 3.0):
        budgets = [k_first * 2**i for i in range(6)]
        by_budget = model.predict(np.array([learned.feature_row(500, 10, 1, 0.4, EpochEquivalents(k)) for k in budgets]))
        assert np.all(np.diff(by_budget, axis=0) >= -1e-9)
    by_size = model.predict(np.array([learned.feature_row(10 * n, 10, 3, 0.6, EpochEquivalents(3.0)) for n in (5, 20, 100, 500, 2000)]))
    assert np.all(np.diff(by_size, axis=0) >= -1e-9)


def test_feature_extraction_never_predicts_lower_for_data_closer_to_imagenet(fitted):
    model = fitted[2]["default"]
    fe = STRATEGY_NAMES.index("feature_extraction")
    for n, classes, channels, k in ((100, 10, 3, 1.0), (2000, 10, 1, 10.0), (50, 5, 3, 0.3)):
        rows = [learned.feature_row(n, classes, channels, s, EpochEquivalents(k)) for s in np.linspace(0.05, 0.95, 10)]
        assert np.all(np.diff(model.predict(np.array(rows))[:, fe]) >= -1e-9)


def test_the_edge_over_scratch_is_measured_on_cells_and_on_the_model(fitted):
    def row(n: int, fine_tune: float, scratch: float) -> dict:
        accs = {"feature_extraction": 0.9, "fine_tune": fine_tune, "retrain": 0.5, "scratch": scratch}
        return {"dataset": "a", "k": 1.0, "seed": 0, "per_class": n, "runs": {s: {"val_accuracy": a} for s, a in accs.items()}}

    # scratch gains 1 point per 2 images; fine-tune 1 per image: its edge grows, the fixed ones' edges fall
    toy = [row(n, 0.3 + n / 100, 0.3 + n / 200) for n in (5, 10, 20, 40)]
    assert learned.edge_support(toy) == {"feature_extraction": 1.0, "fine_tune": 0.0, "retrain": 1.0}
    assert learned.edge_support(toy[:2]) == {s: pytest.approx(float("nan"), nan_ok=True) for s in learned.TRANSFER}
    real = learned.edge_support(ROWS)
    grows = learned.edge_growth(fitted[2]["default"])
    assert set(real) == set(grows) == set(learned.TRANSFER)
    assert all(0 <= v <= 1 for v in (*real.values(), *grows.values()))


def test_predictions_never_saturate_and_intervals_never_collapse(fitted):
    _, _, models, path = fitted
    loaded, card = learned.load(path)
    for n_images, k in ((20_000, 30.0), (1_000_000, 5000.0), (20, 0.01)):
        facts = DataFacts(n_images=n_images, n_classes=10, resolution=32, channels=1, similarity=0.4)
        for q in learned.LearnedPredictor(loaded, card).predict(facts, EpochEquivalents(k)).values():
            assert q.value < 1.0 and round(q.value, 3) < 1.0  # never a 100.0 % point prediction
            assert q.high - q.low > 0.005 and q.low <= q.value <= q.high


def test_queries_outside_the_fitted_region_are_flagged_and_the_rules_decide(fitted):
    _, _, models, path = fitted
    loaded, card = learned.load(path)
    predictor = learned.LearnedPredictor(loaded, card)
    facts = DataFacts(n_images=2000, n_classes=10, resolution=32, channels=1, similarity=0.4)
    inside = predictor.predict(facts, EpochEquivalents(3.0))
    outside = predictor.predict(facts, EpochEquivalents(1e5))  # far past any budget in the meta-dataset
    assert {q.domain for q in inside.values()} == {"inside"}
    assert {q.domain for q in outside.values()} == {"outside"}
    assert "budget in epoch-equivalents 1e+05 (fitted 0.3–" in outside["retrain"].detail
    width = lambda q: q.high - q.low  # noqa: E731
    assert width(outside["fine_tune"]) > width(predictor.predict(facts, EpochEquivalents(30.0))["fine_tune"])
    tp = Throughput(resolution=32, batch_size=32, images_per_second={s: 100.0 for s in STRATEGY_NAMES}, detail="t", seconds=0)
    rec = decide.decide(Plan(facts, Budget(seconds=2_000_000 * 3600, given_as="2000000 hours"), CPU, rules.load(), tp, predictor=predictor))
    assert rec.confidence.source == "rule" and any(e.accuracy.domain == "outside" for e in rec.estimates)
    assert any(w.startswith("Learned model: outside") for w in rec.warnings)


@pytest.mark.slow
def test_the_gain_model_learns_gains_over_fe_and_the_predictor_builds_on_measured_fe(fitted):
    XG, D = learned.gain_table(ROWS)
    groups = np.array([learned.datasets.family(r["dataset"]) for r in ROWS])
    gain, oof = learned.fit_gain(XG, D, groups)
    assert XG.shape == (len(ROWS), len(learned.GAIN_FEATURES)) and D.shape == (len(ROWS), 3)
    ok = ~np.isnan(oof).any(axis=1)
    # out of family it still ranks: cells where a trained strategy really gains ≥ 10 points get a higher predicted gain
    big = D[ok].max(1) > 0.1
    assert oof[ok][big].max(1).mean() > oof[ok][~big].max(1).mean()
    models = {"default": fitted[2]["default"], "gain": gain}
    facts = DataFacts(n_images=1000, n_classes=10, resolution=28, channels=1, similarity=0.35)
    from advisor.schemas import Quantity
    for value in (0.6, 0.9):
        fe = Quantity(value=value, source="measured", low=value - 0.02, high=value + 0.02)
        p = learned.LearnedPredictor(models, {"name": "t"}, fe=fe)
        out = p.predict(facts, EpochEquivalents(30))
        assert out["feature_extraction"] is fe
        norm_fe = learned.to_normalised(value, 10)
        for j, s in enumerate(learned.GAINED):
            g = gain.predict([learned.gain_row(1000, 10, 1, 0.35, EpochEquivalents(30), norm_fe, gain.typical_ratios_)])[0][j]
            expected = np.clip(value + g, learned.to_accuracy(learned.EPS, 10), learned.to_accuracy(1 - learned.EPS, 10))
            assert out[s].value == pytest.approx(float(expected), abs=1e-3)
            assert out[s].low < out[s].value < out[s].high
        assert 0.0 <= p.confidence("fine_tune", "feature_extraction") <= 1.0
        assert "typical" in out["scratch"].detail  # no speed measured: the assumed ratios are said
    # scratch's own speed is an input: the same budget at 8× all-layer speed buys more scratch epochs
    fe = Quantity(value=0.6, source="measured", low=0.58, high=0.62)
    p = learned.LearnedPredictor(models, {"name": "t"}, fe=fe)
    slow, fast = (p.predict(facts, EpochEquivalents(30), {"fine_tune": 1.0, "scratch": r})["scratch"] for r in (0.25, 8.0))
    assert fast.value != slow.value and "typical" not in fast.detail


@pytest.mark.slow
def test_contributed_cells_join_the_gain_model_for_the_strategy_they_trained():
    """A user's finished run (one strategy, FE measured) teaches the gain model that strategy's gain there."""
    from advisor.schemas import Quantity

    held = "emoji" if any(learned.datasets.family(r["dataset"]) == "emoji" for r in ROWS) else learned.datasets.family(ROWS[0]["dataset"])
    inside = [r for r in ROWS if learned.datasets.family(r["dataset"]) != held]
    out = [r for r in ROWS if learned.datasets.family(r["dataset"]) == held]
    contributed = [cells.ContributedCell(
        schema="advisor-contributed-cell/1", key=f"c{i}", dataset="user-abc", n_images=r["n_images"], n_classes=r["n_classes"],
        resolution=r["resolution"], channels=r["channels"], similarity=r["similarity"]["score"], k=r["k"],
        runs={"scratch": r["runs"]["scratch"]}, speed_ratios=r["speed_ratios"], train_images=r["n_images"], val_images=100,
        fe_measured=Quantity(value=r["runs"]["feature_extraction"]["val_accuracy"], source="measured"),
        pixel_measured=cells.pixel_baseline(r), device="cpu", device_name="test", time="2026-12-02T00:00:00") for i, r in enumerate(out)]
    ratios = {s: float(np.median([r["speed_ratios"][s] for r in inside])) for s in learned.RATIO_STRATEGIES}
    XC, DC, groups_c = learned.contributed_gain_table(contributed, ratios)
    XO, DO = learned.gain_table(out)
    assert len(XC) == len(out) and np.allclose(XC, XO, equal_nan=True) and np.isnan(DC[:, :2]).all() and np.allclose(DC[:, 2], DO[:, 2])
    XI, DI = learned.gain_table(inside)
    groups = np.array([learned.datasets.family(r["dataset"]) for r in inside])
    without = learned.GainModel().fit(XI, DI)
    with_them, _ = learned.fit_gain(np.vstack([XI, XC]), np.vstack([DI, DC]), np.concatenate([groups, groups_c]))
    # only scratch learnt from them: fine-tune's and retrain's trees saw the same rows
    assert np.allclose(with_them.predict(XO)[:, :2], without.predict(XO)[:, :2])
    err = [np.abs(m.predict(XO)[:, 2] - DO[:, 2]).mean() for m in (without, with_them)]
    assert err[1] < err[0]
    assert np.isfinite(with_them.half_width_).all()


@pytest.mark.slow
def test_without_the_pixel_baseline_the_gain_model_uses_trees_fitted_without_it():
    """Numbers-only advice has no pixel baseline: its rows go to the trees that never read it, with their own
    intervals; a measured baseline goes to the trees that do, and changes the predicted gains."""
    from advisor.schemas import Quantity

    XG, D = learned.gain_table(ROWS)
    col = learned.GAIN_FEATURES.index(learned.GainModel.OPTIONAL)
    assert np.isfinite(XG[:, col]).mean() > 0.9  # the committed cells carry it
    groups = np.array([learned.datasets.family(r["dataset"]) for r in ROWS])
    gain, _ = learned.fit_gain(XG, D, groups)
    row = XG[0].copy()
    blank = row.copy()
    blank[col] = np.nan
    assert gain.uses_pixels(row) and not gain.uses_pixels(blank)
    assert np.allclose(gain.predict([blank])[0], [e.predict(np.delete(row, col)[None])[0] for e in gain.fallback_])
    assert np.isfinite(gain.half_widths(row)).all() and np.isfinite(gain.half_widths(blank)).all()
    assert gain.domain(blank)[0] in ("inside", "near", "outside")  # a missing input says nothing of the region
    lows, highs = (gain.predict([np.where(np.arange(len(row)) == col, v, row)])[0] for v in (0.0, 1.0))
    assert not np.allclose(lows, highs)  # the trees read it
    facts = DataFacts(n_images=1000, n_classes=10, resolution=28, channels=1, similarity=0.35)
    fe = Quantity(value=0.7, source="measured", low=0.68, high=0.72)
    models = {"default": learned.fit(*learned.table(ROWS)[:2], groups)[0], "gain": gain}
    without = learned.LearnedPredictor(models, {"name": "t"}, fe=fe).predict(facts, EpochEquivalents(30))
    assert "pixel baseline was not measured" in without["scratch"].detail
    pixels = Quantity(value=0.9, source="measured", low=0.88, high=0.92)
    measured = learned.LearnedPredictor(models, {"name": "t"}, fe=fe, pixels=pixels).predict(facts, EpochEquivalents(30))
    assert "pixel baseline" not in measured["scratch"].detail


def test_where_the_rules_decide_from_a_measured_fe_the_confidence_is_the_gain_models():
    """Outside the model's region with FE measured, the rules may decide; the confidence shown is then the gain
    model's probability for the rules' choice against the runner-up (intervals widened), not the rules' softmax,
    which leave one family out said 70–90 % there for a choice right 1 time in 19 (README)."""
    from advisor.schemas import Quantity

    bundle = learned.load()
    assert bundle is not None and "gain" in bundle[0]
    models, card = bundle
    tp = Throughput(resolution=32, batch_size=32, images_per_second={s: 100.0 for s in STRATEGY_NAMES}, detail="t", seconds=0)
    facts = DataFacts(n_images=2000, n_classes=10, resolution=32, channels=1, similarity=0.4)
    by_rules = 0
    for fe_value in (0.5, 0.9):
        fe = Quantity(value=fe_value, source="measured", low=fe_value - 0.02, high=fe_value + 0.02)
        predictor = learned.LearnedPredictor(models, card, fe=fe)
        rec = decide.decide(Plan(facts, Budget(seconds=10_000 * 3600, given_as="10000 hours"), CPU, rules.load(), tp, fe)
                            .with_predictor(predictor))
        assert rec.confidence.source == "model"
        if rec.decided_by.startswith("rules"):
            by_rules += 1
            assert "the rules chose" in rec.confidence.detail
            assert rec.confidence.value == pytest.approx(predictor.confidence(rec.strategy, rec.runner_up), abs=1e-3)
    assert by_rules  # 10,000 hours is far outside: the rules decided at least once
    # without a measured FE nothing anchors the model there: the rules' own confidence
    rec = decide.decide(Plan(facts, Budget(seconds=10_000 * 3600, given_as="10000 hours"), CPU, rules.load(), tp,
                             predictor=learned.LearnedPredictor(models, card)))
    assert rec.decided_by.startswith("rules") and rec.confidence.source == "rule"
