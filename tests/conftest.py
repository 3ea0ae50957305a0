"""Shared fixtures: small real image folders made from data sets that install offline."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advisor.data import datasets, images

from advisor import hardware

FOOLBOX_DATA = Path(importlib.util.find_spec("foolbox").origin).parent / "data" if importlib.util.find_spec("foolbox") else None


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / "advisor-home"))


@pytest.fixture(autouse=True)
def _fast_tier_trains_and_times_nothing(request, monkeypatch):
    """A test not marked ``slow`` fails if it takes a training step or times the device (session fixtures, set
    up before it, may: they are shared with the slow tier)."""
    if request.node.get_closest_marker("slow"):
        return
    from advisor.measure import timing
    from advisor.nets import engine

    def refused(*args, **kwargs):
        raise AssertionError("a fast-tier test trained or timed: mark it @pytest.mark.slow")

    monkeypatch.setattr(engine, "train_step", refused)
    monkeypatch.setattr(timing, "time_configurations", refused)


@pytest.fixture(scope="session")
def hw():
    return hardware.detect("cpu")


@pytest.fixture(scope="session")
def digit_tensors():
    """300 of scikit-learn's digits at 32 px as uint8 tensors: (train 200, val 100)."""
    x, y, _ = datasets.load("digits")
    arr = np.stack([images.square(Image.fromarray(im), 32) for im in x[:300]])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y[:300]).long()
    return (x[:200], y[:200]), (x[200:], y[200:])


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's digits as an ImageFolder: 10 classes × 20 images of 8×8 greyscale."""
    return datasets.export("digits", tmp_path_factory.mktemp("d") / "digits", per_class=20)


@pytest.fixture(scope="session")
def _warm_template(tmp_path_factory, digits_dir) -> Path:
    """A machine home where the digits were recommended once: this CPU's step times and FE's accuracy stored."""
    import advisor
    from advisor.state import MachineState

    home = tmp_path_factory.mktemp("warm") / "advisor-home"
    advisor.recommend(digits_dir, minutes=10, state=MachineState(home=home))
    return home


@pytest.fixture
def warm_home(_warm_template, tmp_path, monkeypatch) -> Path:
    """This test's own ADVISOR_HOME, a copy of one that has advised on the digits before, as on a machine that
    has used advisor: later advice reuses its records (after their quick check) instead of timing from nothing."""
    home = tmp_path / "warm-home"
    shutil.copytree(_warm_template, home)
    monkeypatch.setenv("ADVISOR_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def photos() -> tuple[torch.Tensor, list[int]]:
    """The 20 ImageNet photos foolbox ships, at 128 px, with their ImageNet labels."""
    if FOOLBOX_DATA is None:
        pytest.skip("foolbox is not installed (pip install --no-deps foolbox)")
    files = sorted(FOOLBOX_DATA.glob("imagenet_*.jpg"))
    x = np.stack([images.square(Image.open(f), 128) for f in files])
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), [int(f.stem.split("_")[-1]) for f in files]


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and mtime, to prove nothing was changed."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out
