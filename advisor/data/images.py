"""Decode images once into uint8 tensors at a fixed resolution, and draw class-stratified samples."""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import printable
from .scan import ImageItem


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; transparent parts are pasted on white."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        canvas = Image.new("RGB", im.size, (255, 255, 255))
        canvas.paste(im, mask=im.getchannel("A"))
        return canvas
    if im.mode in ("I", "I;16", "F"):
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        im = Image.fromarray(((arr - lo) / (hi - lo or 1) * 255).astype(np.uint8))
    return im.convert("RGB")


def square(im: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop: (size, size, 3) uint8."""
    im = to_rgb(im)
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=2.0 if scale < 0.5 else None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.array(im.crop((left, top, left + size, top + size)))


def _decode(path: str, size: int) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
            return square(im, size)
    except Exception:  # a file whose header read but whose data is broken
        return None


def load(items: Sequence[ImageItem], size: int, workers: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``items`` to a uint8 tensor (N, 3, size, size) and their labels; broken files are skipped."""
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda it: _decode(it.path, size), items))
    keep = [i for i, a in enumerate(arrays) if a is not None]
    if len(keep) < len(items):
        bad = [items[i].path for i, a in enumerate(arrays) if a is None]
        warnings.warn(f"skipped {len(bad)} image(s) that could not be decoded, e.g. {printable(bad[0])}", stacklevel=2)
    if not keep:
        return torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    x = torch.from_numpy(np.stack([arrays[i] for i in keep])).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([items[i].label for i in keep], dtype=torch.long)
    return x, y


def stratified(items: Sequence[ImageItem], per_class: int, seed: int = 0) -> list[ImageItem]:
    """At most ``per_class`` items of each class, drawn at random (reproducibly)."""
    by_class: dict[int, list[ImageItem]] = defaultdict(list)
    for it in items:
        by_class[it.label].append(it)
    rng = random.Random(seed)
    out: list[ImageItem] = []
    for label in sorted(by_class):
        group = by_class[label]
        out.extend(rng.sample(group, min(per_class, len(group))))
    return out


def split_stratified(items: Sequence[ImageItem], val_fraction: float, seed: int = 0) -> tuple[list[ImageItem], list[ImageItem]]:
    """Split into (train, val) per class; every class keeps at least one training image."""
    by_class: dict[int, list[ImageItem]] = defaultdict(list)
    for it in items:
        by_class[it.label].append(it)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        group = list(by_class[label])
        rng.shuffle(group)
        n_val = min(len(group) - 1, max(1, round(len(group) * val_fraction))) if len(group) > 1 else 0
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    return train, val
