"""The offline data sources: what they load, and that a data package's pickle cannot run code."""

import io
import os
import pickle

import numpy as np
import pytest

from advisor import datasets


def test_animal_mnist_loads_ten_balanced_classes_without_duplicates():
    x, y, classes = datasets.load("animals")
    assert classes == datasets.ANIMAL_CLASSES and x.dtype == np.uint8 and x.shape[1:] == (28, 28)
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)  # duplicates dropped
    counts = np.bincount(y, minlength=10)
    assert counts.min() >= 800 and counts.sum() == len(x)
    assert datasets.family("animals") == "animals" and "animals" in datasets.GREYSCALE


def test_the_array_unpickler_refuses_anything_but_numpy_arrays():
    ok = pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert datasets._ArrayUnpickler(io.BytesIO(ok)).load().shape == (2, 3)
    evil = pickle.dumps(os.getcwd)  # any callable other than numpy's reconstructors
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets._ArrayUnpickler(io.BytesIO(evil)).load()
