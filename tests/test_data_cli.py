"""`mdbd data synth|summary|fetch` through the sub-command's own parser."""

from __future__ import annotations

import argparse
import json

import pytest

from mdbd.commands import data as data_command
from mdbd.core.errors import DataError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mdbd")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_synth_then_summary(tmp_path, capsys):
    out = tmp_path / "syn"
    assert _run(["data", "synth", "--profile", "smoke", "--seed", "2", "--out", str(out), "--masks", "procedural"]) == 0
    assert json.loads((out / "dataset.json").read_text())["seed"] == 2
    assert _run(["data", "summary", "--dataset", "synthetic", "--root", str(out)]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.split()}
    assert lines["train"][1] == "24" and lines["test"][1] == "8" and lines["all"][1] == "32"
    assert "96-96 x 96-96" in text


def test_summary_default_root_finds_every_split(tmp_path, monkeypatch, capsys):
    """Without --root the summary reads data/<dataset> and lists its splits (it used to see `test` only)."""
    import numpy as np
    from PIL import Image

    monkeypatch.setattr("mdbd.core.paths.DATA_DIR", tmp_path)
    for split, n in (("train", 3), ("test", 2)):
        for folder in ("images", "masks"):
            (tmp_path / "folder" / split / folder).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "folder" / split / "images" / f"{k}.png")
            Image.fromarray(np.full((4, 6), 255, np.uint8)).save(tmp_path / "folder" / split / "masks" / f"{k}.png")
    assert _run(["data", "summary", "--dataset", "folder", "--polarity", "infocus_white"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()}
    assert lines["train"][1] == "3" and lines["test"][1] == "2" and lines["all"][1] == "5"


def test_summary_of_a_real_cuhk_subset(cuhk_subset, capsys):
    import numpy as np
    from PIL import Image

    assert _run(["data", "summary", "--dataset", "cuhk", "--root", str(cuhk_subset)]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()}
    assert lines["train"][1] == "12" and lines["test"][1] == "4" and lines["all"][1] == "16"
    # the in-focus fraction after inversion equals the black fraction of Shi's files
    black = [np.mean(np.asarray(Image.open(p).convert("L")) < 128) for p in sorted((cuhk_subset / "gt").iterdir())]
    assert abs(float(lines["all"][3]) - np.mean(black)) < 1e-3


def test_data_subset_command(cuhk_full, tmp_path, capsys):
    out = tmp_path / "few"
    assert _run(["data", "subset", "--root", str(cuhk_full), "--out", str(out), "--train", "3", "--test", "2"]) == 0
    manifest = json.loads((out / "mdbd-subset.json").read_text())
    assert manifest["splits"] == {"train": ["out_of_focus0001", "out_of_focus0303", "out_of_focus0604"],
                                  "test": ["out_of_focus0605", "out_of_focus0704"]}
    assert len(list((out / "image").iterdir())) == 5 and len(manifest["sha256"]) == 10
    with pytest.raises(DataError, match="--test N or --test-ids"):
        _run(["data", "subset", "--root", str(cuhk_full), "--out", str(tmp_path / "other"), "--train", "3"])
    with pytest.raises(DataError, match="exists"):
        _run(["data", "subset", "--root", str(cuhk_full), "--out", str(out), "--train", "3", "--test", "2"])


def test_summary_real_dut_sample_layout(shared_data, capsys):
    assert _run(["data", "summary", "--dataset", "dut", "--root", str(shared_data / "dut-samples")]) == 0
    out = capsys.readouterr().out
    assert "test" in out and " 5 " in out and "320-320" in out


def test_fetch_dut_needs_archive():
    with pytest.raises(DataError, match="--archive"):
        _run(["data", "fetch", "--dataset", "dut"])
