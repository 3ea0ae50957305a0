import pytest

from advisor import DataError, profile
from advisor.data.scan import scan

from .conftest import copy_tree, snapshot


def test_profile_counts_classes_sizes_and_modes(digits_dir):
    p = profile(digits_dir)
    assert p.layout == "imagefolder"
    assert p.n_classes == 10 and p.n_images == 200
    assert p.images_per_class_min == p.images_per_class_max == 20
    assert p.imbalance == 1.0
    assert (p.width_median, p.height_median) == (8, 8)
    assert p.modes == {"L": 200} and p.channels == 1
    assert [c.name for c in p.classes] == [str(i) for i in range(10)]


def test_split_layout_and_imbalance(digits_dir, tmp_path):
    root = tmp_path / "split"
    copy_tree(digits_dir, root / "train")
    copy_tree(digits_dir, root / "val")
    for f in sorted((root / "train" / "3").iterdir())[:15]:
        f.unlink()
    p = profile(root)
    assert p.layout == "split"
    assert p.n_images == 185 and p.n_eval_images == 200
    assert p.images_per_class_min == 5 and p.imbalance == 4.0


def test_corrupt_and_non_image_files_are_skipped_with_a_warning(digits_dir, tmp_path):
    root = copy_tree(digits_dir, tmp_path / "d")
    (root / "0" / "broken.png").write_bytes(b"not a png at all")
    (root / "1" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="unreadable"):
        p = profile(root)
    assert p.n_images == 200
    assert len(p.unreadable) == 1 and "broken.png" in p.unreadable[0]
    assert p.ignored == 1


def test_scan_never_writes_into_the_folder(digits_dir):
    before = snapshot(digits_dir)
    scan(digits_dir)
    profile(digits_dir)
    assert snapshot(digits_dir) == before


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is a file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no class sub-folders"),
    ],
)
def test_bad_paths_raise_clear_errors(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        scan(make(tmp_path))


def test_single_class_and_empty_class(digits_dir, tmp_path):
    one = tmp_path / "one"
    copy_tree(digits_dir / "0", one / "0")
    with pytest.raises(DataError, match="single class"):
        scan(one)
    empty = copy_tree(digits_dir, tmp_path / "e")
    (empty / "extra").mkdir()
    with pytest.raises(DataError, match="no readable training images: extra"):
        scan(empty)


def test_only_unreadable_files(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable images"):
        scan(tmp_path)
