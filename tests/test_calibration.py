"""Calibration persists across runs: throughput is reused, probes correct the learned model, --show/--reset work."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import advisor
from advisor.units import EpochEquivalents
from advisor.measure import calibration, throughput, timing
from advisor.model import cells, learned
from advisor import registry, rules
from advisor.cli import main
from advisor.schemas import DataFacts, ProbeRun, Throughput
from advisor.state import MachineState

ROWS = cells.read()


@pytest.fixture
def model_state(tmp_path) -> MachineState:
    """This test's machine state: a fresh home and a model fitted on the committed meta-dataset."""
    if len({r["dataset"] for r in ROWS}) < 3:
        pytest.skip("meta-dataset too small")
    X, Y, _, groups = learned.table(ROWS)
    models = {"default": learned.fit(X, Y, groups)[0]}
    path = learned.save(models, {"name": "test-model", "cells": len(ROWS)}, tmp_path / "m.joblib")
    return MachineState(home=tmp_path / "home", model_path=path)


@pytest.mark.slow
def test_throughput_is_measured_once_per_machine(digits_dir):
    args = dict(n_images=200, n_classes=10, similarity=0.4, minutes=5, resolution=64, use_model=False)
    first = advisor.recommend(**args)
    second = advisor.recommend(**args)
    assert first.throughput.seconds > 0 and first.throughput.origin == "timed now"
    cond = first.throughput.conditions
    if cond.quiet and cond.plausible:  # recorded, then reused
        assert second.throughput.seconds == 0 and second.throughput.origin.startswith("from a record of")
        assert second.throughput.images_per_second == first.throughput.images_per_second
    elif cond.plausible:  # timed on a busy machine: recorded provisionally, reused while busy, re-timed once quiet
        if second.throughput.seconds == 0:
            assert second.throughput.origin.startswith("from a provisional record of") and "busy now" in second.throughput.origin
        else:
            assert second.throughput.origin == "timed now"  # the quick check found the machine quiet
    else:  # implausible figures are never stored, and it says why
        assert second.throughput.seconds > 0 and first.throughput.problems
    if "quick check agrees" in second.throughput.origin or "busy now" in second.throughput.origin:
        again = advisor.recommend(**args)  # checked moments ago in this process: no second quick check
        assert again.throughput.origin.endswith("in this process)")
        assert again.throughput.images_per_second == second.throughput.images_per_second
    third = advisor.recommend(**args, retime=True)
    assert third.throughput.seconds > 0 and third.throughput.origin == "timed now"


@pytest.mark.slow
def test_a_new_data_size_derives_its_batch_from_the_record_instead_of_timing_again(tmp_path):
    # folders of 18, then 19 images train at batch 18 and 19: one timing at the standard batch serves both
    state = MachineState(home=tmp_path)
    args = dict(n_classes=3, similarity=0.5, minutes=5, resolution=32, use_model=False, state=state)
    first = advisor.recommend(n_images=18, **args)
    tp = first.throughput
    assert tp.batch_size == 18 and tp.origin == "timed now" and tp.seconds > 0
    assert tp.batch_exponent is not None and -1 <= tp.batch_exponent <= 1  # batch 32 and batch 8 both timed
    assert "derived for batch 18 from batch 32" in tp.detail
    if not tp.conditions.plausible:
        return  # implausible figures are never stored
    second = advisor.recommend(n_images=19, **args)
    assert second.throughput.batch_size == 19
    if second.throughput.seconds == 0:  # reused (a provisional record is re-timed once on a quiet machine)
        ratio = (19 / 18) ** tp.batch_exponent
        for s, v in tp.images_per_second.items():
            assert second.throughput.images_per_second[s] == pytest.approx(v * ratio, rel=0.01)
    else:  # timed again only to replace a provisional record on a quiet machine, or one a quick check found far off
        assert second.throughput.origin == "timed now"


def test_figures_at_another_batch_follow_the_batch_exponent():
    tp = Throughput(resolution=64, batch_size=32, images_per_second={"retrain": 100.0, "scratch": 400.0}, detail="t",
                    seconds=1.0, batch_exponent=0.5)
    small = tp.at_batch(8)  # (8/32)^0.5 = 0.5
    assert small.images_per_second == {"retrain": 50.0, "scratch": 200.0} and small.batch_size == 8
    assert small.at_batch(32).images_per_second == tp.images_per_second
    assert tp.at_batch(32) is tp
    untimed = tp.model_copy(update={"batch_exponent": None}).at_batch(8)
    assert untimed.images_per_second == tp.images_per_second and "used as is at batch 8" in untimed.detail


