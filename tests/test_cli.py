"""The command line: help everywhere, JSON output, and one clear line (no traceback) for bad input."""

import json
import math

import pytest
from click.testing import CliRunner

from advisor import probing
from advisor.model import learned
from advisor.cli import main
from advisor.state import MachineState
from advisor.schemas import ProbeResult, Recommendation
from advisor.units import Z80

from .conftest import copy_tree, snapshot

runner = CliRunner()


@pytest.mark.parametrize("command", [[]] + [[name] for name in main.commands])
def test_every_command_has_help(command):
    result = runner.invoke(main, command + ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_profile_command(digits_dir):
    result = runner.invoke(main, ["profile", "--data", str(digits_dir)])
    assert result.exit_code == 0, result.output
    assert "200 training images, 10 classes" in result.output
    data = json.loads(runner.invoke(main, ["profile", "--data", str(digits_dir), "--json"]).output)
    assert data["n_classes"] == 10


@pytest.mark.slow
def test_recommend_json_and_text(digits_dir, warm_home):
    before = snapshot(digits_dir)
    result = runner.invoke(main, ["recommend", "--data", str(digits_dir), "--gpu-hours", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    rec = Recommendation.model_validate_json(result.stdout)
    assert rec.budget.seconds == 1800
    text = runner.invoke(main, ["recommend", "--data", str(digits_dir), "--minutes", "5"])
    assert text.exit_code == 0
    assert "Recommendation:" in text.stdout and "[measured]" in text.stdout and "[rule]" in text.stdout
    assert snapshot(digits_dir) == before


def _bad(tmp_path, digits_dir):
    one = copy_tree(digits_dir / "1", tmp_path / "one" / "1")
    return [
        (["--data", str(tmp_path / "nope"), "--hours", "1"], "does not exist"),
        (["--data", str(next(one.iterdir())), "--hours", "1"], "is a file"),
        (["--data", str(tmp_path / "one"), "--hours", "1"], "single class"),
        (["--data", str(digits_dir), "--hours", "0"], "greater than zero"),
        (["--data", str(digits_dir), "--hours", "-2"], "greater than zero"),
        (["--data", str(digits_dir), "--gpu-hours", "lots"], "must be a number"),
        (["--data", str(digits_dir)], "Give the budget once"),
    ]


def test_bad_input_gives_one_clear_line(tmp_path, digits_dir):
    (tmp_path / "empty").mkdir()
    cases = _bad(tmp_path, digits_dir) + [(["--data", str(tmp_path / "empty"), "--hours", "1"], "no class sub-folders")]
    for args, message in cases:
        result = runner.invoke(main, ["recommend", *args])
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output, args
        assert isinstance(result.exception, SystemExit), (args, result.exception)  # click's clean exit, nothing uncaught
        assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1, result.output


def test_corrupt_file_is_a_warning_not_an_error(tmp_path, digits_dir):
    root = copy_tree(digits_dir, tmp_path / "d")
    (root / "2" / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    result = runner.invoke(main, ["profile", "--data", str(root)])
    assert result.exit_code == 0
    assert "warning: skipped 1 unreadable" in result.stderr


def test_demo_data_exports_a_real_folder(tmp_path):
    dest = tmp_path / "digits"
    result = runner.invoke(main, ["demo-data", str(dest), "--per-class", "3"])
    assert result.exit_code == 0 and "wrote 30 images" in result.output
    again = runner.invoke(main, ["demo-data", str(dest)])
    assert again.exit_code != 0 and "already exists" in again.output


@pytest.mark.slow
def test_probe_runs_every_strategy_and_stores_the_result(digits_dir, tmp_path, warm_home):
    result = runner.invoke(main, ["probe", "--data", str(digits_dir), "--minutes", "10", "--steps", "12",
                                  "--resolution", "32", "--max-train", "200", "--json"])
    assert result.exit_code == 0, result.output
    probe = ProbeResult.model_validate_json(result.stdout)
    assert {r.strategy for r in probe.runs} == {"feature_extraction", "fine_tune", "retrain", "scratch"}
    assert sorted(probe.ranking) == sorted(r.strategy for r in probe.runs)
    # each trained run long enough forecasts its accuracy at the full budget; the ranking follows the forecasts
    # (feature extraction: the recommendation's own figure, complete after one pass)
    value = {r.strategy: r.forecast for r in probe.runs if r.forecast is not None}
    value["feature_extraction"] = probe.recommendation.estimate("feature_extraction").accuracy
    ranked = [s for s in probe.ranking if s in value]
    assert [value[s].value for s in ranked] == sorted((q.value for q in value.values()), reverse=True)
    for r in probe.runs:
        if r.strategy == "feature_extraction":
            assert r.judged and r.forecast is None
        elif r.forecast is not None:
            assert r.judged and r.viable and 0 < r.share <= 1 and r.forecast.source == "forecast"
            assert r.forecast.low <= r.forecast.value <= r.forecast.high
        elif not r.viable:
            assert "not viable" in r.note
        else:
            assert not r.judged and r.steps < probing.MIN_STEPS and "too short to forecast" in r.note
    chosen = probe.recommendation.strategy
    fc = learned.load()[0]["forecast"]
    if chosen in {r.strategy for r in probe.runs if not r.viable}:  # diverged or at chance: real evidence at any length
        assert probe.agrees is False and "not viable" in probe.verdict
    elif max(fc.weight(r.share) for r in probe.runs if r.forecast is not None) < probing.MIN_WEIGHT:
        assert probe.agrees is None and "cannot check the ranking" in probe.verdict  # the forecasts are the model's
    elif chosen in value:  # it disagrees only when a forecast beats the recommendation by more than their uncertainty
        sigma = [(q.high - q.low) / 2 / Z80 if q.low is not None else 0.0 for q in (value[ranked[0]], value[chosen])]
        assert probe.agrees == (value[ranked[0]].value - value[chosen].value <= math.hypot(*sigma))
    assert set(probe.model_errors or {}) == {r.strategy for r in probe.runs if r.judged and r.viable}
    # --steps: every trained strategy ran exactly 12 steps however busy the machine, enough to forecast from
    assert all(r.steps == 12 for r in probe.runs if r.strategy != "feature_extraction")
    assert any(r.forecast is not None for r in probe.runs)
    assert "12 steps per strategy" in probe.cost.detail
    db = MachineState().database()
    stored = db.read("probe_result")
    db.close()
    assert "table probe_result" in probe.stored_at
    assert len(stored) == 1 and stored[0]["runs"][0]["strategy"] == "feature_extraction"


@pytest.mark.slow
def test_a_probe_shorter_than_one_pass_still_ends_cleanly(digits_dir, warm_home):
    # feature extraction's pass alone outlasts 0.5 s: the others get no time left, take one step each and say so
    result = runner.invoke(main, ["probe", "--data", str(digits_dir), "--minutes", "10", "--seconds", "0.5",
                                  "--max-train", "50", "--json"])
    assert result.exit_code == 0, result.output
    probe = ProbeResult.model_validate_json(result.stdout)
    assert all(r.steps >= 1 and not r.judged for r in probe.runs if r.strategy != "feature_extraction")


def test_train_and_predict_commands_refuse_bad_input_with_one_line(tmp_path, digits_dir):
    for args, phrase in ((["train", "--minutes", "1"], "Give --data"),
                         (["train", "--resume", str(tmp_path), "--minutes", "1"], "drop --minutes"),
                         (["train", "--data", str(digits_dir), "--minutes", "0.01", "--out", str(tmp_path / "r")], "too small"),
                         (["predict", "--model", str(tmp_path)], "No trained model"),
                         (["predict", "--model", str(tmp_path), "--data", str(digits_dir), "--out", str(digits_dir / "p.csv")],
                          "inside the data folder")):
        result = runner.invoke(main, args)
        assert result.exit_code == 1 and phrase in result.output and "Traceback" not in result.output, args
