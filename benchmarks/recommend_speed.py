"""How long `advisor recommend` takes on folders of 1k and 10k real images, and how fast the scan is.

Exports Fashion-MNIST (Debian package dataset-fashion-mnist) to PNG folders in a temporary directory
(past its 70k images, each class is topped up with mirrored copies of its own images), then, for each size: times the scan alone (files/s, best of 3) and `advisor recommend` end to end, both
in-process (advisor.recommend) and as the command a user types (a fresh process, imports included).
advisor's home is a fresh temporary one: the in-process run is a machine's first (throughput timed now and
recorded), the command after it reuses that record once a quick check agrees.
Goal: ≤ 10 s for 10k images and ≤ 30 s for 100k on 2 CPU cores. The breakdown includes feature extraction
measured on the images (advisor/measure/fe_accuracy.py) and what share of the rest it adds (goal: ≤ 30 % at 10k).

    python benchmarks/recommend_speed.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import advisor
from advisor.data import datasets
from advisor.data.scan import scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--source", default="fashion-mnist", choices=list(datasets.SOURCES))
    args = parser.parse_args()
    print(f"torch threads: {__import__('torch').get_num_threads()}, cpus: {os.cpu_count()}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}")
    print(f"{'images':>8} {'scan s':>8} {'files/s':>9} {'first, in-process s':>20} {'then the CLI s':>15}  breakdown of the first")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ADVISOR_HOME"] = str(Path(tmp) / "home")  # no records from earlier runs; the CLI inherits it
        for n in args.sizes:
            folder = _top_up(datasets.export(args.source, Path(tmp) / f"{args.source}-{n}", per_class=n // 10), n // 10)
            scan_s = min(_timed(lambda: scan(folder))[1] for _ in range(3))
            rec, rec_s = _timed(lambda: advisor.recommend(folder, gpu_hours=1))
            cli_s = _timed(lambda: subprocess.run([sys.executable, "-m", "advisor.cli", "recommend", "--data", str(folder),
                                                   "--gpu-hours", "1", "--json"], check=True, capture_output=True))[1]
            fe = rec.estimate("feature_extraction").accuracy
            fe_s = float(re.search(r", ([\d.]+) s;", fe.detail).group(1)) if fe is not None and fe.source == "measured" else 0.0
            breakdown = (f"scan {rec.profile.scan_seconds:.1f} s, similarity {rec.similarity.seconds:.1f} s, "
                         f"throughput {rec.throughput.seconds:.1f} s at {rec.throughput.resolution}px, "
                         f"FE measured {fe_s:.1f} s (+{fe_s / max(rec_s - fe_s, 1e-9):.0%} on the rest)")
            files = rec.profile.n_images + rec.profile.n_eval_images
            print(f"{files:>8} {scan_s:>8.2f} {files / scan_s:>9.0f} {rec_s:>20.1f} {cli_s:>15.1f}  {breakdown}", flush=True)


def _top_up(folder: Path, per_class: int) -> Path:
    """Fill each class folder to ``per_class`` images with mirrored copies of its own images."""
    from PIL import Image, ImageOps

    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(cls.iterdir())
        for i in range(per_class - len(files)):
            with Image.open(files[i % len(files)]) as im:
                ImageOps.mirror(im).save(cls / f"m{i:05d}.png")
    return folder


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


if __name__ == "__main__":
    main()
