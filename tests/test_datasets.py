"""The offline data sources: what they load, and that a data package's pickle cannot run code."""

import io
import os
import pickle

import numpy as np
import pytest

from advisor.data import datasets


def test_animal_mnist_loads_ten_balanced_classes_without_duplicates():
    x, y, classes = datasets.load("animals")
    assert classes == datasets.ANIMAL_CLASSES and x.dtype == np.uint8 and x.shape[1:] == (28, 28)
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)  # duplicates dropped
    counts = np.bincount(y, minlength=10)
    assert counts.min() >= 800 and counts.sum() == len(x)
    assert datasets.family("animals") == "animals" and "animals" in datasets.GREYSCALE


def test_elpv_loads_four_defect_classes_and_its_two_class_subset(monkeypatch):
    x, y, classes = datasets.load("elpv")
    assert classes == datasets.ELPV_CLASSES and x.dtype == np.uint8 and x.shape == (2624, 300, 300)
    assert np.bincount(y, minlength=4).tolist() == [1508, 295, 106, 715]  # the package's labels, probability × 3
    monkeypatch.setitem(datasets.SOURCES, "elpv", lambda: (x, y, classes))  # the subset from these, not decoded again
    x2, y2, classes2 = datasets.load("elpv-2")
    assert classes2 == ["functional", "defective"] and np.bincount(y2).tolist() == [1508, 715]
    assert np.array_equal(x2[y2 == 1][0], x[y == 3][0])  # defective stays defective
    assert datasets.family("elpv-2") == "elpv" and "elpv" in datasets.GREYSCALE


def test_the_array_unpickler_refuses_anything_but_numpy_arrays():
    ok = pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert datasets._ArrayUnpickler(io.BytesIO(ok)).load().shape == (2, 3)
    evil = pickle.dumps(os.getcwd)  # any callable other than numpy's reconstructors
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets._ArrayUnpickler(io.BytesIO(evil)).load()


@pytest.mark.skipif(not (datasets.EMOJI_DIR / "emoji.json").is_file(), reason="Noto emoji images not installed")
def test_emoji_loads_one_colour_image_per_emoji_in_nine_categories():
    x, y, classes = datasets.load("emoji")
    assert len(classes) == 9 and "animals-nature" in classes and "flags" in classes
    assert len(x) == len(y) > 1800 and x[0].shape == (64, 64, 3)
    assert np.bincount(y).min() >= 80


def test_a_missing_source_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "EMOJI_DIR", tmp_path)
    with pytest.raises(datasets.AdvisorError, match="npm pack emoji-datasource-google"):
        datasets.load("emoji")
