"""Readers: real files in $MDBD_SHARED_DATA (skipped when unset) and generated fixtures, including bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdbd.data.readers import available_splits, open_dataset, read_image, read_mask
from mdbd.core.errors import DataError


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def _rgb(h=12, w=16, value=100) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _blur_white_mask(h=12, w=16) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:, : 3 * w // 4] = 255  # three quarters white = blurred in CUHK's convention (Shi's are about 2/3)
    return m


@pytest.fixture
def fake_cuhk(tmp_path) -> Path:
    """The official layout with all 704 tiny defocus masks (+ motion files) and images for a few numbers."""
    root = tmp_path / "cuhk"
    for n in range(1, 705):
        _png(root / "gt" / f"out_of_focus{n:04d}.png", _blur_white_mask())
    _png(root / "gt" / "motion0001.png", _blur_white_mask())
    (root / "image").mkdir()
    for n, ext in [(3, ".jpg"), (26, ".JPG"), (605, ".jpg"), (700, ".JPG")]:
        Image.fromarray(_rgb(value=n % 255)).save(root / "image" / f"out_of_focus{n:04d}{ext}", format="JPEG")
    Image.fromarray(_rgb()).save(root / "image" / "motion0001.jpg")
    return root


# -- CUHK ---------------------------------------------------------------------------------------------

def test_cuhk_fixture_split_order_and_inversion(fake_cuhk):
    train = open_dataset("cuhk", fake_cuhk, split="train")
    test = open_dataset("cuhk", fake_cuhk, split="test")
    assert (len(train), len(test)) == (604, 100)
    assert train.ids[0] == "out_of_focus0001" and train.ids[-1] == "out_of_focus0604"
    assert test.ids[0] == "out_of_focus0605" and test.ids[-1] == "out_of_focus0704"
    assert all("motion" not in i for i in train.ids + test.ids)
    # .JPG found and ordered by number, not by name
    assert train.image_paths[25].name == "out_of_focus0026.JPG"
    assert test.image_paths[95].name == "out_of_focus0700.JPG"
    image, mask, sid = train[2]
    assert sid == "out_of_focus0003" and image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask[:, :12].sum() == 0 and mask[:, 12:].all()  # white (blurred) became 0


def test_cuhk_missing_image_names_file(fake_cuhk):
    ds = open_dataset("cuhk", fake_cuhk, split="train")
    assert ds.load_mask(0).shape == (12, 16)  # masks-only statistics work
    with pytest.raises(DataError, match=r"out_of_focus0001.*missing"):
        ds[0]
    with pytest.raises(DataError, match="602 of 604 images missing"):
        ds.require_images()


def test_cuhk_split_file_and_motion_entry(fake_cuhk, tmp_path):
    listing = tmp_path / "zhao100.txt"
    listing.write_text("out_of_focus0700\nout_of_focus0003.jpg\n605\n")
    ds = open_dataset("cuhk", fake_cuhk, split_file=listing)
    assert ds.ids == ["out_of_focus0700", "out_of_focus0003", "out_of_focus0605"] and ds.split == "zhao100"
    listing.write_text("out_of_focus0700\nmotion0001\n")
    with pytest.raises(DataError, match="motion0001.*motion-blur"):
        open_dataset("cuhk", fake_cuhk, split_file=listing)


def test_cuhk_missing_mask_and_empty(fake_cuhk, tmp_path):
    (fake_cuhk / "gt" / "out_of_focus0650.png").unlink()
    with pytest.raises(DataError, match="out_of_focus0650.png"):
        open_dataset("cuhk", fake_cuhk, split="test")
    (tmp_path / "empty" / "gt").mkdir(parents=True)
    with pytest.raises(DataError, match="empty CUHK"):
        open_dataset("cuhk", tmp_path / "empty")


def test_cuhk_layout_problems_are_reported_together(fake_cuhk):
    """Issue 25 item 11: a missing test mask and a training image without its mask, in one error."""
    (fake_cuhk / "gt" / "out_of_focus0650.png").unlink()
    (fake_cuhk / "gt" / "out_of_focus0003.png").unlink()  # its image is present (fixture)
    with pytest.raises(DataError) as error:
        open_dataset("cuhk", fake_cuhk, split="test")
    message = str(error.value)
    assert "out_of_focus0650.png" in message and "1 of 100 masks of split 'test' missing" in message
    assert "missing mask for" in message and "out_of_focus0003.jpg" in message and "\n" not in message


def test_cuhk_rgba_mask_converted(tmp_path):
    m = np.zeros((8, 8, 4), np.uint8)
    m[..., 3] = 255
    m[:4, :, :3] = 255
    path = _png(tmp_path / "m.png", m)
    out = read_mask(path, white_is_infocus=False)
    assert out[:4].sum() == 0 and out[4:].all()


def test_real_cuhk_full_opens_in_official_order_with_either_extension_case(cuhk_full, shared_data):
    ds = open_dataset("cuhk", cuhk_full, split="all")
    assert len(ds) == 704 and ds.ids[:2] == ["out_of_focus0001", "out_of_focus0002"]
    assert ds.ids[-1] == "out_of_focus0704"
    assert ds.has_images  # every one of the 704 images is matched, whatever the case of its extension
    assert ds.image_paths[ds.ids.index("out_of_focus0016")].suffix == ".JPG"
    assert ds.image_paths[ds.ids.index("out_of_focus0015")].suffix == ".jpg"
    listed = open_dataset("cuhk", cuhk_full, split_file=shared_data / "cuhk_defusionnet_test100.txt")
    assert listed.ids == open_dataset("cuhk", cuhk_full, split="test").ids
    zhao = open_dataset("cuhk", cuhk_full, split_file=shared_data / "cuhk_zhao_test100.txt")
    assert len(zhao) == 100 and len(set(zhao.ids) & set(listed.ids)) == 20  # the README's overlap


def test_real_cuhk_masks_are_inverted_on_load(cuhk_full):
    """Named pairs only: image and mask of one size, mask binary, and 1 = in focus = black in Shi's files."""
    ds = open_dataset("cuhk", cuhk_full, split="all")
    for sid in ("out_of_focus0011", "out_of_focus0080", "out_of_focus0605", "out_of_focus0704"):
        image, mask, _ = ds[ds.ids.index(sid)]
        raw = np.asarray(Image.open(cuhk_full / "gt" / f"{sid}.png").convert("L"))
        assert image.shape[:2] == mask.shape == raw.shape and set(np.unique(mask)) <= {0, 1}
        assert np.array_equal(mask.astype(bool), raw < 128)


