"""Feature extraction measured on the user's own images, before advice is given — and beside it, what the raw
pixels alone reach.

Frozen pretrained features of a class-stratified subset (capped by time on a CPU, all images up to
:data:`IMAGES_GPU` on a GPU), the engine's standardised logistic regression, k-fold cross-validated. The
accuracy and its interval (binomial, over the held-out predictions) are what the gain model builds on:
what feature extraction reaches on *this* data, instead of a prediction from a few numbers.

The pixel baseline (:func:`measure_pixels`) is a cross-validated linear classifier (standardised ridge: closed
form, ~75× faster than the logistic regression on 2,000 images and within a few points of it) on the images' raw
pixels at :data:`PIXEL_SIDE` px, no network: up to :data:`PIXEL_IMAGES` training images, decoded that small, so
it costs about a second. How far a linear model on pixels gets with this much data tells centred digits (high) from
photos and drawings (low), and what pretrained features add over it; the gain model reads it.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..nets import backbone as bb
from ..nets import engine
from ..data import images
from .. import registry
from ..data.scan import ScannedData, fingerprint as files_fingerprint
from ..schemas import Hardware, Quantity
from ..units import accuracy_interval

SECONDS_CPU = 2.0  # embedding time the measurement may take on a CPU (the subset is sized to it)
IMAGES_CPU = 500  # ... and at most this many images there (cross-validation's sampling error ≤ 2.3 points)
IMAGES_MIN = 100  # never fewer (unless the data has fewer)
IMAGES_GPU = 20_000  # on a GPU: every image up to this many
FOLDS = 3
PIXEL_SIDE = 16  # the pixel baseline's images: 16 × 16 × 3 = 768 numbers each, coarse shape and colour
PIXEL_IMAGES = 2000  # the pixel baseline uses at most this many training images (class-stratified)
PIXEL_ALPHA = 100.0  # the pixel baseline's ridge penalty (on standardised pixels)
C = 0.1  # L2 strength of the cross-validated classifier (the engine picks among 0.01–1 on held-out images)


def subset_size(n_images: int, hw: Hardware, fe_images_per_second: float | None) -> int:
    """How many images the measurement uses: all up to :data:`IMAGES_GPU` on a GPU; on a CPU what
    :data:`SECONDS_CPU` of embedding buys at the measured FE speed, within [IMAGES_MIN, IMAGES_CPU]."""
    if hw.device == "cuda":
        return min(n_images, IMAGES_GPU)
    by_time = int(SECONDS_CPU * fe_images_per_second) if fe_images_per_second else IMAGES_CPU // 2
    return min(n_images, max(IMAGES_MIN, min(IMAGES_CPU, by_time)))


def fingerprint(data: ScannedData, backbone: str, resolution: int, weights: str | None) -> str:
    """What identifies one measurement: the training files (path, class, size), backbone, weights and resolution
    (not the subset's size, which follows the timed speed: a measurement is reused whatever the next timing)."""
    return files_fingerprint(data.split("train"), f"{backbone}|{weights}|{resolution}")


def logistic():
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300))


def ridge():
    return make_pipeline(StandardScaler(), RidgeClassifier(alpha=PIXEL_ALPHA))


def cross_validated(features: np.ndarray, labels: np.ndarray, folds: int = FOLDS,
                    classifier=logistic) -> tuple[float, int, int] | str:
    """(accuracy, held-out predictions, folds) of ``classifier()`` (default the standardised logistic regression),
    or why it cannot be measured."""
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if len(counts) < 2:
        return "only one class"
    folds = int(min(folds, counts.min()))
    if folds < 2:
        return f"a class has {counts.min()} image: cross-validation needs at least 2 of each class"
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    right = 0
    for train, test in cv.split(features, labels):
        clf = classifier().fit(features[train], labels[train])
        right += int((clf.predict(features[test]) == labels[test]).sum())
    return right / len(labels), len(labels), folds


