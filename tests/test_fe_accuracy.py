"""Feature extraction measured on the user's images before advice: cross-validated, shown as measured, reused."""

from __future__ import annotations

import shutil

import numpy as np
import torch
import pytest

import advisor
from advisor import AdvisorError
from advisor.measure import fe_accuracy
from advisor.state import MachineState


def test_cross_validation_separates_what_is_separable_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    clean = rng.normal(size=(120, 16)) + np.eye(4, 16)[labels] * 8
    acc, n, folds = fe_accuracy.cross_validated(clean, labels)
    assert acc > 0.95 and n == 120 and folds == fe_accuracy.FOLDS
    noise, _, _ = fe_accuracy.cross_validated(rng.normal(size=(120, 16)), labels)
    assert noise < 0.5  # chance is 0.25
    assert "at least 2" in fe_accuracy.cross_validated(clean[:5], np.array([0, 0, 1, 1, 2]))  # a class of one image


@pytest.mark.slow
def test_recommend_measures_feature_extraction_and_reuses_it(digits_dir, tmp_path):
    state = MachineState(home=tmp_path / "home")
    first = advisor.recommend(digits_dir, minutes=30, state=state, use_model=False)
    fe = first.estimate("feature_extraction").accuracy
    assert fe.source == "measured" and fe.low < fe.value < fe.high
    assert "200 images" in fe.detail and "cross-validated" in fe.detail and "reused" not in fe.detail
    assert fe.value > 0.5  # digits: frozen ImageNet features separate 10 classes far above chance (10 %)
    px = first.pixel_baseline
    assert px.source == "measured" and px.low < px.value < px.high and "raw pixels" in px.detail
    assert px.value > 0.5  # centred digits: a linear model on 16-px pixels is far above chance
    second = advisor.recommend(digits_dir, minutes=30, state=state, use_model=False)
    again = second.estimate("feature_extraction").accuracy
    assert again.value == fe.value and "reused" in again.detail
    assert second.pixel_baseline.value == px.value and "reused" in second.pixel_baseline.detail


def test_the_pixel_baseline_sees_structure_not_label_noise(digits_dir):
    from advisor.data import images, scan

    data = scan.scan(digits_dir)
    x, y = images.load(data.split("train"), 32)
    real = fe_accuracy.measure_pixels(x, y)
    assert real.value > 0.6 and f"{len(x)} images" in real.detail  # shrunk from 32 px to 16 inside
    shuffled = fe_accuracy.measure_pixels(x, y[np.random.default_rng(0).permutation(len(y))])
    assert shuffled.value < 0.3  # chance is 0.1
    assert "at least 2" in fe_accuracy.measure_pixels(x[:3], torch.tensor([0, 0, 1]))  # a class of one image


@pytest.mark.slow
def test_a_class_too_small_for_cross_validation_falls_back_to_a_prediction_and_says_why(digits_dir, tmp_path):
    data = tmp_path / "tiny"
    shutil.copytree(digits_dir, data)
    for extra in sorted((data / "3").iterdir())[1:]:
        extra.unlink()  # class 3 keeps one image
    rec = advisor.recommend(data, minutes=30, state=MachineState(home=tmp_path / "home"))
    assert rec.estimate("feature_extraction").accuracy is None or rec.estimate("feature_extraction").accuracy.source != "measured"
    assert any("Feature extraction was not measured" in w and "at least 2" in w for w in rec.warnings)


def test_numbers_only_take_a_given_fe_accuracy_and_check_it(tmp_path):
    state = MachineState(home=tmp_path / "home")
    numbers = dict(n_images=5000, n_classes=50, similarity=0.6, minutes=60, device_name="a100", state=state)
    given = advisor.recommend(**numbers, fe_accuracy=0.62)
    fe = given.estimate("feature_extraction").accuracy
    assert fe.source == "measured" and fe.value == 0.62 and "given" in fe.detail
    predicted = advisor.recommend(**numbers)
    assert predicted.estimate("feature_extraction").accuracy.source == "model"
    assert any("not measured" in w for w in predicted.warnings)
    with pytest.raises(AdvisorError, match="between 0 and 1"):
        advisor.recommend(**numbers, fe_accuracy=62)


def test_numbers_only_take_a_given_pixel_baseline_for_the_gain_model(tmp_path, digits_dir):
    state = MachineState(home=tmp_path / "home")
    numbers = dict(n_images=5000, n_classes=50, similarity=0.6, minutes=60, device_name="a100", state=state, fe_accuracy=0.62)
    without = advisor.recommend(**numbers).estimate("fine_tune").accuracy
    given = advisor.recommend(**numbers, pixel_accuracy=0.3).estimate("fine_tune").accuracy
    assert "pixel baseline was not measured" in without.detail and "pixel baseline" not in given.detail
    assert given.value != without.value  # the other trees decide
    with pytest.raises(AdvisorError, match="between 0 and 1"):
        advisor.recommend(**numbers, pixel_accuracy=30)
    with pytest.raises(AdvisorError, match="numbers only"):
        advisor.recommend(digits_dir, minutes=5, pixel_accuracy=0.3, state=state)
