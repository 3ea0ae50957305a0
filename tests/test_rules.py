"""The declarative rules load, fire on the right facts and carry their reasons into the recommendation."""

import pytest

from advisor import RulesError, budget, rules

from advisor.advice import decide
from advisor.advice.plan import Plan
from advisor.schemas import Budget, DataFacts, Hardware, Throughput

CPU = Hardware(device="cpu", name="test CPU", cpu_threads=2, gpu_available=False, precision="fp32")
BOOK = rules.load()


def _rec(n_images, n_classes, similarity, hours, ips=None, channels=3, resolution=128):
    facts = DataFacts(n_images=n_images, n_classes=n_classes, similarity=similarity, resolution=resolution, channels=channels)
    tp = None
    if ips:
        tp = Throughput(resolution=128, batch_size=8, images_per_second=ips, detail="given", seconds=0)
    return decide.decide(Plan(facts, Budget(seconds=hours * 3600, given_as=f"{hours} hours"), CPU, BOOK, tp))


FAST = dict(feature_extraction=4000.0, fine_tune=1500.0, retrain=1000.0, scratch=1000.0)
SLOW = dict(feature_extraction=50.0, fine_tune=20.0, retrain=14.0, scratch=14.0)


def test_default_rules_load_and_every_rule_has_a_reason():
    assert BOOK.rule and all(r.reason.strip() for r in BOOK.rule)
    assert {"few_per_class", "similar"} <= set(BOOK.thresholds)


def test_small_similar_data_gets_feature_extraction():
    rec = _rec(300, 10, 0.75, 0.001, FAST)  # 18 epochs of fine-tuning: not a large budget
    assert rec.strategy == "feature_extraction"
    assert "small-similar" in [f.id for f in rec.fired_rules]
    assert any("frozen pretrained features" in r for r in rec.reasons)


def test_a_large_budget_or_fe_headroom_trains_the_backbone():
    large = _rec(300, 10, 0.75, 4, FAST)  # 72,000 epochs of fine-tuning
    assert large.strategy == "fine_tune" and "large-budget-trains-the-backbone" in [f.id for f in large.fired_rules]
    facts = DataFacts(n_images=300, n_classes=10, similarity=0.75, resolution=128, channels=3)
    tp = Throughput(resolution=128, batch_size=8, images_per_second=FAST, detail="given", seconds=0)
    budget_ = Budget(seconds=3.0, given_as="3 s")  # 15 epochs of fine-tuning
    fired = lambda fe: [f.id for f in decide.decide(Plan(facts, budget_, CPU, BOOK, tp, fe)).fired_rules]
    from advisor.schemas import Quantity
    assert "fe-leaves-headroom" in fired(Quantity(value=0.7, source="measured"))
    assert "fe-leaves-headroom" not in fired(Quantity(value=0.95, source="measured"))
    assert "fe-leaves-headroom" not in fired(Quantity(value=0.7, source="model"))  # only a measured FE counts


def test_limited_related_data_gets_fine_tune_with_frozen_early_layers():
    rec = _rec(500, 10, 0.5, 4, FAST)
    assert rec.strategy == "fine_tune"
    settings = rec.estimate("fine_tune").settings
    assert "blocks.0" in settings.frozen and "blocks.6" not in settings.frozen
    assert settings.learning_rate.value < rec.estimate("scratch").settings.learning_rate.value


def test_large_different_data_with_big_budget_trains_all_layers():
    rec = _rec(100_000, 10, 0.3, 200, FAST)
    assert rec.strategy in ("retrain", "scratch")
    assert rec.estimate("scratch").feasible


def test_scratch_is_ruled_out_without_data_or_budget():
    assert not _rec(8, 2, 0.3, 200, FAST).estimate("scratch").feasible  # below the 10-image floor
    assert not _rec(100_000, 10, 0.3, 1, SLOW).estimate("scratch").feasible
    assert _rec(5000, 10, 0.3, 200, FAST).estimate("scratch").feasible


def test_small_images_far_from_imagenet_favour_a_compact_network_from_scratch():
    rec = _rec(5000, 10, 0.3, 1, FAST, channels=1, resolution=28)
    scratch = rec.estimate("scratch")
    assert scratch.feasible and "scratch-small-images-far-domain" in [f.id for f in rec.fired_rules]
    assert scratch.settings.backbone == "cnn_s" and scratch.settings.resolution == 28 and not scratch.settings.pretrained
    assert rec.estimate("fine_tune").settings.resolution == 64  # pretrained backbones keep the rules' minimum
    near = _rec(5000, 10, 0.7, 1, FAST, resolution=28)
    assert near.strategy != "scratch" and near.estimate("scratch").score.value < scratch.score.value