def _measured(features: np.ndarray, labels: np.ndarray, classifier, what: str, total_images: int | None,
              t0: float) -> Quantity | str:
    """:func:`cross_validated` as a ``measured`` Quantity with its 80 % (binomial) interval, or why it cannot be;
    ``what`` names the classifier and its inputs in the detail."""
    found = cross_validated(features, labels, classifier=classifier)
    if isinstance(found, str):
        return found
    acc, n, folds = found
    low, high = accuracy_interval(acc, n)
    of = f" of {total_images}" if total_images and total_images > n else ""
    return Quantity(value=round(acc, 4), source="measured", low=round(low, 4), high=round(high, 4),
                    detail=f"{folds}-fold cross-validated {what.format(images=f'{n}{of} images')}, "
                    f"{time.perf_counter() - t0:.1f} s; 80 % interval (binomial)")


def measure(x: torch.Tensor, y: torch.Tensor, hw: Hardware, backbone: str = registry.DEFAULT_BACKBONE, weights: str | None = None,
            total_images: int | None = None) -> Quantity | str:
    """FE's cross-validated accuracy on uint8 images ``x`` as a ``measured`` Quantity with its 80 % interval,
    or a one-line reason why it could not be measured."""
    t0 = time.perf_counter()
    model = bb.create(backbone, weights=weights).to(hw.device)
    features = engine.predict(model, x, hw, backbone, features=True).numpy()
    return _measured(features, y.numpy(), logistic, f"logistic regression on frozen {backbone} features of {{images}} "
                     f"at {x.shape[-1]}px", total_images, t0)


def measure_data(data: ScannedData, hw: Hardware, resolution: int, size: int, backbone: str = registry.DEFAULT_BACKBONE,
                 weights: str | None = None) -> Quantity | str:
    """:func:`measure` on a class-stratified subset of ``size`` training images of ``data``, decoded at ``resolution``."""
    train = data.split("train")
    per_class = max(2, math.ceil(size / max(1, len(data.classes))))
    sample = images.stratified(train, per_class)[: max(size, 2 * len(data.classes))]
    x, y = images.load(sample, resolution)
    if len(x) == 0:
        return "none of the sampled images could be decoded"
    return measure(x, y, hw, backbone, weights, total_images=len(train))


def measure_pixels(x: torch.Tensor, y: torch.Tensor, total_images: int | None = None) -> Quantity | str:
    """The pixel baseline: :func:`cross_validated` on the raw pixels of uint8 images ``x`` (N, 3, R, R), shrunk
    to :data:`PIXEL_SIDE` px when larger, as a ``measured`` Quantity with its 80 % interval; or why it cannot be."""
    t0 = time.perf_counter()
    if x.shape[-1] != PIXEL_SIDE:
        x = torch.nn.functional.interpolate(x.float(), size=(PIXEL_SIDE, PIXEL_SIDE), mode="bilinear", antialias=True,
                                            align_corners=False).round().clamp(0, 255)
    return _measured(x.float().flatten(1).numpy() / 255, y.numpy(), ridge,
                     f"ridge classifier on the raw pixels ({PIXEL_SIDE} px, no network) of {{images}}", total_images, t0)


def measure_pixels_data(data: ScannedData, size: int = PIXEL_IMAGES) -> Quantity | str:
    """:func:`measure_pixels` on a class-stratified subset of ``data``'s training images: at most
    ⌈``size`` ÷ classes⌉ (and at least 2) of each class, as the meta-dataset's cells draw it."""
    train = data.split("train")
    x, y = images.load(images.stratified(train, max(2, math.ceil(size / max(1, len(data.classes))))), PIXEL_SIDE)
    if len(x) == 0:
        return "none of the sampled images could be decoded"
    return measure_pixels(x, y, total_images=len(train))


def pixel_fingerprint(data: ScannedData) -> str:
    """What identifies one pixel-baseline measurement: the training files and the baseline's settings."""
    return files_fingerprint(data.split("train"), f"raw-pixels|{PIXEL_SIDE}|{PIXEL_IMAGES}")
