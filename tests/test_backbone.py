"""The packaged weights are real ImageNet weights: real photos get the right classes."""

import numpy as np
import pytest
import torch
from PIL import Image

from advisor import BackboneError, registry

from advisor.nets import backbone, engine

from advisor.data import images

# ImageNet indices: 281–285 are domestic cats; 967 espresso, 968 cup
CAT = set(range(281, 286))


@pytest.fixture(scope="module")
def model():
    return backbone.create().eval()


def _top5(model, hw, array: np.ndarray) -> list[int]:
    x = torch.from_numpy(images.square(Image.fromarray(array), 224)).permute(2, 0, 1)[None].contiguous()
    return engine.predict(model, x, hw, registry.DEFAULT_BACKBONE)[0].topk(5).indices.tolist()


def test_skimage_photos_get_their_imagenet_classes(model, hw):
    from skimage import data

    assert _top5(model, hw, data.chelsea())[0] in CAT
    assert _top5(model, hw, data.coffee())[0] in {967, 968}


def test_imagenet_photos_top5(model, hw, photos):
    x, labels = photos
    top5 = engine.predict(model, x, hw, registry.DEFAULT_BACKBONE).topk(5).indices
    hits = sum(label in row.tolist() for label, row in zip(labels, top5))
    assert hits >= 14, f"only {hits}/20 ImageNet photos have their label in the top 5"


def test_random_init_is_not_pretrained(photos, hw):
    x, labels = photos
    random_model = backbone.create(pretrained=False).eval()
    top1 = engine.predict(random_model, x, hw, registry.DEFAULT_BACKBONE).argmax(1).tolist()
    assert sum(a == b for a, b in zip(top1, labels)) <= 2


def test_user_weights_file_by_name(tmp_path, model, hw):
    path = tmp_path / "mine.pth"
    torch.save(model.state_dict(), path)
    mine = backbone.create(weights=path).eval()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert torch.allclose(engine.predict(mine, x, hw, "efficientnet_lite0"), engine.predict(model, x, hw, "efficientnet_lite0"), atol=1e-5)


def test_bad_weights_and_names(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        backbone.create(weights=tmp_path / "none.pth")
    (tmp_path / "bad.pth").write_bytes(b"nonsense")
    with pytest.raises(BackboneError, match="Cannot read"):
        backbone.create(weights=tmp_path / "bad.pth")
    torch.save({"w": torch.zeros(3)}, tmp_path / "small.pth")
    with pytest.raises(BackboneError, match="tensors"):
        backbone.create(weights=tmp_path / "small.pth")
    with pytest.raises(BackboneError, match="choose one of: efficientnet_lite0"):
        backbone.create("resnet9000")