@pytest.mark.slow
def test_probe_keeps_to_its_time_and_what_it_can_judge_calibrates_later_runs(digits_dir, model_state):
    result = advisor.probe(digits_dir, minutes=1, seconds=12, resolution=32, max_train=100, progress=False, state=model_state)
    one_step_each = sum(r.seconds / max(r.steps, 1) for r in result.runs)
    assert result.cost.value <= 12 + one_step_each + 1.0, result.cost  # its --seconds, within about a step a run
    judged = {r.strategy for r in result.runs if r.judged}
    assert "feature_extraction" in judged and set(result.model_errors) == judged == set(result.calibration_weights)
    weights = result.calibration_weights
    assert all(0 < w < 1 for w in weights.values())
    # feature extraction is complete in the probe; a few seconds of training are a part of the budget only
    assert all(weights["feature_extraction"] >= w for w in weights.values())
    (stored,) = calibration.probes(model_state)
    assert stored["errors"] == result.model_errors and stored["data"] == str(Path(digits_dir).resolve())
    later = advisor.recommend(digits_dir, minutes=1, state=model_state)
    k = EpochEquivalents(later.estimate("retrain").epochs_in_budget.value)
    fe = later.estimate("feature_extraction").accuracy
    fe = fe if fe.source == "measured" else None
    uncorrected = learned.LearnedPredictor(*learned.load(model_state.model_path), later.similarity, fe=fe).predict(later.facts, k)
    offsets, used = calibration.correction([stored], k, str(Path(digits_dir).resolve()))
    assert used == 1
    for s in judged - ({"feature_extraction"} if fe else set()):  # a measured FE is never corrected
        shift = later.estimate(s).accuracy.value - uncorrected[s].value
        if abs(offsets[s]) > 0.002:  # visible after rounding to 0.1 %
            assert np.sign(shift) == np.sign(offsets[s])


@pytest.mark.slow
def test_calibrate_show_and_reset():
    runner = CliRunner()
    assert "nothing recorded yet" in runner.invoke(main, ["calibrate"]).output
    rec = advisor.recommend(n_images=100, n_classes=5, similarity=0.5, minutes=1, resolution=64, use_model=False)
    state = MachineState()
    if not calibration.export(state):  # implausible figures, so not stored: store them as they are, to show them
        calibration.record_throughput(state, rec.throughput, rec.hardware, registry.DEFAULT_BACKBONE, "cnn_s@64px")
    shown = runner.invoke(main, ["calibrate", "--show"]).output
    assert "throughput" in shown and "64px" in shown
    assert "removed 1 record" in runner.invoke(main, ["calibrate", "--reset"]).output
    assert "nothing recorded yet" in runner.invoke(main, ["calibrate"]).output


def test_correction_weights_probes_by_reach_validation_size_and_data():
    probe = {"errors": {"feature_extraction": 0.2, "retrain": -0.3}, "reach": {"feature_extraction": None, "retrain": 1.0},
             "val_images": 50, "data": "/a"}
    probe["facts"] = {"n_images": 1000, "n_classes": 10, "similarity": 0.4}
    near, _ = calibration.correction([probe], EpochEquivalents(1.0), data="/a")
    far, _ = calibration.correction([probe], EpochEquivalents(10.0), data="/a")
    close = DataFacts(n_images=1500, n_classes=12, resolution=64, channels=3, similarity=0.45)
    other, used = calibration.correction([probe], EpochEquivalents(1.0), data="/b", facts=close)
    # half weight (50 validation images) against a 0.5 pseudo-probe: half of the error carries
    assert near["retrain"] == pytest.approx(-0.15) and near["feature_extraction"] == pytest.approx(0.1)
    assert abs(far["retrain"]) < abs(near["retrain"]) and far["feature_extraction"] == near["feature_extraction"]
    assert used == 1 and 0 < abs(other["feature_extraction"]) < abs(near["feature_extraction"])
    assert near["fine_tune"] == 0.0 and calibration.correction([], EpochEquivalents(3.0))[0]["retrain"] == 0.0


