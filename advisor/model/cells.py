"""The meta-dataset: where its cells are stored, and reading them with their shape checked.

A cell is one real run of every strategy on one (data set, images per class, budget k, seed, resolution,
device), written by ``benchmarks/collect.py`` as one JSON line. CPU cells and GPU cells (collected on a lent
GPU, `device` = ``cuda``) are kept in separate files; the learned model is fitted on both, with fine-tune at the
depth the rules advise for each cell (:func:`as_advised`), as ``advisor recommend`` would train it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .. import rules, store
from ..budget import epochs_in
from ..errors import AdvisorError
from ..registry import STRATEGY_NAMES
from ..schemas import Budget, DataFacts, Quantity, RunResult, Similarity, StrategyName, Throughput

RESULTS_DIR = Path(__file__).parents[2] / "benchmarks" / "results"  # in a source checkout
CPU_CELLS = RESULTS_DIR / "cells.jsonl"
GPU_CELLS = RESULTS_DIR / "gpu" / "cells.jsonl"
FILES = (CPU_CELLS, GPU_CELLS)


class RunRecord(RunResult):
    """One strategy's run in a cell, stored under its strategy's (or variant's) name; unknown keys are kept."""

    model_config = ConfigDict(extra="allow")


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


class ContributedCell(BaseModel):
    """One finished ``advisor train`` run, as ``advisor calibrate --export --cells`` writes it for the meta-dataset:
    a partial cell (one strategy trained to its budget, beside feature extraction's accuracy when advisor
    measured it), with the data described by its facts and a fingerprint of its file list, never its path."""

    model_config = ConfigDict(extra="allow")
    schema_: str = Field("advisor-contributed-cell/1", alias="schema")
    key: str
    dataset: str  # "user-" + a hash of the training files' paths and labels
    n_images: int
    n_classes: int
    resolution: int
    channels: int
    similarity: float
    k: float | None  # epoch-equivalents the run reached (None: no budget in epochs)
    runs: dict[StrategyName, RunRecord]  # the one strategy trained
    fe_measured: Quantity | None = None  # feature extraction's cross-validated accuracy on the same data, if measured
    pixel_measured: Quantity | None = None  # the pixel baseline's (advisor.measure.fe_accuracy.measure_pixels), if measured
    speed_ratios: dict[str, float] | None = None  # each trained strategy's images/s ÷ all-layer training's, as planned
    train_images: int
    val_images: int
    device: str
    device_name: str
    advisor_version: str | None = None
    time: str


def contributed(probe_records: list[dict]) -> list[ContributedCell]:
    """The finished ``advisor train`` runs among a machine's probe records, as contributed cells (runs stored
    before advisor kept the run itself are left out)."""
    out = []
    for p in probe_records:
        cell = p.get("cell")
        if p.get("source") != "train" or not cell:
            continue
        facts, name = cell["facts"], cell["strategy"]
        dataset = f"user-{cell.get('dataset') or 'unknown'}"
        out.append(ContributedCell(
            schema="advisor-contributed-cell/1", key=f"{dataset}|{name}|k={cell['k']}|{p['time']}", dataset=dataset,
            n_images=facts["n_images"], n_classes=facts["n_classes"], resolution=facts["resolution"],
            channels=facts["channels"], similarity=facts["similarity"], k=cell["k"], runs={name: cell["run"]},
            fe_measured=cell.get("fe_measured"), pixel_measured=cell.get("pixel_measured"), speed_ratios=cell.get("speed_ratios"), train_images=cell["train_images"], val_images=cell["val_images"],
            device=cell["device"], device_name=p.get("device_name") or "", advisor_version=cell.get("advisor_version"),
            time=p["time"]))
    return out


def read_contributed(paths: list[Path]) -> list[ContributedCell]:
    """The contributed cells in ``paths`` (``advisor calibrate --export --cells`` output), each checked."""
    out = []
    for path in paths:
        for i, row in enumerate(store.read(Path(path)), 1):
            try:
                out.append(ContributedCell.model_validate(row))
            except ValueError as exc:
                raise AdvisorError(f"{path}, line {i}: not a contributed cell ({exc.errors()[0]['loc']}: "
                                   f"{exc.errors()[0]['msg']})") from None
    return out


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


def configuration(row: dict) -> tuple:
    """What a cell's seeds share: data set, images per class, budget k, resolution and device."""
    return row["dataset"], row["per_class"], row["k"], row["resolution"], row.get("device", "cpu")


def by_configuration(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The cells grouped by :func:`configuration` (each group: the seeds of one configuration)."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(configuration(r), []).append(r)
    return out


def inputs(row: dict) -> tuple[DataFacts, Budget, Throughput]:
    """What advisor would have known of a cell before its runs: descriptors, budget and each strategy's speed
    (retrain's from the epochs it made in the budget, the other trained ones by their speed ratios, feature
    extraction's from its forward pass)."""
    facts = DataFacts(n_images=row["n_images"], n_classes=row["n_classes"], resolution=row["resolution"],
                      channels=row["channels"], imbalance=row.get("imbalance", 1.0),
                      similarity=min(1.0, max(0.0, row["similarity"]["score"])))
    budget = Budget(seconds=row["budget_seconds"], given_as=f"{row['k']:g} epoch-equivalents")
    runs, ratios = row["runs"], row.get("speed_ratios", {})
    retrain = row["n_images"] * runs["retrain"]["epochs"] / max(row["budget_seconds"], 1e-6)
    ips = {s: retrain * ratios[s] if s in ratios else row["n_images"] * runs[s]["epochs"] / max(row["budget_seconds"], 1e-6)
           for s in ("fine_tune", "retrain", "scratch")}  # fine-tune at the registry's depth, as advisor times it
    fe = runs["feature_extraction"]
    ips["feature_extraction"] = fe.get("images_per_second") or row["n_images"] / max(fe["seconds"], 1e-6)
    return facts, budget, Throughput(resolution=row["resolution"], batch_size=32, images_per_second=ips,
                                     detail="from the cell's runs", seconds=0)


def pixel_baseline(row: dict) -> Quantity | None:
    """The cell's pixel baseline (measured as advisor measures it, ``benchmarks/collect.py``) as advisor's
    input, or None where the cell has none."""
    p = row.get("pixel_accuracy")
    return None if p is None else Quantity(value=p, source="measured", detail="the cell's pixel baseline")


def advised_depth(row: dict, book: rules.RuleBook, fe: Quantity | None = None) -> int | None:
    """The fine-tune depth the rules set for the cell (what `advisor recommend` would train), from its facts,
    the epochs its speeds buy and FE's accuracy (``fe``, default the cell's own, as measured); None when the
    rules leave the registry's default."""
    facts, budget, tp = inputs(row)
    epochs = {s: epochs_in(budget.seconds, row["n_images"], tp.images_per_second[s]) for s in STRATEGY_NAMES}
    if fe is None:
        fe = Quantity(value=row["runs"]["feature_extraction"]["val_accuracy"], source="measured")
    depth = rules.evaluate(book, rules.rule_facts(facts, budget, epochs, fe)).settings.get("fine_tune_depth")
    return None if depth is None else int(depth)


def as_advised(rows: list[dict], book: rules.RuleBook) -> tuple[list[dict], int]:
    """The cells with fine-tune's run replaced by the variant at the depth the rules advise for it, where the
    cell measured that variant (cells written before the variants keep the 4-stage run); and how many changed.
    Fine-tune's speed ratio stays the 4-stage one: that is the speed advisor measures before it decides."""
    out, changed = [], 0
    for r in rows:
        depth = advised_depth(r, book)
        variant = (r.get("variants") or {}).get(f"fine_tune@{depth}") if depth else None
        if variant is not None:
            runs = {**r["runs"], "fine_tune": {**r["runs"]["fine_tune"], **variant}}
            r = {**r, "runs": runs, "winner": max(STRATEGY_NAMES, key=lambda s: runs[s]["val_accuracy"])}
            changed += 1
        out.append(r)
    return out, changed
