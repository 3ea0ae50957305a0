"""advisor train / predict: a real (tiny-budget) run on real images, its time limit, interruption and resume,
what it leaves, and the errors a user can cause."""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from click.testing import CliRunner

from advisor.measure import calibration

from advisor.model import cells

from advisor.nets import engine

from advisor import registry, training
from advisor.cli import main
from advisor.nets import backbone as bb
from advisor.errors import AdvisorError, BudgetError
from advisor.state import MachineState

from .conftest import snapshot


def _interrupt_when(path, after: float) -> threading.Thread:
    """SIGINT this process ``after`` seconds once ``path`` exists (training has begun), as Ctrl-C would."""
    def wait():
        while not path.exists():
            time.sleep(0.1)
        time.sleep(after)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_an_interrupted_run_resumes_keeps_to_its_budget_and_predict_reproduces_its_accuracy(digits_dir, tmp_path, monkeypatch,
                                                                                           warm_home):
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 2.0)
    state, run = MachineState(home=warm_home), tmp_path / "run"
    before = snapshot(digits_dir)
    _interrupt_when(run / "checkpoint.pt", after=3.0)  # Ctrl-C during training
    with pytest.raises(AdvisorError, match="--resume"):
        training.train(digits_dir, minutes=0.5, strategy="scratch", out=run, state=state, progress=False)
    plan = json.loads((run / "run.json").read_text())
    assert plan["status"] == "interrupted" and (run / "checkpoint.pt").is_file()
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    # a later heartbeat than the checkpoint (time a kill -9 would lose) is charged to the budget
    lost = checkpoint["position"]["spent"] + 3.0
    (run / "progress.json").write_text(json.dumps({"spent": lost, "step": checkpoint["position"]["step"]}))
    result = training.resume(run, state=state, progress=False)
    assert result.sessions == 2 and result.steps > checkpoint["position"]["step"] and result.variant.startswith("scratch@")
    assert result.seconds <= 30 * 1.05 and result.curve[0][0] <= lost  # the limit holds; the curve goes on
    assert {p.name for p in run.iterdir()} == {"model.pt", "run.json", "curve.png"}  # no checkpoint left
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    held_out = training.predict(run)
    assert len(held_out) == result.val_images
    assert np.mean([p.label == p.truth for p in held_out]) == pytest.approx(result.val_accuracy.value, abs=1e-4)
    stored = [p for p in calibration.probes(state) if p.get("source") == "train"]
    assert len(stored) == 1 and set(stored[0]["errors"]) == {"scratch"}  # it teaches advisor like a probe
    assert "full run (advisor train)" in calibration.show(state)
    # the run as a contributed meta-dataset cell: the strategy trained, its accuracy, the data's facts, no path
    out = CliRunner().invoke(main, ["calibrate", "--export", "--cells"], env={"ADVISOR_HOME": str(state.home)})
    (line,) = out.output.splitlines()
    cell = cells.ContributedCell.model_validate_json(line)
    assert set(cell.runs) == {"scratch"} and cell.runs["scratch"].val_accuracy == pytest.approx(result.val_accuracy.value, abs=1e-4)
    assert cell.n_classes == len(result.classes) and cell.k and cell.runs["scratch"].variant == result.variant
    assert str(digits_dir) not in line and cell.dataset.startswith("user-")
    assert snapshot(digits_dir) == before  # nothing written into the data folder
    with pytest.raises(AdvisorError, match="finished"):
        training.resume(run, state=state, progress=False)


@pytest.mark.slow
def test_feature_extraction_writes_its_classifier_into_the_network(digit_tensors, hw):
    (x_train, y_train), (x_val, y_val) = digit_tensors
    for classes in (10, 2):  # sklearn keeps a single row for two classes
        keep, keep_val = y_train < classes, y_val < classes
        model = bb.create().eval()
        model.reset_classifier(classes)
        used = training._linear_head(model, x_train[keep], y_train[keep], classes, hw, registry.DEFAULT_BACKBONE,
                                     training._Clock(), until=1e9)
        assert used == int(keep.sum())
        clf = engine.fit_linear(engine.predict(model, x_train[keep], hw, registry.DEFAULT_BACKBONE, features=True).numpy(),
                                y_train[keep].numpy())
        expected = clf.predict(engine.predict(model, x_val[keep_val], hw, registry.DEFAULT_BACKBONE, features=True).numpy())
        got = engine.predict(model, x_val[keep_val], hw, registry.DEFAULT_BACKBONE).argmax(1).numpy()
        assert np.mean(got == expected) >= 0.98  # the same classifier, up to float rounding at the boundary


def test_bad_runs_fail_with_one_clear_error_before_any_work(digits_dir, tmp_path):
    state = MachineState(home=tmp_path / "home")
    with pytest.raises(BudgetError, match="too small"):
        training.train(digits_dir, minutes=0.01, out=tmp_path / "tiny", state=state)
    assert not (tmp_path / "tiny").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    with pytest.raises(AdvisorError, match="not empty.*--force"):
        training.train(digits_dir, minutes=1, out=used, state=state)
    with pytest.raises(AdvisorError, match="inside the data folder"):
        training.train(digits_dir, minutes=1, out=digits_dir / "run", state=state)
    with pytest.raises(AdvisorError, match="not a writable folder"):
        training.train(digits_dir, minutes=1, out=used / "something" / "run", state=state)
    with pytest.raises(AdvisorError, match="Unknown strategy"):
        training.train(digits_dir, minutes=1, strategy="transfer", out=tmp_path / "x", state=state)
    with pytest.raises(AdvisorError, match="no advisor run"):
        training.resume(used, state=state)
    with pytest.raises(AdvisorError, match="No trained model"):
        training.predict(used, digits_dir)
    (used / "model.pt").write_bytes(b"not a model")
    with pytest.raises(AdvisorError, match="not an advisor model"):
        training.predict(used, digits_dir)
