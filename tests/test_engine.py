"""The engine really trains each strategy (tiny real runs on CPU)."""

import pytest
import torch

from advisor.units import EpochEquivalents
from advisor.nets import engine, strategies
from advisor import registry
from advisor.registry import STRATEGY_NAMES


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_trains_a_few_real_steps(name, digit_tensors, hw):
    train, val = digit_tensors
    r = engine.run(name, train, val, 10, hw, epochs=0.5, batch_size=16, flip=False, eval_points=2)
    assert 0.0 <= r.val_accuracy <= 1.0
    assert r.steps >= 1 and r.seconds > 0 and r.images_per_second > 0
    assert r.curve and r.curve[-1][1] == r.val_accuracy


@pytest.mark.slow
def test_feature_extraction_beats_chance(digit_tensors, hw):
    train, val = digit_tensors
    assert engine.run("feature_extraction", train, val, 10, hw, epochs=1).val_accuracy > 0.5


@pytest.mark.slow
def test_retrain_learns(digit_tensors, hw):
    train, val = digit_tensors
    r = engine.run("retrain", train, val, 10, hw, epochs=4, batch_size=32, flip=False, eval_points=1)
    assert r.val_accuracy > 0.3  # chance is 0.1


@pytest.mark.slow
def test_fine_tune_leaves_frozen_layers_and_their_statistics_alone(digit_tensors, hw):
    strat = registry.get("fine_tune")
    model = strategies.build(strat, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(strategies.param_groups(model, strat))
    (x, y), _ = digit_tensors
    strategies.set_train_mode(model, strat)
    for i in range(2):
        engine.train_step(model, optimizer, x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16], strat, hw, "efficientnet_lite0", flip=True)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1.", "blocks.2."))]
    trained = [k for k in before if k.startswith(("blocks.6.", "classifier")) and before[k].is_floating_point()]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


@pytest.mark.slow
def test_time_budget_is_respected(digit_tensors, hw):
    train, val = digit_tensors
    r = engine.run("fine_tune", train, val, 10, hw, seconds=2.0, batch_size=16, eval_points=1)
    step = r.seconds / r.steps
    assert 2.0 <= r.seconds <= 2.0 + max(3 * step, 1.0)  # stops within about a step of the budget


def test_augment_shifts_and_flips_but_keeps_the_pixels(hw):
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = engine.augment(x, flip=True, generator=g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    changed = (out != x.float()).flatten(1).any(1)
    assert changed.float().mean() > 0.5  # most images moved (a crop offset of 0 and no flip leaves one unchanged)
    # every output pixel is a pixel of the reflect-padded input: crops move pixels, they never invent values
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(8):
        candidates = [padded[i, :, dy : dy + 16, dx : dx + 16] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in candidates)
    unflipped = engine.augment(x, flip=False, pad_fraction=1 / 8, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(unflipped, out)


def test_lr_schedule_warms_up_then_decays():
    assert engine.lr_factor(0.0) < engine.lr_factor(0.05) == pytest.approx(1.0)
    assert engine.lr_factor(0.5) > engine.lr_factor(0.9) > engine.lr_factor(1.0) - 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_throughput_is_measured(name, hw):
    assert engine.measure_images_per_second(name, 32, 4, hw, steps=1) > 0


@pytest.mark.slow
def test_budget_in_epoch_equivalents(digit_tensors, hw):
    train, val = digit_tensors
    r = engine.run("fine_tune", train, val, 10, hw, equivalents=EpochEquivalents(2.0), speed_ratio=1.5, batch_size=16, eval_points=2)
    assert r.epochs == pytest.approx(3.0, abs=16 / 200)  # k × speed ratio epochs, to the batch
    assert len(r.curve) == 2 and r.curve[0][0] < r.curve[1][0]
    assert r.peak_memory_mb > 0 and r.batch_size == 16
    assert engine.measure_speed_ratio("retrain", 32, 16, hw) == 1.0
    ratio = engine.measure_speed_ratio("fine_tune", 32, 16, hw, steps=2)
    assert 0 < ratio < float("inf")  # its size depends on the machine's load: benchmarks/device_profile.py reports it
    assert engine.measure_epoch_seconds(200, 32, 16, hw) > 0
