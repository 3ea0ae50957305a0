"""The registries' numbers match the real networks; each strategy configuration freezes exactly what it says;
each scratch network trains at its own resolution."""

import subprocess
import sys

import pytest
import timm
import torch

from advisor.nets import architectures, engine, strategies

from advisor import registry


@pytest.mark.parametrize("name", registry.BACKBONES)
def test_backbone_layout_data_matches_the_network(name):
    cfg = registry.backbone(name)
    model = timm.create_model(cfg.arch, pretrained=False)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert tuple(count(b) for b in model.blocks) == cfg.stage_params
    assert sum(count(model.get_submodule(m)) for m in cfg.stem) == cfg.stem_params
    assert sum(count(model.get_submodule(m)) for m in cfg.neck) == cfg.neck_params
    assert count(model) - count(model.get_classifier()) == cfg.params


@pytest.mark.parametrize("name", registry.ARCHITECTURES)
def test_architecture_parameter_counts_match(name):
    assert architectures.parameter_count(name, 10) == registry.architecture(name).params


@pytest.mark.parametrize("depth", registry.FINE_TUNE_DEPTHS)
def test_fine_tune_depth_freezes_exactly_what_it_says(depth):
    strat = registry.resolve("fine_tune", 64, 100, depth=depth)
    model = strategies.build(strat, 10)
    backbone = [(n, p) for n, p in model.named_parameters() if not n.startswith("classifier.")]
    trained = sum(p.numel() for _, p in backbone if p.requires_grad)
    assert trained / sum(p.numel() for _, p in backbone) == pytest.approx(registry.trainable_fraction(strat))
    frozen_prefixes = tuple(m + "." for m in registry.frozen_modules(strat))
    assert all(p.requires_grad != n.startswith(frozen_prefixes) for n, p in backbone)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("classifier."))
    assert f"blocks.{7 - depth}" not in registry.frozen_modules(strat) and f"blocks.{6 - depth}" in registry.frozen_modules(strat)


def test_deeper_fine_tune_trains_more():
    shares = [registry.trainable_fraction(registry.resolve("fine_tune", 64, 100, depth=d)) for d in registry.FINE_TUNE_DEPTHS]
    assert shares == sorted(shares) and 0 < shares[0] < shares[-1] < 1
    assert registry.trainable_fraction(registry.get("feature_extraction")) == 0
    assert registry.trainable_fraction(registry.get("retrain")) == 1


def test_scratch_network_is_sized_to_resolution_and_data():
    assert registry.choose_architecture(28, 500).name == "cnn_s"
    assert registry.choose_architecture(32, 50_000).name == "cnn_m"
    assert registry.choose_architecture(128, 500).name == "resnet10t"
    assert registry.choose_architecture(224, 100_000).name == "resnet18"
    assert registry.resolve("scratch", 28, 500).variant == "scratch@cnn_s"


@pytest.mark.slow
@pytest.mark.parametrize("name,res", [("cnn_s", 8), ("cnn_m", 8), ("resnet10t", 64), ("resnet18", 64)])
def test_each_scratch_network_learns_digits_at_its_resolution(digit_tensors, hw, name, res):
    (x, y), (vx, vy) = digit_tensors
    if x.shape[-1] != res:
        resize = lambda t: torch.nn.functional.interpolate(t.float(), size=res, mode="bilinear").round().to(torch.uint8)  # noqa: E731
        x, vx = resize(x), resize(vx)
    strat = registry.resolve(registry.get("scratch"), res, len(x))
    strat = registry.Strategy(**{**strat.__dict__, "arch": name})
    r = engine.run(strat, (x, y), (vx, vy), 10, hw, epochs=6, batch_size=32, flip=False, eval_points=1)
    assert r.variant == f"scratch@{name}"
    assert r.val_accuracy > 0.3  # chance is 0.1


def test_decision_code_imports_no_torch():
    code = "import sys, advisor.advice.decide, advisor.report, advisor.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