@pytest.mark.parametrize("change", [{"n_images": 10000}, {"n_classes": 40, "n_images": 4000}, {"similarity": 0.7}])
def test_probes_of_unrelated_data_never_move_the_advice(change):
    probe = {"errors": {"retrain": -0.3}, "reach": {"retrain": 1.0}, "val_images": 50, "data": "/a",
             "facts": {"n_images": 1000, "n_classes": 10, "similarity": 0.4}}
    unrelated = DataFacts(**{"n_images": 1000, "n_classes": 10, "resolution": 64, "channels": 3, "similarity": 0.4, **change})
    offsets, used = calibration.correction([probe], EpochEquivalents(1.0), data=None, facts=unrelated)
    assert used == 0 and offsets["retrain"] == 0.0


@pytest.mark.slow
def test_a_quiet_probes_step_times_replace_the_throughput_record(digits_dir, tmp_path):
    state = MachineState(home=tmp_path / "home")
    result = advisor.probe(digits_dir, minutes=5, steps=6, max_train=100, progress=False, state=state, use_model=False)
    planned = result.recommendation.throughput
    records = [r for r in calibration.export(state) if r.get("table") == "throughput"]
    replaced = [r for r in records if r.get("source") == "probe"]
    trained = {r.strategy: r for r in result.runs if r.step_images_per_second}
    if replaced:  # quiet: each replaced figure is the probe's own, at the planned batch and resolution
        (record,) = replaced
        assert "replace" in result.throughput_record and record["changes"]
        for s, (timed, probed) in record["changes"].items():
            assert timed == planned.images_per_second[s] and probed == trained[s].step_images_per_second
            assert trained[s].batch_size == planned.batch_size
            assert trained[s].resolution == result.recommendation.estimate(s).settings.resolution  # scratch: its own side
        rec = result.recommendation  # what later advice finds for this configuration is the probe's record
        found = calibration.cached_throughput(state, rec.hardware, record["backbone"], record["resolution"],
                                              record["batch_size"], throughput.scratch_key(rec.facts, rules.load()))
        assert found is not None and found.origin.startswith("from a record of")
        assert all(found.images_per_second[s] == p for s, (_, p) in record["changes"].items())
        later = advisor.recommend(digits_dir, minutes=5, state=state, use_model=False)
        if later.throughput.origin.startswith("from a record of"):  # else a quick check now disagreed (a busy machine)
            assert all(later.throughput.images_per_second[s] == p for s, (_, p) in record["changes"].items())
        assert "a probe's step times replaced" in calibration.show(state)
    else:  # a busy machine, an untimed plan or no matching run: nothing replaced, and the probe says why
        assert result.throughput_record and "replace the timed" not in result.throughput_record


@pytest.mark.slow
def test_busy_or_mismatched_probes_replace_nothing(hw):
    rec = advisor.recommend(n_images=200, n_classes=10, similarity=0.4, minutes=5, resolution=64, use_model=False)
    tp = rec.throughput
    if not (tp.conditions.quiet and tp.conditions.plausible):
        pytest.skip("the machine was busy while timing: nothing may be completed from this plan")
    book = rules.load()
    configs = timing.strategy_configs(tp.resolution, rec.facts.n_images, 64)
    retrain = configs["retrain"][0]

    def run(ips: float, batch: int = tp.batch_size, side: int = tp.resolution) -> ProbeRun:
        return ProbeRun(strategy="retrain", val_accuracy=0.5, steps=20, epochs=1.0, seconds=5.0, images_per_second=ips,
                        step_images_per_second=ips, variant=retrain.variant, batch_size=batch, resolution=side, curve=[])

    same = tp.images_per_second["retrain"]
    new, changes, what = throughput.from_probe(rec, [run(same * 1.1)], hw, book, load=0.0)
    assert new is not None and changes == {"retrain": (same, same * 1.1)} and new.images_per_second["retrain"] == same * 1.1
    assert new.images_per_second["feature_extraction"] == tp.images_per_second["feature_extraction"]
    assert throughput.from_probe(rec, [run(same)], hw, book, load=0.9)[0] is None  # busy while probing
    assert throughput.from_probe(rec, [run(same, batch=tp.batch_size // 2)], hw, book, load=0.0)[0] is None
    assert throughput.from_probe(rec, [run(same, side=32)], hw, book, load=0.0)[0] is None
    # retrain faster than feature extraction's forward pass alone cannot be right
    new, _, what = throughput.from_probe(rec, [run(tp.images_per_second["feature_extraction"] * 3)], hw, book, load=0.0)
    assert new is None and "implausible" in what