def test_cuhk_subset_declares_its_splits(cuhk_subset):
    from cuhk_ids import CUHK_TEST_IDS, CUHK_TRAIN_IDS  # not `from conftest`: tests/nbval has a conftest too

    train, test = open_dataset("cuhk", cuhk_subset, split="train"), open_dataset("cuhk", cuhk_subset, split="test")
    assert tuple(train.ids) == CUHK_TRAIN_IDS and tuple(test.ids) == CUHK_TEST_IDS
    assert len(open_dataset("cuhk", cuhk_subset, split="all")) == len(CUHK_TRAIN_IDS) + len(CUHK_TEST_IDS)
    assert available_splits("cuhk", cuhk_subset) == ["train", "test"]
    train.verify()
    test.verify()
    with pytest.raises(DataError, match="mdbd-subset.json declares train, test"):
        open_dataset("cuhk", cuhk_subset, split="val")


def test_cuhk_subset_bad_input(cuhk_full, tmp_path):
    from mdbd.data.subset import make_cuhk_subset

    with pytest.raises(DataError, match="out_of_focus0999"):
        make_cuhk_subset(cuhk_full, tmp_path / "s", train=["out_of_focus0011"], test=["out_of_focus0999"])
    with pytest.raises(DataError, match="both train and test"):
        make_cuhk_subset(cuhk_full, tmp_path / "s", train=["out_of_focus0011"], test=["out_of_focus0011"])
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s-*"))
    out = make_cuhk_subset(cuhk_full, tmp_path / "s", train=["out_of_focus0011"], test=["out_of_focus0605"])
    (out / "image" / "out_of_focus0605.jpg").unlink()
    with pytest.raises(DataError, match="out_of_focus0605"):
        open_dataset("cuhk", out, split="test").verify()
    (out / "mdbd-subset.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt CUHK subset manifest"):
        open_dataset("cuhk", out, split="test")


