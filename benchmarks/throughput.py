"""Training images/s of advisor's engine vs the plain loop the tutorials use, side by side in one run.

Both train the same model (EfficientNet-Lite0 from ImageNet weights, every layer: the retrain strategy) at
the same resolution and batch size with AdamW, on the same real images (Fashion-MNIST, or scikit-learn's
digits when the Debian package is missing) written as PNG files:

* tutorial: ``torchvision.datasets.ImageFolder`` + ``DataLoader(num_workers=2, shuffle=True)`` with
  per-sample transforms (Resize, RandomCrop with padding, RandomHorizontalFlip, ToTensor, Normalize),
  contiguous fp32 tensors.
* engine: images decoded once to a uint8 tensor, batches cut and augmented on the device, channels_last,
  (bf16 autocast on CUDA) — :func:`advisor.nets.engine.train_step`.

The two loops alternate in rounds so that drift in machine load hits both alike. Goal (issue 4): ≥ 1.5×.

    python benchmarks/throughput.py [--resolution 64 128] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

import advisor
from advisor.nets import backbone as bb
from advisor.data import datasets, images
from advisor.nets import engine, strategies
from advisor import hardware, registry
from advisor.data.scan import scan


def tutorial_loop(folder: Path, res: int, batch: int, steps: int, hw, workers: int) -> float:
    tf = T.Compose([
        T.Resize((res, res)), T.RandomCrop(res, padding=res // 8, padding_mode="reflect"), T.RandomHorizontalFlip(),
        T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])
    data = tv_datasets.ImageFolder(str(folder), transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=False)
    model = bb.create().to(hw.device)
    model.reset_classifier(len(data.classes))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it = iter(loader)
    done, t0 = 0, None
    while done < steps + 1:
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        x, y = x.to(hw.device), y.to(hw.device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        if done == 1:  # first step (worker start-up, warm-up) untimed
            t0 = time.perf_counter()
    return steps * batch / (time.perf_counter() - t0)


def engine_loop(folder: Path, res: int, batch: int, steps: int, hw) -> tuple[float, float]:
    """(steady-state images/s, images/s of the one-time decode)."""
    t = time.perf_counter()
    x, y = images.load(scan(folder).items, res)
    decode_ips = len(x) / (time.perf_counter() - t)
    strat = registry.get("retrain")
    model = strategies.build(strat, int(y.max()) + 1).to(hw.device).to(memory_format=hardware.memory_format(hw))
    opt = torch.optim.AdamW(strategies.param_groups(model, strat))
    x, y = x.to(hw.device), y.to(hw.device)
    strategies.set_train_mode(model, strat, "efficientnet_lite0")
    g = torch.Generator().manual_seed(0)
    t0 = None
    for i in range(steps + 1):
        idx = torch.randint(0, len(x), (batch,), generator=g).to(hw.device)
        engine.train_step(model, opt, x[idx], y[idx], strat, hw, registry.DEFAULT_BACKBONE, flip=True)
        if i == 0:
            t0 = time.perf_counter()
    if hw.device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0), decode_ips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    hw = hardware.detect()
    source = "fashion-mnist" if datasets.FASHION_DIR.is_dir() else "digits"
    print(f"advisor {advisor.__version__}, torch {torch.__version__}, {hw.name}, {torch.get_num_threads()} threads; "
          f"{args.images} {source} PNGs, batch {args.batch}, {args.steps} timed steps × {args.rounds} rounds, "
          f"DataLoader workers {args.workers}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = datasets.export(source, Path(tmp) / source, per_class=args.images // 10)
        print(f"{'res':>5} {'tutorial img/s':>15} {'engine img/s':>13} {'ratio':>7}   engine one-time decode")
        for res in args.resolution:
            tut, eng, dec = [], [], []
            for _ in range(args.rounds):
                tut.append(tutorial_loop(folder, res, args.batch, args.steps, hw, args.workers))
                e, d = engine_loop(folder, res, args.batch, args.steps, hw)
                eng.append(e)
                dec.append(d)
            t, e = statistics.median(tut), statistics.median(eng)
            print(f"{res:>5} {t:>15.1f} {e:>13.1f} {e / t:>6.2f}×   {statistics.median(dec):.0f} img/s "
                  f"(rounds: tutorial {', '.join(f'{v:.0f}' for v in tut)}; engine {', '.join(f'{v:.0f}' for v in eng)})",
                  flush=True)


if __name__ == "__main__":
    main()
