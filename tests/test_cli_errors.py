"""Issue 25 items 10 and 11: what used to end in a traceback or an unclear message is one error line naming the value
or path, exit status 2. Every case stops before any training or data reading starts (cheap)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mdbd.cli import main
from mdbd.core.errors import WeightsError


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mdbd {command}: error: "), err
    return err


@pytest.fixture
def no_training(monkeypatch):
    import mdbd.runs.train

    monkeypatch.setattr(mdbd.runs.train, "train", lambda *a, **k: pytest.fail("training started"))


TRAIN_CASES = {
    "epochs_twice": (["--epochs", "6", "--set", "epochs=3"], "epochs given twice (by its own option and by --set "
                                                              "epochs=3)"),
    "epochs_twice_same": (["--epochs", "6", "--set", "epochs=6"], "epochs given twice"),
    "epochs_abc": (["--set", "epochs=abc"], "--set epochs='abc': epochs takes a value of type int"),
    "lr_abc": (["--set", "lr=abc"], "--set lr='abc': lr takes a value of type float"),
    "bool_as_int": (["--set", "augment=3"], "augment takes a value of type bool"),
    "synth_field": (["--set", "synth.train_images=many"], "synth.train_images takes a value of type int"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_override_errors(case, capsys, no_training, tmp_path):
    argv, expect = TRAIN_CASES[case]
    assert main(["train", "--run-dir", str(tmp_path / "run"), *argv]) == 2
    assert expect in _one_error_line(capsys, "train")


def test_lr_as_an_integer_is_still_a_float_field(capsys, monkeypatch, tmp_path):
    import mdbd.runs.train

    seen = {}
    monkeypatch.setattr(mdbd.runs.train, "train", lambda cfg, **k: seen.setdefault("cfg", cfg) and pytest.skip("ok"))
    with pytest.raises(pytest.skip.Exception):
        main(["train", "--run-dir", str(tmp_path / "run"), "--set", "lr=1", "epochs=1"])
    assert seen["cfg"].lr == 1 and seen["cfg"].epochs == 1


@pytest.mark.parametrize("case", ["a_file", "under_a_file"])
def test_train_run_dir_that_cannot_be_a_folder(case, capsys, no_training, tmp_path):
    (tmp_path / "afile").write_text("x")
    run_dir = tmp_path / "afile" if case == "a_file" else tmp_path / "afile" / "run"
    assert main(["train", "--run-dir", str(run_dir)]) == 2
    err = _one_error_line(capsys, "train")
    assert str(run_dir) in err and ("is a file" if case == "a_file" else "lies under a file") in err


def test_train_on_cuda_without_a_gpu(capsys, no_training, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--device", "cuda", "--run-dir", str(tmp_path / "run")]) == 2
    assert "device 'cuda': CUDA is not available on this machine" in _one_error_line(capsys, "train")


def test_ablation_field_given_twice(capsys, monkeypatch):
    import mdbd.chain.stages.ablation

    monkeypatch.setattr(mdbd.chain.stages.ablation, "run_ablation", lambda *a, **k: pytest.fail("ran"))
    assert main(["ablation", "--epochs", "2", "--set", "ablation.epochs=3"]) == 2
    assert "ablation.epochs given twice" in _one_error_line(capsys, "ablation")


def test_data_summary_of_a_missing_folder(capsys, tmp_path):
    assert main(["data", "summary", "--dataset", "cuhk", "--root", str(tmp_path / "nope")]) == 2
    err = _one_error_line(capsys, "data")
    assert f"CUHK dataset folder {tmp_path / 'nope'} does not exist" in err and "has no gt/" not in err


def test_data_summary_with_missing_images_says_so_and_fails(capsys, tmp_path):
    root = tmp_path / "f"
    for k in range(3):
        for folder in ("images", "masks"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 6), 255, np.uint8)).save(root / "masks" / f"{k}.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / "images" / "0.png")
    assert main(["data", "summary", "--dataset", "folder", "--root", str(root), "--polarity", "infocus_white"]) == 1
    err = capsys.readouterr().err
    assert "warning: 2 of 3 images of split 'test' are missing" in err and "1.png" in err


@pytest.mark.parametrize("source, expect", [("x.pt", "expected .whl, .onnx, .pth"),
                                            ("absent.pth", "does not exist (accepted: .whl, .onnx, .pth)")])
def test_weights_fetch_names_what_it_accepts(source, expect, capsys, tmp_path):
    assert main(["weights", "fetch", "--source", str(tmp_path / source)]) == 2
    assert expect in _one_error_line(capsys, "weights")


def test_a_corrupt_pth_gets_no_weights_only_advice(tmp_path):
    from mdbd.core.weights import _features_state_from_file

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(WeightsError) as info:
        _features_state_from_file(bad)
    assert "corrupt or not a PyTorch file" in str(info.value) and "weights_only" not in str(info.value)
    assert "\n" not in str(info.value)


def test_predict_without_a_checkpoint_says_how_to_get_one(capsys, tmp_path):
    assert main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2
    assert "mdbd train --profile smoke" in _one_error_line(capsys, "predict")


def test_predict_checkpoint_that_is_a_folder(capsys, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    assert main(["predict", str(image), "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 2
    err = _one_error_line(capsys, "predict")
    assert f"--checkpoint {tmp_path / 'run'} is a folder" in err and str(tmp_path / "run" / "last.pt") in err
    assert not (tmp_path / "o").exists()