def test_tiny_budget_moves_to_cheaper_strategies():
    big = _rec(20_000, 10, 0.5, 100, SLOW)
    tiny = _rec(20_000, 10, 0.5, 0.5, SLOW)
    assert big.strategy in ("fine_tune", "retrain")
    assert tiny.strategy == "feature_extraction"
    assert "fine-tune-needs-budget" in [f.id for f in tiny.fired_rules]


def test_epochs_follow_measured_throughput_and_budget():
    rec = _rec(10_000, 10, 0.5, 2, SLOW)
    e = rec.estimate("retrain")
    assert e.epochs_in_budget.value == pytest.approx(2 * 3600 * 14 / 10_000, rel=1e-3)
    assert e.seconds_per_epoch.source == "measured" and e.epochs_in_budget.source == "estimated"  # derived from a measurement
    assert e.settings.epochs.value == pytest.approx(min(e.epochs_in_budget.value, BOOK.max_epochs.retrain), rel=1e-2)


def test_greyscale_turns_off_flips():
    rec = _rec(300, 10, 0.5, 4, FAST, channels=1)
    assert not any("flip" in a for a in rec.estimate("fine_tune").settings.augmentation)
    assert any("flip" in a for a in _rec(300, 10, 0.5, 4, FAST).estimate("fine_tune").settings.augmentation)


def test_confidence_is_higher_when_rules_agree():
    clear = _rec(300, 10, 0.8, 4, FAST)
    split = _rec(5000, 10, 0.5, 4, FAST)
    assert clear.confidence.value > split.confidence.value


HEAD = ("[thresholds]\n[decision]\ntemperature=1\n[settings]\nmin_resolution=64\nmax_resolution=224\nbatch_size_cpu=32\n"
        "batch_size_gpu=128\n[max_epochs]\nfeature_extraction=1\nfine_tune=15\nretrain=30\nscratch=90\n")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[thresholds\n", "not valid TOML"),
        (HEAD + '[[rule]]\nid="x"\nwhen=["colour > 3"]\nreason="r"\n', "unknown fact 'colour'"),
        (HEAD + '[[rule]]\nid="x"\nwhen=["n_images > lots"]\nreason="r"\n', "neither a number nor a threshold"),
        (HEAD + '[[rule]]\nid="x"\nprefer={magic=1}\nreason="r"\n', "rule"),
    ],
)
def test_bad_rules_files_are_reported(tmp_path, text, message):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(RulesError, match=message):
        rules.load(path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpu_hours=0), "greater than zero"),
    (dict(minutes=-5), "greater than zero"),
    (dict(hours="abc"), "must be a number"),
    (dict(hours="nan"), "greater than zero"),
    (dict(), "Give the budget once"),
    (dict(hours=1, minutes=2), "Give the budget once"),
])
def test_bad_budgets(kwargs, message):
    from advisor import BudgetError

    with pytest.raises(BudgetError, match=message):
        budget.make(CPU, **kwargs)


def test_gpu_hours_on_a_cpu_say_so():
    b = budget.make(CPU, gpu_hours="4")
    assert b.seconds == 4 * 3600 and "No GPU" in b.note


def test_a_tie_is_called_a_tie_and_the_cheaper_strategy_is_chosen():
    rec = _rec(1800, 10, 0.36, 0.1, dict(feature_extraction=500.0, fine_tune=130.0, retrain=110.0, scratch=1100.0),
               channels=1, resolution=8)  # 26 epochs of fine-tuning: below a large budget
    ranked = sorted((e for e in rec.estimates if e.feasible), key=lambda e: e.score.value, reverse=True)
    tied = [e for e in ranked if ranked[0].score.value - e.score.value < decide.TIE_POINTS]
    assert len(tied) >= 2  # the best rule scores are level
    assert rec.tie and rec.strategy == min(tied, key=lambda e: e.expected_seconds.value).strategy
    assert rec.runner_up in {e.strategy for e in ranked[:2]} - {rec.strategy}
    chosen, other = rec.estimate(rec.strategy), rec.estimate(rec.runner_up)
    assert chosen.expected_seconds.value < other.expected_seconds.value
    assert rec.reasons[0].startswith("Tie:")


def test_a_clear_lead_is_not_a_tie():
    rec = _rec(300, 10, 0.8, 0.001, FAST)  # small data close to ImageNet, a short budget: feature extraction leads clearly
    assert rec.strategy == "feature_extraction" and not rec.tie and rec.runner_up is not None
