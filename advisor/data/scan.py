"""Scan a data folder: find the layout, the classes and every image, reading headers only.

Two layouts are understood:

* ImageFolder: ``root/<class>/**/<image>``.
* Split: ``root/train/<class>/…`` plus ``root/val/`` (or ``valid``, ``validation``, ``test``) with the
  same class folders; ``train`` is what is trained on, the other split is for evaluation.

Nothing is ever written into the folder.
"""

from __future__ import annotations

import hashlib
import os
import stat
import statistics
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import DataError, printable
from ..schemas import ClassCount, DataProfile

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
EVAL_SPLITS = ("val", "valid", "validation", "test")


@dataclass
class ImageItem:
    path: str
    label: int
    split: str  # "train" or "eval"
    size: tuple[int, int]
    mode: str


def fingerprint(items: list[ImageItem], context: str = "", length: int = 20) -> str:
    """What identifies a set of images without naming their folder in what is shared: a hash of ``context`` and
    each file's path, class and size (a measurement on them is reused while they stay the same)."""
    h = hashlib.sha1(context.encode("utf-8", "surrogateescape"))
    for it in items:
        h.update(f"{it.path}|{it.label}|{it.size}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:length]


@dataclass
class ScannedData:
    """Every readable image of a folder, with its class; the input to profiling and loading."""

    root: Path
    layout: str
    classes: list[str]
    items: list[ImageItem]
    unreadable: list[str] = field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0

    def split(self, name: str) -> list[ImageItem]:
        return [it for it in self.items if it.split == name]


def _header(path: str) -> tuple[tuple[int, int], str] | str:
    """(size, mode) from the file's header, or the reason it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'unreadable'}"


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> tuple[list[str], int, list[str]]:
    """Image files under ``folder`` (recursive, sorted), how many other files were skipped, and the paths with
    an image's name that are not regular files (FIFOs, sockets, devices: opening one could block forever)."""
    found, ignored, special = [], 0, []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = os.path.join(dirpath, name)
                try:
                    regular = stat.S_ISREG(os.stat(path).st_mode)
                except OSError:  # a broken link: reported as unreadable when its header is read
                    regular = True
                (found if regular else special).append(path)
            else:
                ignored += 1
    return found, ignored, special


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"Data folder '{root}' does not exist.")
    if not root.is_dir():
        raise DataError(f"'{root}' is a file; --data must be a folder with one sub-folder per class.")


def _layout(root: Path) -> tuple[str, dict[str, Path]]:
    subdirs = {p.name.lower(): p for p in _class_dirs(root)}
    eval_name = next((name for name in EVAL_SPLITS if name in subdirs), None)
    if "train" in subdirs and eval_name and _class_dirs(subdirs["train"]):
        return "split", {"train": subdirs["train"], "eval": subdirs[eval_name]}
    return "imagefolder", {"train": root}


def scan(root: str | os.PathLike, workers: int = 8, progress: bool = False) -> ScannedData:
    """Find every image of a labelled folder and read its header.

    Raises :class:`DataError` for a missing path, a file, an empty folder, fewer than two classes, a class
    without readable images, or a folder with no readable images at all.
    """
    t0 = time.perf_counter()
    root = Path(root).expanduser()
    _check_root(root)
    layout, splits = _layout(root)
    class_dirs = _class_dirs(splits["train"])
    if not class_dirs:
        loose, _, _ = _files(root)
        hint = f" (found {len(loose)} images directly in it)" if loose else ""
        raise DataError(f"'{root}' has no class sub-folders{hint}; put each class's images in a folder named after it.")
    classes = [p.name for p in class_dirs]
    if len(classes) < 2:
        raise DataError(f"'{root}' has a single class ('{classes[0]}'); a classifier needs at least two class folders.")

    jobs: list[tuple[str, int, str]] = []
    ignored, special = 0, []
    for split, folder in splits.items():
        for label, name in enumerate(classes):
            if not (folder / name).is_dir():
                continue
            files, skipped, not_regular = _files(folder / name)
            ignored += skipped
            special += not_regular
            jobs.extend((path, label, split) for path in files)

    with ThreadPoolExecutor(workers) as pool:
        headers = pool.map(_header, (path for path, _, _ in jobs), chunksize=64)
        headers = list(tqdm(headers, total=len(jobs), desc="reading headers", unit="file", leave=False,
                            disable=not progress or len(jobs) < 5000))
    items, unreadable = [], []
    for (path, label, split), header in zip(jobs, headers):
        if isinstance(header, str):
            unreadable.append(printable(f"{os.path.relpath(path, root)}: {header}"))
        else:
            items.append(ImageItem(path, label, split, header[0], header[1]))

    counts = Counter(it.label for it in items if it.split == "train")
    if not items:
        raise DataError(f"'{root}' holds no readable images ({len(unreadable)} unreadable, {ignored} other files).")
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise DataError(
            f"{len(empty)} class folder(s) have no readable training images: {', '.join(empty[:5])}"
            f"{' …' if len(empty) > 5 else ''}; add images or remove the folder."
        )
    if special:
        warnings.warn(f"skipped {len(special)} path(s) that are not regular files (FIFO, socket or device), "
                      f"e.g. {printable(os.path.relpath(special[0], root))}", stacklevel=2)
    if unreadable:
        warnings.warn(f"skipped {len(unreadable)} unreadable file(s), e.g. {unreadable[0]}", stacklevel=2)
    return ScannedData(root, layout, classes, items, unreadable, ignored, time.perf_counter() - t0)


def profile(data: ScannedData) -> DataProfile:
    """Summarise a scan: counts per class, imbalance, image sizes and modes."""
    train = data.split("train")
    per_class = Counter(it.label for it in train)
    per_class_eval = Counter(it.label for it in data.items if it.split == "eval")
    counts = [per_class[i] for i in range(len(data.classes))]
    widths = [it.size[0] for it in data.items]
    heights = [it.size[1] for it in data.items]
    areas = [w * h for w, h in zip(widths, heights)]
    modes = Counter(it.mode for it in data.items)
    grey = all(m in ("1", "L", "LA", "I", "I;16", "F") for m in modes)
    smallest, largest = data.items[areas.index(min(areas))], data.items[areas.index(max(areas))]
    return DataProfile(
        root=printable(str(data.root)),
        layout=data.layout,
        n_images=len(train),
        n_eval_images=len(data.items) - len(train),
        n_classes=len(data.classes),
        classes=[ClassCount(name=printable(n), train=per_class[i], eval=per_class_eval[i]) for i, n in enumerate(data.classes)],
        images_per_class_min=min(counts),
        images_per_class_median=float(statistics.median(counts)),
        images_per_class_max=max(counts),
        imbalance=round(max(counts) / min(counts), 3),
        width_median=int(statistics.median(widths)),
        height_median=int(statistics.median(heights)),
        size_min=smallest.size,
        size_max=largest.size,
        modes=dict(modes.most_common()),
        channels=1 if grey else 3,
        unreadable=data.unreadable,
        ignored=data.ignored,
        scan_seconds=round(data.seconds, 3),
    )
