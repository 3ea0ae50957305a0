"""The meta-dataset sweep runs a real cell, appends it once, and resumes without redoing it."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import collect  # noqa: E402  (a script in benchmarks/, not part of the package)

from advisor.model import cells  # noqa: E402

from advisor import store  # noqa: E402


@pytest.mark.slow
def test_a_cell_runs_every_strategy_and_resumes(tmp_path, capsys):
    out = tmp_path / "cells.jsonl"
    cell = collect.Cell("lfw", 5, 1, 0)
    collect.collect([cell], out)
    collect.collect([cell], out)  # already there: skipped
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["key"] == cell.key and row["n_images"] == 10 and row["test_images"] == 60
    assert set(row["runs"]) == {"feature_extraction", "fine_tune", "retrain", "scratch"}
    assert row["winner"] == max(row["runs"], key=lambda s: row["runs"][s]["val_accuracy"])
    assert row["budget_seconds"] == pytest.approx(row["epoch_seconds"], abs=0.01)
    assert 0 <= row["similarity"]["score"] <= 1
    assert "lfw" in collect.summary(out) and "1 cells" in collect.summary(out)
    assert "1 already in" in capsys.readouterr().out


@pytest.mark.slow
def test_test_images_never_overlap_training_images():
    x, y, classes, test = collect.pool("lfw")
    train_idx, _, _ = collect._subset("lfw", 20, 1, 32)
    assert not test[train_idx].any()


@pytest.mark.slow
def test_update_re_measures_similarity_and_re_runs_scratch_keeping_the_old_values():
    v1 = [r for r in store.read(cells.RESULTS_DIR / "cells_v1.jsonl") if r["dataset"] == "lfw" and r["per_class"] == 5]
    if not v1:
        pytest.skip("no version-1 cells to update")
    row = min(v1, key=lambda r: r["k"])
    new = collect.update_row(row, ("scratch", "fine_tune@1"))
    assert new["schema"] == 2 and new["key"] == row["key"] and new["n_images"] == row["n_images"]
    assert new["similarity_v1"] == row["similarity"] and new["similarity"]["sample_size"] == row["n_images"]
    assert new["runs"]["scratch"]["variant"] == "scratch@cnn_s" and new["runs_v1"]["scratch"] == row["runs"]["scratch"]
    assert new["variants"]["fine_tune@1"]["variant"] == "fine_tune@1"
    assert new["runs"]["retrain"] == row["runs"]["retrain"]  # what was not re-run is kept
    assert new["winner"] == max(new["runs"], key=lambda s: new["runs"][s]["val_accuracy"])
