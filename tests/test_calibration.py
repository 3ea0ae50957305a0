"""Calibration persists across runs: throughput is reused, probes correct the learned model, --show/--reset work."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import advisor
from advisor import calibration, learned, store
from advisor.cli import main

RESULTS = Path(__file__).parents[1] / "benchmarks" / "results" / "cells.jsonl"
ROWS = store.read(RESULTS)


@pytest.fixture
def packaged_model(tmp_path, monkeypatch):
    """A model fitted on the committed meta-dataset, installed as the package's model for this test."""
    if len({r["dataset"] for r in ROWS}) < 3:
        pytest.skip("meta-dataset too small")
    X, Y, _, groups = learned.table(ROWS)
    models = {"default": learned.fit(X, Y, groups)[0]}
    path = learned.save(models, {"name": "test-model", "cells": len(ROWS)}, tmp_path / "m.joblib")
    monkeypatch.setattr(learned, "MODEL_PATH", path)
    return path


def test_throughput_is_measured_once_per_machine(digits_dir):
    first = advisor.recommend(n_images=200, n_classes=10, similarity=0.4, minutes=5, resolution=64, use_model=False)
    second = advisor.recommend(n_images=200, n_classes=10, similarity=0.4, minutes=5, resolution=64, use_model=False)
    assert first.throughput.seconds > 0
    assert second.throughput.seconds == 0 and "measured on this machine" in second.throughput.detail
    assert second.throughput.images_per_second == first.throughput.images_per_second


def test_probe_calibrates_the_model_and_later_runs_use_it(digits_dir, packaged_model):
    result = advisor.probe(digits_dir, minutes=10, seconds=6, max_train=100, progress=False)
    assert result.recommendation.decided_by.startswith("learned model")
    assert result.calibrated is not None and set(result.model_errors) == {"feature_extraction", "fine_tune", "retrain", "scratch"}
    assert 0 < result.calibration_weight < 1
    assert result.cost.value > 0 and "% of the 10 minutes budget" in result.cost.detail
    offsets, n = calibration.offsets()
    assert n == 1 and offsets["feature_extraction"] == pytest.approx(result.model_errors["feature_extraction"] / 3, abs=1e-3)
    later = advisor.recommend(digits_dir, minutes=10)
    assert "corrected by 1 earlier probe" in later.estimate("fine_tune").accuracy.detail


def test_calibrate_show_and_reset():
    runner = CliRunner()
    assert "nothing recorded yet" in runner.invoke(main, ["calibrate"]).output
    advisor.recommend(n_images=100, n_classes=5, similarity=0.5, minutes=1, resolution=64, use_model=False)
    shown = runner.invoke(main, ["calibrate", "--show"]).output
    assert "throughput" in shown and "64px" in shown
    assert "removed 1 record" in runner.invoke(main, ["calibrate", "--reset"]).output
    assert "nothing recorded yet" in runner.invoke(main, ["calibrate"]).output
