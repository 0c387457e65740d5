"""Carries (mdbd.data.carry): a compact, checksummed CUHK copy that the readers open like the original folder.

A fake official-layout CUHK folder (six pairs, one `.JPG`) is made per test; one test uses four NAMED real images of
$MDBD_SHARED_DATA/cuhk-full (skipped without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdbd.cli import main
from mdbd.data import open_dataset
from mdbd.data.carry import carried_size, make_carry, verify_carry
from mdbd.data.readers import CARRY_MANIFEST, available_splits
from mdbd.core.errors import ConfigError, DataError
from mdbd.core.io import sha256_file

SPLITS = {"train": [1, 2, 3, 4], "test": [605, 606]}
SIZES = {1: (120, 80), 2: (80, 120), 3: (50, 40), 4: (96, 70), 605: (130, 90), 606: (72, 72)}  # (width, height)


def _fake_image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth colour image with some texture (JPEG and resampling keep it close to itself)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    channels = [127 + 100 * np.sin(xx / (9 + 3 * c) + yy / (13 + 2 * c) + phase[c]) for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def _official_folder(root: Path, sizes: dict[int, tuple[int, int]] = SIZES) -> Path:
    (root / "image").mkdir(parents=True)
    (root / "gt").mkdir()
    for number, (width, height) in sizes.items():
        ext = ".JPG" if number == 2 else ".jpg"  # the official archive has upper-case ones too
        Image.fromarray(_fake_image(width, height, number)).save(root / "image" / f"out_of_focus{number:04d}{ext}",
                                                                  quality=95)
        mask = np.zeros((height, width), np.uint8)
        mask[:, : width // 2] = 255  # white = blurred (CUHK polarity): the left half
        Image.fromarray(mask).save(root / "gt" / f"out_of_focus{number:04d}.png")
    return root


@pytest.fixture
def source(tmp_path) -> Path:
    return _official_folder(tmp_path / "cuhk-official")


def _carry(source: Path, out: Path, **kw):
    return make_carry(source, out, splits=SPLITS, max_side=64, quality=92, progress=False, **kw)


def test_carry_reduces_images_keeps_masks_byte_for_byte_and_records_checksums(source, tmp_path):
    out = tmp_path / "carry"
    report = _carry(source, out)
    manifest = json.loads((out / CARRY_MANIFEST).read_text())
    assert manifest["splits"] == {"train": [f"out_of_focus{n:04d}" for n in SPLITS["train"]],
                                  "test": ["out_of_focus0605", "out_of_focus0606"]}
    assert manifest["complete"] is False and manifest["settings"]["max_side"] == 64
    assert report.files == 13 and sorted(p.name for p in out.iterdir()) == [CARRY_MANIFEST, "gt", "image"]
    for number, (width, height) in SIZES.items():
        name = f"out_of_focus{number:04d}"
        with Image.open(out / "image" / f"{name}.jpg") as img:  # .JPG becomes .jpg
            assert img.size == (min(width, 64), min(height, 64)) == carried_size(width, height, 64)
        assert sha256_file(out / "gt" / f"{name}.png") == sha256_file(source / "gt" / f"{name}.png")
        entry = manifest["files"][f"image/{name}.jpg"]
        assert entry["original_size"] == [width, height]
        assert entry["sha256"] == sha256_file(out / "image" / f"{name}.jpg")
    check = verify_carry(out)
    assert check.files == 12 and check.bytes == sum(e["bytes"] for e in manifest["files"].values())


def test_keep_aspect_scales_both_axes_by_one_factor():
    assert carried_size(640, 427, 352, keep_aspect=True) == (352, 235)
    assert carried_size(640, 427, 352) == (352, 352)
    assert carried_size(300, 200, 352) == carried_size(300, 200, 352, keep_aspect=True) == (300, 200)


def test_reader_resizes_carried_images_to_their_masks_and_uses_the_manifests_splits(source, tmp_path):
    from mdbd.runs.config import load_config
    from mdbd.chain.stages.data import check_dataset

    out = tmp_path / "carry"
    _carry(source, out)
    assert available_splits("cuhk", out) == ["train", "test"]
    for split in ("train", "test"):
        carried = open_dataset("cuhk", out, split)
        original = open_dataset("cuhk", source, split, split_file=_listing(tmp_path, split))
        assert carried.ids == original.ids and carried.resize_images_to_masks
        carried.verify()  # smaller images are what a carry holds
        for i in range(len(carried)):
            a, b = carried[i], original[i]
            assert a.image.shape == b.image.shape  # back at the mask's size
            np.testing.assert_array_equal(a.mask, b.mask)  # same polarity (1 = in focus), same pixels
            assert a.mask[:, 0].max() == 0  # the left half is blurred
            assert np.abs(a.image.astype(float) - b.image).mean() < 12
    check_dataset(load_config("smoke", dataset="cuhk", data_root=str(out)))  # --dataset cuhk --data-root CARRY


def _listing(tmp_path: Path, split: str) -> Path:
    path = tmp_path / f"{split}.txt"
    path.write_text("\n".join(f"out_of_focus{n:04d}" for n in SPLITS[split]))
    return path


def test_a_plain_folder_with_an_image_smaller_than_its_mask_stays_an_error(source, tmp_path):
    Image.fromarray(_fake_image(60, 40, 1)).save(source / "image" / "out_of_focus0001.jpg")  # mask is 120x80
    pairs = open_dataset("cuhk", source, "train", split_file=_listing(tmp_path, "train"))
    with pytest.raises(DataError, match="sizes differ for out_of_focus0001"):
        pairs[0]
    with pytest.raises(DataError, match="1 of 4 images differ in size from their masks.*out_of_focus0001.jpg is 60x40"):
        pairs.verify()


def test_a_carry_image_larger_than_its_mask_fails_verify(source, tmp_path):
    out = tmp_path / "carry"
    _carry(source, out)
    Image.fromarray(_fake_image(200, 200, 3)).save(out / "image" / "out_of_focus0003.jpg")  # mask is 50x40
    with pytest.raises(DataError, match="out_of_focus0003.jpg is 200x200"):
        open_dataset("cuhk", out, "train").verify()


def test_verify_carry_names_a_changed_a_missing_and_a_stray_file(source, tmp_path):
    out = tmp_path / "carry"
    _carry(source, out)
    mask = out / "gt" / "out_of_focus0605.png"
    data = bytearray(mask.read_bytes())
    data[-20] ^= 0xFF
    mask.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"1 problem.*out_of_focus0605.png: sha256 .* differs"):
        verify_carry(out)
    mask.unlink()
    with pytest.raises(DataError, match="out_of_focus0605.png: missing"):
        verify_carry(out)
    _carry(source, out, force=True)
    (out / "image" / "out_of_focus0700.jpg").write_bytes(b"stray")
    with pytest.raises(DataError, match="out_of_focus0700.jpg: not in the manifest"):
        verify_carry(out)
    with pytest.raises(DataError, match="is not a carry"):
        verify_carry(source)


@pytest.mark.parametrize("fault", ["corrupt", "interrupted"])
def test_a_failed_carry_leaves_nothing_behind(source, tmp_path, monkeypatch, fault):
    import mdbd.data.carry as carry

    out = tmp_path / "carries" / "cuhk"
    out.parent.mkdir()
    if fault == "corrupt":
        path = source / "image" / "out_of_focus0605.jpg"
        path.write_bytes(path.read_bytes()[:200])  # truncated: the header still reads, the pixels do not
        expected, match = DataError, "cannot decode .*out_of_focus0605.jpg"
    else:
        calls = []

        def failing(*args):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return original(*args)

        original = carry._encode_jpeg
        monkeypatch.setattr(carry, "_encode_jpeg", failing)
        expected, match = KeyboardInterrupt, None
    with pytest.raises(expected, match=match):
        _carry(source, out)
    assert not out.exists()
    assert list((tmp_path / "carries").iterdir()) == []  # no hidden partial folder either


def test_an_existing_folder_is_replaced_only_when_it_is_a_carry_and_force_is_given(source, tmp_path):
    out = tmp_path / "carry"
    _carry(source, out)
    with pytest.raises(DataError, match="already exists"):
        _carry(source, out)
    _carry(source, out, force=True)
    verify_carry(out)
    other = tmp_path / "precious"
    other.mkdir()
    with pytest.raises(DataError, match="is not a carry"):
        _carry(source, other, force=True)
    with pytest.raises(DataError, match="itself a carry"):
        _carry(out, tmp_path / "carry-of-carry")


@pytest.mark.parametrize("kw, match", [({"max_side": 10}, "max_side"), ({"quality": 0}, "quality"),
                                       ({"dataset": "dut"}, "cuhk only")])
def test_bad_settings_are_refused_before_anything_is_written(source, tmp_path, kw, match):
    settings = {"max_side": 64, "quality": 92, **kw}
    with pytest.raises(ConfigError, match=match):
        make_carry(source, tmp_path / "carry", splits=SPLITS, progress=False, **settings)
    assert not (tmp_path / "carry").exists()


def test_missing_source_images_are_reported_before_writing(source, tmp_path):
    (source / "image" / "out_of_focus0004.jpg").unlink()
    with pytest.raises(DataError, match="1 of 4 images missing.*out_of_focus0004"):
        _carry(source, tmp_path / "carry")
    assert not (tmp_path / "carry").exists()


def test_command_line_carry_and_verify(source, tmp_path, capsys, monkeypatch):
    import mdbd.data.carry as carry

    # the command takes the study's splits; this fake folder has six pairs, so the command is given those
    monkeypatch.setattr(carry, "CUHK_SPLITS", SPLITS)
    out = tmp_path / "carry"
    assert main(["data", "carry", "--root", str(source), "--out", str(out), "--max-side", "64"]) == 0
    assert "train 4, test 2 pairs" in capsys.readouterr().out
    assert main(["data", "verify-carry", str(out)]) == 0
    assert "all 12 files match" in capsys.readouterr().out
    (out / "gt" / "out_of_focus0001.png").write_bytes(b"x")
    assert main(["data", "verify-carry", str(out)]) == 2
    assert "out_of_focus0001.png: sha256" in capsys.readouterr().err


# four named real images: two landscape 640x427-ish, one .JPG in the archive, one portrait
REAL = {"train": [11, 80], "test": [605, 650]}


def test_real_cuhk_images_carry_close_to_what_the_network_sees(shared_data, tmp_path):
    import torch.nn.functional as F

    from mdbd.runs.predict import _as_float_batch

    root = shared_data / "cuhk-full"
    if not (root / "image").is_dir():
        pytest.skip(f"{root} has no image/ folder")
    out = tmp_path / "carry"
    make_carry(root, out, splits=REAL, progress=False)  # the defaults: 352 px, quality 85
    verify_carry(out)
    for split, numbers in REAL.items():
        listing = tmp_path / f"real-{split}.txt"
        listing.write_text("\n".join(str(n) for n in numbers))
        carried, original = open_dataset("cuhk", out, split), open_dataset("cuhk", root, split, split_file=listing)
        for i in range(len(numbers)):
            a, b = carried[i], original[i]
            np.testing.assert_array_equal(a.mask, b.mask)
            # what prediction feeds the network: 320x320, antialiased (measured: about 2 grey levels of 255)
            x = F.interpolate(_as_float_batch([a.image, b.image]), size=(320, 320), mode="bilinear",
                              antialias=True, align_corners=False)
            assert float((x[0] - x[1]).abs().mean()) * 255 < 4
