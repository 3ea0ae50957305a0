"""The probe's forecasts: fitted on real pairs of cells, a diverging run stops and is judged not viable."""

import dataclasses

import numpy as np
import pytest

from advisor import api, probing, registry

from advisor.model import cells, forecast, learned

from advisor.data import datasets

from advisor.nets import engine
from advisor.advice.decide import decide
from advisor.hardware import detect
from advisor.schemas import ProbeRun
from advisor.units import EpochEquivalents

ROWS = cells.read()


@pytest.fixture(scope="module")
def fitted():
    groups = np.array([datasets.family(r["dataset"]) for r in ROWS])
    if len(np.unique(groups)) < 3:
        pytest.skip("meta-dataset too small")
    return forecast.fit(ROWS, groups)


@pytest.mark.slow
def test_the_forecaster_beats_the_short_run_as_is_and_the_prior_on_held_out_families(fitted):
    fc, pairs, oof = fitted
    target = np.array([p.target for p in pairs])
    mae = np.mean(np.abs(oof - target))
    assert mae < np.mean(np.abs(np.array([p.observed for p in pairs]) - target))  # a short run is not the full run
    assert mae <= np.mean(np.abs(np.array([p.prior_full for p in pairs]) - target))  # the short run adds something
    # a longer short run says more about the full one; the weight stays a share
    assert 0 <= fc.weight(0.01) < fc.weight(0.1) < fc.weight(0.5) <= 1
    assert all(w > 0 for w in fc.half_width_) and fc.half_width(0.01) >= fc.half_width(0.5)


@pytest.mark.slow
def test_a_diverging_run_stops_and_its_strategy_is_not_viable(digits_dir):
    from advisor.data import images
    from advisor.data.scan import scan

    data = scan(digits_dir, progress=False)
    items = images.stratified(data.split("train"), 15)
    x, y = images.load(items, 16)
    hw = detect("cpu")
    wild = dataclasses.replace(registry.resolve("scratch", 16, len(x)), lr=1e30, head_lr=1e30)
    run = engine.run(wild, (x, y), (x, y), len(data.classes), hw, epochs=20)
    assert run.diverged and run.steps < 20 * len(x) // 32  # it stopped at the first non-finite loss
    assert forecast.viable(run.val_accuracy, len(data.classes), len(x), run.diverged) == "its training loss diverged (not a number)"
    assert "within noise of chance" in forecast.viable(0.11, 10, 300, False)
    assert forecast.viable(0.9, 10, 300, False) is None


def test_a_recommendation_whose_strategy_is_not_viable_is_disagreed_with():
    plan = api.plan(n_images=2000, n_classes=10, similarity=0.5, gpu_hours=1, device_name="a100")
    rec = decide(plan)
    pred = learned.LearnedPredictor(*learned.load())
    k = rec.estimate("retrain").epochs_in_budget.value
    base = dict(steps=50, epochs=2.0, seconds=5.0, images_per_second=100.0, curve=[(5.0, 0.5)], reach=2.0)
    runs = [ProbeRun(strategy="feature_extraction", val_accuracy=0.8, steps=1, epochs=1, seconds=1, images_per_second=500, curve=[])]
    for s in ("fine_tune", "retrain", "scratch"):
        dead = s == rec.strategy
        runs.append(ProbeRun(strategy=s, val_accuracy=0.1 if dead else 0.7, viable=not dead, **base))
    full = pred.normalised(rec.facts, EpochEquivalents(k))
    runs = [probing._forecast(pred, plan, r, 400, 200, k, full) for r in runs]
    for r in runs[1:]:
        if r.viable:  # a forecast at the full budget, from the share of it the run stands for
            assert r.forecast.source == "forecast" and r.forecast.low <= r.forecast.value <= r.forecast.high
            assert r.share == pytest.approx(2.0 * 400 / (k * 2000), rel=1e-3)
    ranking, agrees, verdict = probing._forecast_verdict(rec, runs)
    if rec.strategy != "feature_extraction":
        assert agrees is False and "not viable" in verdict and ranking[-1] == rec.strategy


@pytest.mark.slow
def test_the_halving_benchmark_drops_only_what_its_intervals_exclude(fitted):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_forecast", Path(__file__).parents[1] / "benchmarks" / "forecast.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _, pairs, oof = fitted
    target, shares = np.array([p.target for p in pairs]), np.array([p.share for p in pairs])
    width = bench.interval_of(oof, target, shares, np.array([p.family for p in pairs]))
    # intervals too wide to exclude anything: halving is running every strategy to the second round's share
    wide, (_, none, _) = bench.halving(ROWS, pairs, oof, np.full(len(pairs), np.inf))
    assert none == 0 and wide["halving"][:3] == wide["all at round two's share"][:3]
    # with the forecaster's intervals some are dropped, never more than were trained, and the cost counts the survivors
    got, (trained, dropped, winners) = bench.halving(ROWS, pairs, oof, width)
    assert 0 <= winners <= dropped <= trained and dropped > 0 and got["halving"][0] == got["all at round one's share"][0]
    assert got["all at round one's share"][3] < got["halving"][3] <= got["all at round one's share"][3] + got["all at round two's share"][3]


def test_runs_too_short_to_move_their_forecasts_cannot_check_the_ranking():
    plan = api.plan(n_images=2000, n_classes=10, similarity=0.5, gpu_hours=1, device_name="a100")
    rec = decide(plan)
    pred = learned.LearnedPredictor(*learned.load())
    k = rec.estimate("retrain").epochs_in_budget.value
    full = pred.normalised(rec.facts, EpochEquivalents(k))
    need = pred.forecaster.share_for(probing.MIN_WEIGHT)
    fe = ProbeRun(strategy="feature_extraction", val_accuracy=0.8, steps=1, epochs=1, seconds=1, images_per_second=500, curve=[])
    verdicts = {}
    for share in (need / 5, min(0.5, need * 20)):
        reach = share * k * 2000 / 400  # epoch-equivalents of the 400 probe images that make this share
        runs = [fe] + [ProbeRun(strategy=s, val_accuracy=0.7, steps=50, epochs=reach, seconds=5.0, images_per_second=100.0,
                                curve=[(5.0, 0.5)], reach=reach) for s in ("fine_tune", "retrain", "scratch")]
        runs = [probing._forecast(pred, plan, r, 400, 200, k, full) for r in runs]
        assert all(r.share == pytest.approx(share, rel=1e-3) for r in runs[1:])
        verdicts[share] = probing._forecast_verdict(rec, runs, pred.forecaster)
    (_, short_agrees, short_verdict), (_, long_agrees, long_verdict) = verdicts.values()
    # below the share where a run's surprise counts, the forecasts are the model's: nothing to agree or disagree with
    assert short_agrees is None and "cannot check the ranking" in short_verdict and "every strategy it ran trains" in short_verdict
    assert long_agrees in (True, False) and "cannot check" not in long_verdict
