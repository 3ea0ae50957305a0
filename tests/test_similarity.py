"""Similarity separates ImageNet photos from digits, from a real forward pass."""

import numpy as np
import pytest
import torch
from PIL import Image

from advisor.nets import backbone

from advisor.data import datasets, images, similarity


@pytest.fixture(scope="module")
def model():
    return backbone.create().eval()


def _digits(n=40, size=128):
    x, y, _ = datasets.load("digits")
    arr = np.stack([images.square(Image.fromarray(im), size) for im in x[:n]])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y[:n])


def test_photos_are_closer_to_imagenet_than_digits(model, hw, photos):
    x, labels = photos
    y = torch.tensor([i % 2 for i in range(len(labels))])
    photo = similarity.measure(x, y, hw, model=model)
    digit = similarity.measure(*_digits(), hw, model=model)
    assert photo.score > digit.score + 0.2
    assert photo.imagenet_confidence > digit.imagenet_confidence
    assert photo.feature_shift < digit.feature_shift / 10
    for s in (photo, digit):
        assert 0 <= s.score <= 1 and 0 <= s.imagenet_entropy <= 1


def test_frozen_features_separate_digit_classes(model, hw):
    s = similarity.measure(*_digits(60), hw, model=model)
    assert s.linear_accuracy is not None and s.linear_accuracy > 0.4  # chance is 0.1
    assert s.separability > 0.3


def test_one_image_per_class_has_no_cv_accuracy(model, hw):
    x, y = _digits(10)
    s = similarity.measure(x, y, hw, model=model)
    assert s.knn_accuracy is None and s.linear_accuracy is None and s.separability is None
