"""Timing that survives a busy machine, timing records, and hardware profiles (measured, saved, estimated)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

import advisor
from advisor.measure import calibration, profiles, timing
from advisor import registry
from advisor.cli import main
from advisor.advice.decide import decide
from advisor.errors import AdvisorError
from advisor.state import MachineState


def test_other_load_sees_a_busy_process():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        clock = timing.CpuClock()
        time.sleep(1.5)  # this process sleeps: whatever CPU is used meanwhile is the others'
        load = clock.other_load()
    finally:
        hog.kill()
    cores = os.cpu_count() or 1
    assert load is not None and load > 0.6 / cores  # one spinning process: about one core's share, however many there are


def test_plausibility_flags_impossible_orders_and_speeds(hw):
    configs = timing.strategy_configs(64, 1000)
    flops = 1e11
    fine = {"feature_extraction": 600.0, "fine_tune": 160.0, "retrain": 120.0, "scratch": 150.0}
    assert timing.plausibility(fine, configs, hw, flops) == []
    slow_fe = dict(fine, feature_extraction=100.0)  # a forward pass slower than a training step
    assert any("feature extraction" in p for p in timing.plausibility(slow_fe, configs, hw, flops))
    stalled = dict(fine, retrain=0.01)  # the kind of figure a busy machine left in a record
    assert any("retrain" in p for p in timing.plausibility(stalled, configs, hw, flops))
    too_fast = dict(fine, scratch=1e9)
    assert any("faster than" in p for p in timing.plausibility(too_fast, configs, hw, flops))


def test_step_flops_follow_what_is_trained():
    fe, retrain = registry.get("feature_extraction"), registry.get("retrain")
    shallow = registry.resolve("fine_tune", 64, 0, depth=1)
    f_fe, f_shallow, f_all = (timing.step_flops(s, 64) for s in (fe, shallow, retrain))
    assert f_fe < f_shallow < f_all == pytest.approx(3 * f_fe, rel=0.05)  # heads differ a little
    assert timing.step_flops(retrain, 128) == pytest.approx(4 * f_all, rel=0.05)  # FLOPs grow with the pixels


@pytest.mark.slow
def test_timed_configurations_report_their_conditions(hw):
    configs = timing.strategy_configs(32, 100)
    result = timing.time_configurations(configs, 4, hw, rounds=2, max_rounds=2, min_steps=2, min_seconds=0.0)
    assert set(result.images_per_second) == set(configs)
    assert all(v > 0 for v in result.images_per_second.values())
    c = result.conditions
    assert c.rounds == 2 and c.spread >= 0 and c.matmul_gflops > 0
    assert c.plausible == (not result.problems)


def _record(**changes) -> dict:
    tp = {"resolution": 64, "batch_size": 8, "images_per_second": {"feature_extraction": 600, "fine_tune": 160, "retrain": 120,
                                                                    "scratch": 150}, "detail": "", "seconds": 1.0}
    cond = {"other_load": 0.01, "spread": 0.05, "rounds": 3, "steps_per_round": 3, "matmul_gflops": 100, "seconds": 1,
            "quiet": True, "stable": True, "plausible": True}
    record = {"kind": "throughput", "machine": "m", "device_name": "CPU", "backbone": registry.DEFAULT_BACKBONE, "scratch": "cnn_s@32px",
              "resolution": 64, "batch_size": 8, "throughput": tp, "conditions": cond, **calibration._versions(),
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for key, value in changes.items():
        if key in cond:
            cond[key] = value
        else:
            record[key] = value
    return record


def test_only_plausible_recent_same_version_records_are_reused_and_busy_ones_provisionally():
    assert calibration.reusable(_record()) is None and not calibration.provisional(_record())
    busy = _record(quiet=False, other_load=0.6)
    assert calibration.reusable(busy) is None and calibration.provisional(busy)
    assert "implausible" in calibration.reusable(_record(plausible=False))
    assert "version" in calibration.reusable(_record(torch_version="0.0"))
    old = (datetime.now(timezone.utc) - timedelta(days=calibration.RECORD_DAYS + 5)).isoformat(timespec="seconds")
    assert "days old" in calibration.reusable(_record(time=old))
    assert "predates" in calibration.reusable({k: v for k, v in _record().items() if k != "conditions"})


def test_cached_throughput_prefers_a_quiet_record_to_a_provisional_one(tmp_path, hw):
    state = MachineState(home=tmp_path, machine="m")
    calibration._add(state, "throughput", _record(device_name=hw.name, plausible=False))
    assert calibration.cached_throughput(state, hw, registry.DEFAULT_BACKBONE, 64, 8, "cnn_s@32px") is None
    calibration._add(state, "throughput", _record(device_name=hw.name, quiet=False, other_load=0.7))
    found = calibration.cached_throughput(state, hw, registry.DEFAULT_BACKBONE, 64, 8, "cnn_s@32px")
    assert found is not None and found.origin.startswith("from a provisional record of") and "70%" in found.origin
    calibration._add(state, "throughput", _record(device_name=hw.name))
    calibration._add(state, "throughput", _record(device_name=hw.name, quiet=False, other_load=0.5))  # newer, but busy
    found = calibration.cached_throughput(state, hw, registry.DEFAULT_BACKBONE, 64, 8, "cnn_s@32px")
    assert found is not None and found.origin.startswith("from a record of")


@pytest.fixture(scope="module")
def cpu_profile(tmp_path_factory, hw):
    """A real profile of this CPU at 64 px, saved and read back."""
    path = tmp_path_factory.mktemp("hw") / "cpu.json"
    profiles.save(profiles.measure(hw, 4, (64,)), path)
    return path


@pytest.mark.slow
def test_saved_profile_plans_elsewhere_without_timing(cpu_profile, tmp_path):
    prof = profiles.load(cpu_profile)
    assert prof.source == "measured" and {m.variant for m in prof.measurements} >= {"feature_extraction", "retrain", "fine_tune@4"}
    state = MachineState(home=tmp_path / "home")
    rec = advisor.recommend(n_images=2000, n_classes=10, similarity=0.5, resolution=64, minutes=30, hardware=cpu_profile,
                            state=state)
    want = {m.variant: m.images_per_second for m in prof.measurements}
    got = rec.throughput.images_per_second
    assert got["retrain"] == pytest.approx(want["retrain"], rel=1e-3)
    assert got["fine_tune"] == pytest.approx(want["fine_tune@4"], rel=1e-3)
    assert rec.throughput.seconds == 0 and "profile" in rec.throughput.origin
    assert not state.db_path.exists()  # nothing was timed here, so nothing was recorded
    again = advisor.recommend(n_images=2000, n_classes=10, similarity=0.5, resolution=64, minutes=30, hardware=cpu_profile,
                              state=state)
    assert again.strategy == rec.strategy and again.estimate("retrain").epochs_in_budget == rec.estimate("retrain").epochs_in_budget


def test_estimated_profiles_follow_the_device(tmp_path):
    a100, l4 = profiles.estimate("a100"), profiles.estimate("l4")
    assert a100.source == l4.source == "estimated" and "bandwidth" in a100.assumption
    fast = {(m.variant, m.resolution, m.batch_size): m.images_per_second for m in a100.measurements}
    slow = {(m.variant, m.resolution, m.batch_size): m.images_per_second for m in l4.measurements}
    assert all(slow[k] <= fast[k] + 1e-6 for k in fast if fast[k] and slow.get(k))  # less bandwidth is never faster
    assert any(slow[k] < 0.8 * fast[k] for k in fast if fast[k] and slow.get(k))
    assert profiles.estimate("h100").source == "measured"  # a profile measured on that device wins
    with pytest.raises(AdvisorError, match="Unknown device name"):
        profiles.estimate("abacus")
    rec = advisor.recommend(n_images=5000, n_classes=10, similarity=0.5, resolution=128, gpu_hours=4, device_name="a100",
                            state=MachineState(home=tmp_path))
    assert rec.hardware.name == a100.device.name and rec.throughput.source == "estimated"
    assert rec.estimate("retrain").seconds_per_epoch.source == "estimated"
    assert not any("No GPU here" in w for w in rec.warnings)  # the budget is hours of the A100, not of this CPU


@pytest.mark.slow
def test_hardware_command(cpu_profile, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["hardware", "--device-name", "t4"])
    assert out.exit_code == 0 and "[estimated]" in out.output and "NVIDIA T4" in out.output
    bad = runner.invoke(main, ["recommend", "--data", str(tmp_path), "--gpu-hours", "1", "--hardware", str(tmp_path / "none.json")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1
    (tmp_path / "junk.json").write_text("{}")
    junk = runner.invoke(main, ["recommend", "--data", str(tmp_path), "--gpu-hours", "1", "--hardware", str(tmp_path / "junk.json")])
    assert junk.exit_code == 1 and "not a hardware profile" in junk.output


@pytest.mark.slow
def test_report_draws_the_advice(digits_dir, tmp_path):
    from advisor import api, chart

    plan = api.plan(digits_dir, minutes=20, device_name="a100", state=MachineState(home=tmp_path / "home"))
    rec = decide(plan)
    curve = api.budget_curve(plan)
    assert len(curve) == 33 and curve[0].budget.seconds < rec.budget.seconds < curve[-1].budget.seconds
    assert all(c.throughput == rec.throughput and c.facts == rec.facts for c in curve)  # nothing measured again
    page = chart.write(tmp_path / "r.html", rec, curve, chart.thumbnails(digits_dir))
    text = page.read_text()
    assert "data:image/png;base64," in text and text.count("<tr") == 5 and "[estimated]" in text
    png = chart.write(tmp_path / "r.png", rec, curve)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    with pytest.raises(AdvisorError, match="must end in .html or .png"):
        chart.write(tmp_path / "r.pdf", rec, curve)


def test_show_names_what_replaced_a_provisional_record_and_old_versions_get_one_line(tmp_path, hw):
    state = MachineState(home=tmp_path, machine="m")
    older = _record(device_name=hw.name, quiet=False, other_load=0.6, torch_version="0.0",
                    time=(datetime.now(timezone.utc) - timedelta(hours=2)).isoformat(timespec="seconds"))
    calibration._add(state, "throughput", older)
    why = calibration.skipped_throughput(state, hw, registry.DEFAULT_BACKBONE, 64, 8, "cnn_s@32px")
    assert why is not None and "\n" not in why and "(provisional)" in why and "version" in why
    assert calibration.cached_throughput(state, hw, registry.DEFAULT_BACKBONE, 64, 8, "cnn_s@32px") is None
    busy = _record(device_name=hw.name, quiet=False, other_load=0.6,
                   time=(datetime.now(timezone.utc) - timedelta(hours=1)).isoformat(timespec="seconds"))
    calibration._add(state, "throughput", busy)
    assert calibration.skipped_throughput(state, hw, registry.DEFAULT_BACKBONE, 64, 8, "cnn_s@32px") is None
    assert "reused until a timing on a quiet machine replaces it" in calibration.show(state)
    quiet = _record(device_name=hw.name)
    calibration._add(state, "throughput", quiet)
    assert f"replaced by the quiet record of {quiet['time']}" in calibration.show(state)
