"""How far advisor's estimated hardware profiles are from measurements.

1. Published figures: timm's inference benchmarks on the RTX 3090, 4090 and 5090 (``../shared/throughput-priors``):
   the measured speed-up over the 3090 against what memory bandwidth and peak tensor FLOPs predict.
2. ``--measured FILE``: a profile measured on a device (``advisor hardware --save``) against advisor's estimate
   for that device made from the anchor profile (``--anchor``, default the shipped H100 profile), configuration by
   configuration, and against a FLOPs-only estimate (device work alone, no host launch time).

    python benchmarks/estimate_check.py
    python benchmarks/estimate_check.py --measured h100-new.json --device-name h100
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from advisor.measure import profiles

PRIORS = Path(__file__).resolve().parents[2] / "shared" / "throughput-priors"
TABLES = {"rtx3090": "benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv", "rtx4090": "benchmark-infer-amp-nchw-pt291-cu128-4090.csv",
          "rtx5090": "benchmark-infer-amp-nchw-pt291-cu130-5090.csv"}
MODELS = [("tf_efficientnet_lite0", 224), ("resnet10t", 224), ("resnet18", 224)]


def published(folder: Path) -> list[str]:
    acc = profiles.accelerators()
    speeds = {}
    for dev, name in TABLES.items():
        with open(folder / name) as f:
            for row in csv.DictReader(f):
                key = (row["model"], int(row.get("infer_img_size") or row.get("img_size") or 0))
                speeds[(dev, key)] = float(row["infer_samples_per_sec"])
    lines = ["published inference speed-ups over the RTX 3090 (timm) vs the ratios advisor could scale by:",
             f"  {'model':<24}{'device':<10}{'measured':>10}{'bandwidth':>11}{'tensor FLOPs':>14}"]
    errs = {"bandwidth": [], "flops": []}
    for model, side in MODELS:
        base = speeds.get(("rtx3090", (model, side)))
        for dev in ("rtx4090", "rtx5090"):
            got = speeds.get((dev, (model, side)))
            if not base or not got:
                continue
            bw = acc[dev]["bandwidth_gbs"] / acc["rtx3090"]["bandwidth_gbs"]
            fl = acc[dev]["tensor_tflops"] / acc["rtx3090"]["tensor_tflops"]
            ratio = got / base
            errs["bandwidth"].append(abs(bw / ratio - 1))
            errs["flops"].append(abs(fl / ratio - 1))
            lines.append(f"  {model + '@' + str(side):<24}{dev:<10}{ratio:>9.2f}×{bw:>10.2f}×{fl:>13.2f}×")
    lines.append(f"  mean error: bandwidth {statistics.mean(errs['bandwidth']):.0%}, tensor FLOPs {statistics.mean(errs['flops']):.0%}")
    return lines


def against(measured: profiles.HardwareProfile, device_name: str, anchor: profiles.HardwareProfile) -> list[str]:
    est = profiles.estimate(device_name, anchor=anchor)
    index = {(m.variant, m.resolution, m.batch_size): m.images_per_second for m in est.measurements}
    lines = [f"{measured.device.name} measured {measured.time} vs advisor's estimate for '{device_name}' from "
             f"{anchor.device.name} ({anchor.time}):",
             f"  {'configuration':<22}{'batch':>6}{'res':>6}{'measured':>10}{'estimate':>10}{'ratio':>8}"]
    ratios = []
    for m in measured.measurements:
        e = index.get((m.variant, m.resolution, m.batch_size))
        if not (e and m.images_per_second):
            continue
        ratios.append(e / m.images_per_second)
        lines.append(f"  {m.variant:<22}{m.batch_size:>6}{m.resolution:>6}{m.images_per_second:>10.0f}{e:>10.0f}{ratios[-1]:>7.2f}×")
    if ratios:
        within = sum(0.5 <= r <= 2 for r in ratios) / len(ratios)
        lines.append(f"  {len(ratios)} configurations: median ratio {statistics.median(ratios):.2f}×, "
                     f"within 2× {within:.0%}, range {min(ratios):.2f}–{max(ratios):.2f}×")
    else:
        lines.append("  no configuration in common (batch sizes or resolutions differ)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", type=Path, default=PRIORS)
    parser.add_argument("--measured", type=Path, nargs="*", default=[])
    parser.add_argument("--device-name", default="h100")
    parser.add_argument("--anchor", type=Path, default=profiles.ANCHORS["h100"])
    args = parser.parse_args()
    if args.priors.is_dir():
        print("\n".join(published(args.priors)))
    anchor = profiles.load(args.anchor)
    for path in args.measured:
        print()
        print("\n".join(against(profiles.load(path), args.device_name, anchor)))


if __name__ == "__main__":
    main()