def test_verify_names_missing_images_and_a_mask_of_another_size(fake_cuhk):
    test = open_dataset("cuhk", fake_cuhk, split="test")
    with pytest.raises(DataError, match=r"98 of 100 images missing; first: .*out_of_focus0606"):
        test.verify()
    present = test.subset([test.ids.index("out_of_focus0605"), test.ids.index("out_of_focus0700")])
    present.verify()
    path = present.mask_paths[1]
    Image.fromarray(np.zeros((3, 5), np.uint8)).save(path)
    with pytest.raises(DataError, match=rf"1 of 2 images differ in size.*{path.name}"):
        present.verify()


# -- DUT ------------------------------------------------------------------------------------------------

def test_dut_official_layout_numeric_order(tmp_path):
    (tmp_path / "DUT500S-Testing").mkdir()
    (tmp_path / "DUT500GT-Testing").mkdir()
    for n in (1, 2, 10):
        Image.fromarray(_rgb()).save(tmp_path / "DUT500S-Testing" / f"{n}.jpg")
        mask = np.zeros((12, 16), np.uint8)
        mask[:6] = 255  # white = in focus already
        Image.fromarray(mask).save(tmp_path / "DUT500GT-Testing" / f"{n}.bmp")
    ds = open_dataset("dut", tmp_path, split="test")
    assert ds.ids == ["1", "2", "10"]
    _, mask, _ = ds[0]
    assert mask[:6].all() and mask[6:].sum() == 0
    with pytest.raises(DataError, match="DUT600S_Training"):
        open_dataset("dut", tmp_path, split="train")


def test_real_dut_samples(shared_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset("dut", shared_data / "dut-samples", split="test")
        image, mask, sid = ds[0]
    assert len(ds) == 5 and sid == "1" and image.shape == (320, 320, 3) and mask.shape == (320, 320)
    assert set(np.unique(mask)) <= {0, 1} and 0.05 < mask.mean() < 0.95
    # these redistributed masks have resampled grey edges: binarised with a warning naming the file
    assert any("1.bmp" in str(w.message) and "binarised at 0.5" in str(w.message) for w in caught)


# -- generic folders and bad input ------------------------------------------------------------------------

def _folder(root: Path, n=3, mask_value=255) -> Path:
    for k in range(n):
        Image.fromarray(_rgb(value=50 + k)).save(_png(root / "images" / f"a{k}.png", _rgb()))
        m = np.zeros((12, 16), np.uint8)
        m[:3] = mask_value
        _png(root / "masks" / f"a{k}.png", m)
    return root


def test_folder_polarity_and_splits(tmp_path):
    _folder(tmp_path / "flat")
    white_focus = open_dataset("folder", tmp_path / "flat", polarity="infocus_white")
    white_blur = open_dataset("folder", tmp_path / "flat", polarity="blur_white")
    assert white_focus.ids == ["a0", "a1", "a2"]
    np.testing.assert_array_equal(white_focus.load_mask(0), 1 - white_blur.load_mask(0))
    with pytest.raises(DataError, match="declare the mask polarity"):
        open_dataset("folder", tmp_path / "flat")
    _folder(tmp_path / "split" / "train", n=2)
    assert len(open_dataset("folder", tmp_path / "split", split="train", polarity="infocus_white")) == 2
    with pytest.raises(DataError, match="no split 'test'.*train"):
        open_dataset("folder", tmp_path / "split", split="test", polarity="infocus_white")


def test_available_splits_default_root_and_partial_dut(tmp_path, monkeypatch):
    monkeypatch.setattr("mdbd.core.paths.DATA_DIR", tmp_path)
    for split in ("test", "train", "val"):
        _folder(tmp_path / "folder" / split, n=1)
    assert available_splits("folder") == ["train", "val", "test"]  # root=None: data/folder, as open_dataset
    _folder(tmp_path / "flat", n=1)
    assert available_splits("folder", tmp_path / "flat") == ["test"]
    assert available_splits("cuhk", tmp_path / "anywhere") == ["train", "test"]
    _png(tmp_path / "zhao" / "dut500-gt" / "1.png", np.zeros((4, 4), np.uint8))  # Zhao's: test split only
    assert available_splits("dut", tmp_path / "zhao") == ["test"]
    assert available_splits("dut", tmp_path / "nothing") == []
    with pytest.raises(DataError, match="unknown dataset"):
        available_splits("imagenet", tmp_path)


def test_empty_folder(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DataError, match="empty dataset folder"):
        open_dataset("folder", tmp_path / "e", polarity="infocus_white")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="empty dataset folder"):
        open_dataset("folder", tmp_path / "nothing", polarity="infocus_white")


