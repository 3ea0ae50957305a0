"""How much the fine-tune depth matters: per budget, how often fine-tune at its best depth (1, 2 or the default
4 stages, the cells' ``variants``) beats the best of the four strategies as the cells record them, and by how
much. A maximum over three noisy runs is biased upward, so read the shares as an upper bound.

    python benchmarks/depth_gain.py
"""

from __future__ import annotations

import numpy as np

from advisor.model import cells
from advisor.registry import STRATEGY_NAMES

BUDGETS = (0.3, 1, 3, 10, 30, 100, 300, 1000)


def main() -> None:
    rows = [r for r in cells.read(list(cells.FILES), required=True) if r.get("variants")]
    print(f"{len(rows)} cells with fine-tune depth variants")
    print(f"{'k':>6} {'cells':>6} {'best depth beats best of 4':>28} {'mean gain then':>16} {'mean difference':>16}")
    by_k: dict[float, list[float]] = {}
    for r in rows:
        best = max(r["runs"][s]["val_accuracy"] for s in STRATEGY_NAMES)
        ft = max([r["runs"]["fine_tune"]["val_accuracy"]]
                 + [v["val_accuracy"] for name, v in r["variants"].items() if name.startswith("fine_tune")])
        k = min(BUDGETS, key=lambda b: abs(np.log(b) - np.log(r["k"])))
        by_k.setdefault(k, []).append(100 * (ft - best))
    for k in sorted(by_k):
        g = np.array(by_k[k])
        wins = g > 0
        print(f"{k:>6g} {len(g):>6} {wins.mean():>28.0%} {(g[wins].mean() if wins.any() else 0):>15.2f}p {g.mean():>15.2f}p")


if __name__ == "__main__":
    main()
