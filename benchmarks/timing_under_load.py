"""Advice on a quiet machine and with CPU-bound processes running beside it, side by side in one run.

Three runs of the same numbers-only ``advisor.recommend`` (which times every strategy on this device):

1. quiet, fresh home: timed now and recorded;
2. with ``--hogs`` CPU-bound processes running, same home: the record is checked (the machine is busy, so it stands);
3. with the processes running, a fresh home: no record to fall back on — timed under load, flagged, and
   recorded as provisional;
4. the same again in that home (another process, as a user's next call): the provisional record is reused,
   nothing is timed again.

The goal: runs 1 and 2 advise the same strategy with epochs in budget within ±25 %; run 3 says the machine was
busy; run 4 costs a quick check, not a timing.

    python benchmarks/timing_under_load.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import advisor
from advisor.measure import throughput
from advisor.state import MachineState

QUERY = dict(n_images=3000, n_classes=10, similarity=0.3, resolution=64, gpu_hours=0.5)


def run(home: Path) -> tuple[advisor.Recommendation, float]:
    t = time.perf_counter()
    rec = advisor.recommend(**QUERY, state=MachineState(home=home))
    return rec, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes to run beside the loaded runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, fresh = Path(tmp) / "home", Path(tmp) / "fresh"
        results = {"quiet": run(home)}
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
        try:
            time.sleep(1.0)
            results[f"{args.hogs} hogs, with record"] = run(home)
            results[f"{args.hogs} hogs, fresh home"] = run(fresh)
            throughput._checked.clear()  # as a user's next call would: a new process, no check remembered
            results[f"{args.hogs} hogs, again"] = run(fresh)
        finally:
            for h in hogs:
                h.kill()
    quiet = results["quiet"][0]
    print(f"advisor {advisor.__version__}; query {QUERY}")
    print(f"{'run':<24}{'advice':<20}{'seconds':>8}  epochs in budget (fine-tune / retrain / scratch)  vs quiet   throughput")
    for name, (rec, secs) in results.items():
        epochs = [rec.estimate(s).epochs_in_budget.value for s in ("fine_tune", "retrain", "scratch")]
        ratio = max(abs(e / q - 1) for e, q in zip(epochs, [quiet.estimate(s).epochs_in_budget.value for s in ("fine_tune", "retrain", "scratch")]))
        cond = rec.throughput.conditions
        load = "" if cond is None or cond.other_load is None else f" (others' load while timed {cond.other_load:.0%})"
        print(f"{name:<24}{rec.strategy:<20}{secs:>8.1f}  {' / '.join(f'{e:8.1f}' for e in epochs):<47}{ratio:>6.0%}   "
              f"{rec.throughput.origin}{load}")
        for w in rec.warnings:
            if w.startswith("Throughput"):
                print(f"{'':<24}warning: {w}")
    loaded = results[f"{args.hogs} hogs, with record"][0]
    same = loaded.strategy == quiet.strategy
    within = all(abs(loaded.estimate(s).epochs_in_budget.value / quiet.estimate(s).epochs_in_budget.value - 1) <= 0.25
                 for s in ("fine_tune", "retrain", "scratch"))
    print(f"with a record: same strategy {'yes' if same else 'NO'}, epochs in budget within ±25 % {'yes' if within else 'NO'}")


if __name__ == "__main__":
    main()