def test_missing_mask_names_image(tmp_path):
    root = _folder(tmp_path / "f")
    (root / "masks" / "a1.png").unlink()
    with pytest.raises(DataError, match=r"missing mask for .*a1\.png"):
        open_dataset("folder", root, polarity="infocus_white")


def test_corrupt_and_truncated_images(tmp_path):
    root = _folder(tmp_path / "f")
    (root / "images" / "a0.png").write_bytes(b"not an image at all")
    good = (root / "images" / "a1.png").read_bytes()
    (root / "images" / "a1.png").write_bytes(good[: len(good) // 2])
    ds = open_dataset("folder", root, polarity="infocus_white")
    with pytest.raises(DataError, match=r"a0\.png.*corrupt"):
        ds[0]
    with pytest.raises(DataError, match=r"a1\.png"):
        ds[1]


def test_size_mismatch_names_both_files(tmp_path):
    root = _folder(tmp_path / "f")
    _png(root / "masks" / "a2.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"a2\.png is 16x12.*a2\.png is 10x10"):
        open_dataset("folder", root, polarity="infocus_white")[2]


def test_non_binary_mask_warns_and_binarises(tmp_path):
    path = _png(tmp_path / "soft.png", np.array([[0, 100, 130, 255]], np.uint8))
    with pytest.warns(UserWarning, match=r"soft\.png.*binarised at 0\.5"):
        out = read_mask(path)
    assert out.tolist() == [[0, 0, 1, 1]]


def test_image_modes_converted(tmp_path):
    gray = _png(tmp_path / "g.png", np.full((4, 5), 77, np.uint8))
    assert read_image(gray).shape == (4, 5, 3) and read_image(gray)[0, 0].tolist() == [77, 77, 77]
    rgba = _png(tmp_path / "rgba.png", np.full((4, 5, 4), 90, np.uint8))
    assert read_image(rgba).shape == (4, 5, 3) and read_image(rgba)[0, 0, 0] == 90
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 5), 65535 // 2, np.uint16)).save(deep)
    out = read_image(deep)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3) and out[0, 0, 0] == 127
    m16 = tmp_path / "m16.png"
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(m16)
    assert read_mask(m16).tolist() == [[0, 1]]


def test_verify_reports_every_kind_of_problem_at_once(tmp_path):
    """A missing image, an unreadable mask and a pair of other sizes: one error naming all three kinds."""
    from PIL import Image as PILImage

    from mdbd.data.readers import open_folder

    root = tmp_path / "ds"
    for split in ("test",):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
    for name, image_size, mask_size in (("a", (8, 8), (8, 8)), ("b", (8, 8), (6, 8)), ("c", (8, 8), (8, 8)),
                                        ("d", None, (8, 8))):
        if image_size:
            PILImage.new("RGB", image_size).save(root / "test" / "images" / f"{name}.png")
        PILImage.new("L", mask_size, 255 if name != "d" else 0).save(root / "test" / "masks" / f"{name}.png")
    (root / "test" / "masks" / "c.png").write_bytes(b"not a png")
    pairs = open_folder(root, "test", polarity="infocus_white")
    with pytest.raises(DataError) as info:
        pairs.verify()
    message = str(info.value)
    assert "1 of 4 images missing" in message and "cannot be read" in message and "differ in size" in message
    assert "\n" not in message
