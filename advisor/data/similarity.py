"""Domain similarity: how close a sample of the user's images is to the backbone's pretraining source.

Measured with the pretrained backbone on a bounded, class-stratified sample, in one forward pass:

* ``imagenet_confidence`` / ``imagenet_entropy``: the ImageNet head's top-1 probability and normalised
  entropy. Photos of ImageNet-like things get confident, low-entropy predictions; digits or X-rays do not.
* ``feature_shift``: every BatchNorm layer stores the mean and variance of its inputs over ImageNet.
  The symmetric KL divergence between those Gaussians and the same statistics on the user's images,
  averaged over channels and layers, measures the distribution shift without needing any ImageNet data.
* ``knn_accuracy`` / ``linear_accuracy``: cross-validated accuracy of 5-NN and logistic regression on the
  frozen pooled features — how well the pretrained features already separate the user's classes.

``score`` (0–1) is the mean of three 0–1 terms: confidence, 1 − entropy and 1/√(1 + feature_shift).
It describes the domain, not the task, so separability is reported beside it but not folded in.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..nets import backbone as bb
from .. import hardware, registry
from ..schemas import Hardware, Similarity

RESOLUTION = 128  # fixed, so similarity scores are comparable across data sets
SAMPLE_SIZE = 128  # images in the sample


def sample_indices(labels: Sequence[int], sample_size: int = SAMPLE_SIZE, seed: int = 0) -> list[int]:
    """Which images the similarity is measured on — one policy for advisor and the meta-dataset alike.

    Class-stratified: ``max(2, sample_size // n_classes)`` random images of each class; with more than
    ``sample_size // 2`` classes, two each of a random subset of that many classes.
    """
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[int(label)].append(i)
    classes = sorted(by_class)
    if len(classes) > sample_size // 2:
        classes = sorted(random.Random(seed).sample(classes, sample_size // 2))
    per_class = max(2, sample_size // len(classes))
    rng = random.Random(seed)
    out: list[int] = []
    for label in classes:
        group = by_class[label]
        out.extend(rng.sample(group, min(per_class, len(group))))
    return out


class _BNStats:
    """Accumulates per-channel input mean/variance of every BatchNorm2d layer through forward hooks."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.sums = [None] * len(self.layers)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, i: int):
        def hook(module, inputs, output):
            x = inputs[0].detach().float()
            s = (x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.numel() / x.shape[1])
            self.sums[i] = s if self.sums[i] is None else tuple(a + b for a, b in zip(self.sums[i], s))
        return hook

    def shift(self) -> float:
        for h in self.handles:
            h.remove()
        kls = []
        for bn, (s1, s2, n) in zip(self.layers, self.sums):
            mean = s1 / n
            var = (s2 / n - mean**2).clamp_min(1e-5)
            ref_mean, ref_var = bn.running_mean.float(), bn.running_var.float().clamp_min(1e-5)
            sym_kl = 0.5 * (var / ref_var + ref_var / var + (mean - ref_mean) ** 2 * (1 / var + 1 / ref_var)) - 1
            kls.append(float(sym_kl.mean()))
        return float(np.mean(kls))


def _cv_accuracy(estimator, features: np.ndarray, labels: np.ndarray) -> float | None:
    counts = np.bincount(labels)
    folds = int(min(3, counts[counts > 0].min()))
    if folds < 2:
        return None
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    return float(cross_val_score(estimator, features, labels, cv=cv).mean())


def measure(
    x: torch.Tensor, y: torch.Tensor, hw: Hardware, backbone: str = registry.DEFAULT_BACKBONE,
    model: nn.Module | None = None, weights: str | None = None, batch_size: int = 64,
) -> Similarity:
    """All similarity measures of uint8 images ``x`` (N, 3, R, R) with labels ``y``."""
    t0 = time.perf_counter()
    model = (model or bb.create(backbone, weights=weights)).to(hw.device).eval()
    stats = _BNStats(model)
    feats, probs = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = bb.normalise(x[i : i + batch_size].to(hw.device), backbone).contiguous(memory_format=hardware.memory_format(hw))
            with hardware.autocast(hw):
                f = model.forward_head(model.forward_features(xb), pre_logits=True)
                logits = model.get_classifier()(f)
            feats.append(f.float().cpu())
            probs.append(logits.float().softmax(1).cpu())
    shift = stats.shift()
    p = torch.cat(probs)
    features, labels = torch.cat(feats).numpy(), y.numpy()
    confidence = float(p.max(1).values.mean())
    entropy = float((-(p * p.clamp_min(1e-12).log()).sum(1)).mean() / math.log(p.shape[1]))
    knn = _cv_accuracy(make_pipeline(StandardScaler(), KNeighborsClassifier(min(5, max(1, len(labels) // 4)))), features, labels)
    linear = _cv_accuracy(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300)), features, labels)
    chance = 1 / len(np.unique(labels))
    separability = None if linear is None else max(0.0, (linear - chance) / (1 - chance))
    score = (confidence + (1 - entropy) + (1 + shift) ** -0.5) / 3
    return Similarity(
        backbone=backbone, sample_size=len(x), resolution=int(x.shape[-1]),
        imagenet_confidence=round(confidence, 4), imagenet_entropy=round(entropy, 4), feature_shift=round(shift, 4),
        knn_accuracy=None if knn is None else round(knn, 4), linear_accuracy=None if linear is None else round(linear, 4),
        separability=None if separability is None else round(separability, 4),
        score=round(score, 4), seconds=round(time.perf_counter() - t0, 3),
    )
