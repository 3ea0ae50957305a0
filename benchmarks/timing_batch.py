"""Which timing predicts real training speed: steps timed at a small batch, or at the batch training uses.

Side by side in one run, on this device: each strategy's images/s timed by :func:`advisor.measure.timing.time_configurations`
at ``--small`` and at the planned ``--batch``, before and after real training runs (:func:`advisor.nets.engine.run`, the
loop advisor's plans and probes use) at ``--batch``. Prints each timing ÷ the real runs' images/s (1.00: exact), and
the load other processes put on the CPUs meanwhile.

    python benchmarks/timing_batch.py
"""

from __future__ import annotations

import argparse
import statistics

import torch

from advisor.nets import engine

from advisor import hardware

from advisor.measure import timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="the planned batch (the rules' CPU default)")
    parser.add_argument("--small", type=int, default=8, help="the small batch to compare")
    parser.add_argument("--seconds", type=float, default=8.0, help="training seconds of each real run")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    hw = hardware.detect(args.device)
    n, res = 512, args.resolution
    configs = {s: c for s, c in timing.strategy_configs(res, n).items() if s != "feature_extraction"}
    gen = torch.Generator().manual_seed(0)
    train = (torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=gen), torch.arange(n) % 10)
    val = (train[0][:64], train[1][:64])
    clock = timing.CpuClock()
    timed: dict[int, list[dict[str, float]]] = {args.small: [], args.batch: []}
    trained: dict[str, list[float]] = {s: [] for s in configs}
    for _ in range(2):  # timings, real runs, timings again: drift in load shows as a gap between the two timings
        for batch in timed:
            timed[batch].append(timing.time_configurations(configs, batch, hw).images_per_second)
        for name, (strat, _) in configs.items():
            r = engine.run(strat, train, val, 10, hw, seconds=args.seconds, batch_size=args.batch)
            trained[name].append(r.images_per_second)
    load = clock.other_load()
    print(f"{hw.name}, {res}px; real runs at batch {args.batch}, {args.seconds:g} s each, twice; "
          f"other processes used {'an unknown share' if load is None else f'{load:.0%}'} of the CPUs")
    print(f"{'strategy':<12}{'trained img/s':>15}" + "".join(f"{f'timed @{b}':>12}{'÷ trained':>11}" for b in timed))
    for name in configs:
        real = statistics.mean(trained[name])
        cols = "".join(f"{statistics.mean(t[name] for t in timed[b]):>12.1f}"
                       f"{statistics.mean(t[name] for t in timed[b]) / real:>11.2f}" for b in timed)
        print(f"{name:<12}{real:>15.1f}{cols}")


if __name__ == "__main__":
    main()
