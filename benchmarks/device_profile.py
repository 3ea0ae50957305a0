"""Measure a device's training speed for every configuration advisor plans: the data a hardware profile holds.

For each configuration (feature extraction's forward pass; fine-tune at each depth; retrain; each scratch
network at the resolutions it is meant for), each resolution and each batch size: images/s from the median
of timed steps (warm-up steps untimed, at least ``--min-steps`` and ``--min-seconds`` timed), the spread of
the step times (interquartile range ÷ median) and the peak memory. Written as one JSON file.

    python benchmarks/device_profile.py --out benchmarks/results/profiles/cpu.json --resolution 32 64 --batch 8 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import advisor
from advisor.nets import engine
from advisor import hardware, registry
from advisor.measure.profiles import configurations


def measure(strategy: registry.Strategy, resolution: int, batch: int, hw, min_steps: int, min_seconds: float) -> dict:
    hardware.reset_peak_memory(hw)
    t0 = time.perf_counter()
    try:
        times = engine.step_times(strategy, resolution, batch, hw, steps=min_steps, min_seconds=min_seconds, warmup=3)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"variant": strategy.variant, "resolution": resolution, "batch_size": batch, "error": "out of memory"}
    med = statistics.median(times)
    q1, q3 = np.percentile(times, [25, 75])
    return {
        "variant": strategy.variant, "resolution": resolution, "batch_size": batch,
        "images_per_second": round(batch / med, 2), "step_ms_median": round(med * 1000, 3),
        "spread": round(float(q3 - q1) / med, 4), "steps": len(times),
        "peak_memory_mb": round(hardware.peak_memory_mb(hw), 1), "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resolution", type=int, nargs="+", default=[32, 64, 128, 224])
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--min-steps", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--device", choices=["cpu", "cuda"])
    args = parser.parse_args()
    hw = hardware.detect(args.device)
    print(f"advisor {advisor.__version__}, torch {torch.__version__}, {hw.name}, {hw.precision}", flush=True)
    rows = []
    profile = {
        "device": hw.model_dump(), "torch_version": torch.__version__, "advisor_version": advisor.__version__,
        "cuda": torch.version.cuda, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": f"median of ≥{args.min_steps} timed steps and ≥{args.min_seconds} s after 3 warm-up steps; "
                  "random pixels; fine-tune/retrain/scratch: one AdamW training step; feature extraction: a forward pass",
        "measurements": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for res in args.resolution:
        for strat in configurations(res):
            for batch in args.batch:
                row = measure(strat, res, batch, hw, args.min_steps, args.min_seconds)
                rows.append(row)
                print(f"{row['variant']:<22} {res:>4}px batch {batch:>4}: "
                      + (f"{row['images_per_second']:>9.1f} img/s  spread {row['spread']:.2f}  {row['peak_memory_mb']:.0f} MB"
                         if "error" not in row else row["error"]), flush=True)
                tmp = args.out.with_suffix(".tmp")  # rewritten after every row: a stopped run keeps what it measured
                tmp.write_text(json.dumps(profile, indent=1))
                tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
