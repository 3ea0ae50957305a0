"""The meta-dataset: where its cells are stored, and reading them with their shape checked.

A cell is one real run of every strategy on one (data set, images per class, budget k, seed, resolution,
device), written by ``benchmarks/collect.py`` as one JSON line. CPU cells and GPU cells (collected on a lent
GPU, `device` = ``cuda``) are kept in separate files; the learned model is fitted on both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from . import store
from .errors import AdvisorError
from .schemas import Similarity, StrategyName

RESULTS_DIR = Path(__file__).parents[1] / "benchmarks" / "results"  # in a source checkout
CPU_CELLS = RESULTS_DIR / "cells.jsonl"
GPU_CELLS = RESULTS_DIR / "gpu" / "cells.jsonl"
FILES = (CPU_CELLS, GPU_CELLS)


class RunRecord(BaseModel):
    """One strategy's run in a cell."""

    model_config = ConfigDict(extra="allow")
    val_accuracy: float
    epochs: float
    seconds: float
    images_per_second: float
    variant: str = ""  # e.g. fine_tune@4, scratch@cnn_s (empty in cells written before the variants existed)


class CellRecord(BaseModel):
    """One meta-dataset row; unknown keys are kept."""

    model_config = ConfigDict(extra="allow")
    key: str
    dataset: str
    per_class: int
    k: float  # budget in epoch-equivalents (advisor.units.EpochEquivalents)
    seed: int
    n_images: int
    n_classes: int
    resolution: int
    channels: int
    similarity: Similarity
    runs: dict[StrategyName, RunRecord]
    variants: dict[str, RunRecord] = {}
    device: str = "cpu"
    device_name: str = ""
    winner: StrategyName
    schema_version: int = 1


def read(paths: tuple[Path, ...] | list[Path] = FILES, required: bool = False) -> list[dict]:
    """Every cell in ``paths`` (files that do not exist are skipped), each checked against :class:`CellRecord`;
    with ``required``, finding none is an error."""
    rows = []
    for path in paths:
        for i, row in enumerate(store.read(Path(path)), 1):
            try:
                CellRecord.model_validate({**row, "schema_version": row.get("schema", 1)})
            except ValueError as exc:
                raise AdvisorError(f"{path}, line {i}: not a meta-dataset cell ({exc.errors()[0]['loc']}: "
                                   f"{exc.errors()[0]['msg']})") from None
            rows.append(row)
    if required and not rows:
        raise AdvisorError(f"no cells in {', '.join(map(str, paths))}; run benchmarks/collect.py first")
    return rows
