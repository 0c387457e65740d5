"""Issue 25 item 7: a CUHK copy whose masks are all inverted is refused before any training, with the numbers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdbd.data.readers import CUHK_POLARITY_MIN_MASKS, open_dataset
from mdbd.core.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _inverted_copy(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    for path in (out / "gt").iterdir():
        with Image.open(path) as img:
            levels = np.asarray(img.convert("L"))
        Image.fromarray(255 - levels).save(path)
    return out


def _hand_made(root: Path, n: int, blurred_share: float) -> Path:
    """A CUHK layout of `n` tiny pairs whose masks are white (= blurred, Shi's convention) on `blurred_share`."""
    (root / "gt").mkdir(parents=True)
    (root / "image").mkdir()
    for k in range(1, n + 1):
        mask = np.zeros((10, 20), np.uint8)
        mask[:, : round(20 * blurred_share)] = 255
        Image.fromarray(mask).save(root / "gt" / f"out_of_focus{k:04d}.png")
        Image.fromarray(np.full((10, 20, 3), 90, np.uint8)).save(root / "image" / f"out_of_focus{k:04d}.jpg")
    (root / "list.txt").write_text("\n".join(f"out_of_focus{k:04d}" for k in range(1, n + 1)))
    return root


def test_hand_made_inverted_folder_is_refused_with_its_fraction(tmp_path):
    good = _hand_made(tmp_path / "good", 20, blurred_share=0.7)  # Shi-like: 0.3 in focus
    assert len(open_dataset("cuhk", good, split_file=good / "list.txt")) == 20
    bad = _hand_made(tmp_path / "bad", 20, blurred_share=0.3)  # 0.7 in focus: inverted
    with pytest.raises(DataError, match=r"look inverted.* 0\.700 in focus \(mean over 20 of 20 masks\).*0\.334"):
        open_dataset("cuhk", bad, split_file=bad / "list.txt")


def test_too_few_masks_are_not_judged(tmp_path):
    """Below CUHK_POLARITY_MIN_MASKS a genuine pick of Shi's masks can read over 0.5: no verdict."""
    few = _hand_made(tmp_path / "few", CUHK_POLARITY_MIN_MASKS - 1, blurred_share=0.3)
    assert len(open_dataset("cuhk", few, split_file=few / "list.txt")) == CUHK_POLARITY_MIN_MASKS - 1


def test_inverted_real_subset_is_refused_by_summary_and_the_pre_chain_check(cuhk_subset, tmp_path):
    from mdbd.chain.reproduce import chain_config
    from mdbd.chain.stages.data import check_dataset

    bad = _inverted_copy(cuhk_subset, tmp_path / "inverted")
    with pytest.raises(DataError, match=r"look inverted.*0\.76\d in focus \(mean over 16 of 16 masks\)"):
        check_dataset(chain_config("smoke", "cuhk", str(bad)))
    done = subprocess.run([sys.executable, "-m", "mdbd", "data", "summary", "--dataset", "cuhk", "--root", str(bad)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "mdbd data: error:" in done.stderr and "0.334" in done.stderr
    # the genuine subset still passes
    check_dataset(chain_config("smoke", "cuhk", str(cuhk_subset)))


def test_evaluate_refuses_an_inverted_folder_of_shi_masks(tmp_path):
    from mdbd.evaluation.evaluate import evaluate_folders

    root = _hand_made(tmp_path / "bad", CUHK_POLARITY_MIN_MASKS, blurred_share=0.3)
    (root / "pred").mkdir()
    for path in (root / "gt").iterdir():
        Image.fromarray(np.full((10, 20), 128, np.uint8)).save(root / "pred" / path.name)
    with pytest.raises(DataError, match=r"look inverted.*0\.700 in focus"):
        evaluate_folders(root / "pred", root / "gt", bootstrap=0, protocols=["sod"])
