"""Shared by fit_model.py and evaluate.py: read the meta-dataset."""

from __future__ import annotations

from pathlib import Path

from advisor import store

RESULTS = Path(__file__).parent / "results" / "cells.jsonl"


def rows(path: Path = RESULTS) -> list[dict]:
    data = store.read(path)
    if not data:
        raise SystemExit(f"no results in {path}; run benchmarks/collect.py first")
    return data
