"""Prediction: any image size in, a map of that size out; batching does not change the numbers; the command line
writes 8-bit PNGs and fails clearly on a missing or foreign checkpoint and on unreadable images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mdbd.cli import main
from mdbd.runs.config import load_config
from mdbd.core.errors import ConfigError
from mdbd.model import build_model
from mdbd.runs.predict import predict_arrays, predict_arrays_many, predict_files, shared_trunk_blocks
from mdbd.runs.checkpoint import inference_size, load_checkpoint
from mdbd.runs.train import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A one-epoch 'hl' run at 32 px on 6 synthetic images: a real checkpoint in seconds."""
    import mdbd.core.paths

    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mdbd.core.paths, "DATA_DIR", data)
        cfg = load_config("smoke", preset="hl", backbone_weights="none", image_size=32, epochs=1,
                          data_root=str(data / "synth"), run_dir=str(data / "run"),
                          **{"synth.train_images": 6, "synth.test_images": 2, "synth.image_size": 40})
        return train(cfg, progress=False).checkpoint


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_maps_have_each_image_own_size_and_do_not_depend_on_batching():
    torch.manual_seed(0)
    model = build_model("hl", backbone_weights="none")
    images = [_rgb(40, 56, 0), _rgb(33, 71, 1), _rgb(40, 56, 2), _rgb(64, 64, 3), _rgb(17, 120, 4)]
    together = predict_arrays(model, images, size=32, batch_size=3)
    assert [m.shape for m in together] == [im.shape[:2] for im in images]
    for m in together:
        assert m.dtype == np.float32 and 0 <= m.min() <= m.max() <= 1
    alone = [predict_arrays(model, [im], size=32, batch_size=1)[0] for im in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # float input in [0, 1] means the same as uint8 0..255
    as_float = predict_arrays(model, [images[1].astype(np.float32) / 255], size=32)[0]
    np.testing.assert_allclose(as_float, together[1], atol=1e-5)
    # the map at network size is the model's sigmoid output itself
    x = torch.from_numpy(images[3]).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        direct = torch.sigmoid(model(x))[0, 0].numpy()
    np.testing.assert_allclose(predict_arrays(model, [images[3]], size=32)[0],
                               torch.nn.functional.interpolate(torch.from_numpy(direct)[None, None], size=(64, 64),
                                                               mode="bilinear", align_corners=False)[0, 0].numpy(),
                               atol=1e-5)


def _runs_sharing_blocks(frozen: int) -> list[torch.nn.Module]:
    """Three presets whose first `frozen` VGG blocks hold the same weights (as runs that froze them) and whose later
    blocks and decoders differ."""
    torch.manual_seed(0)
    base = build_model("multianet", backbone_weights="none")
    models = []
    for k, preset in enumerate(("multianet", "hl", "hl_ll_hca_sa")):
        torch.manual_seed(10 + k)
        model = build_model(preset, backbone_weights="none")
        for own, shared in list(zip(model.backbone.blocks, base.backbone.blocks))[:frozen]:
            own.load_state_dict(shared.state_dict())
        models.append(model)
    return models


@pytest.mark.parametrize("frozen", [0, 2, 4, 5])
def test_models_sharing_frozen_blocks_predict_together_exactly_as_alone(frozen):
    models = _runs_sharing_blocks(frozen)
    assert shared_trunk_blocks(models) == frozen
    assert shared_trunk_blocks(models[:1]) == 0  # one model: nothing to share
    images = [_rgb(40, 56, 0), _rgb(33, 71, 1), _rgb(40, 56, 2)]
    together = predict_arrays_many(models, images, size=32, batch_size=2)
    assert len(together) == len(models)
    for model, maps in zip(models, together):
        for joint, alone in zip(maps, predict_arrays(model, images, size=32, batch_size=2)):
            np.testing.assert_array_equal(joint, alone)
    # a block changed by training in one model is not shared: the count stops before it
    with torch.no_grad():
        next(models[1].backbone.blocks[0].parameters()).add_(1e-3)
    assert shared_trunk_blocks(models) == 0


def test_joint_prediction_refuses_no_models():
    with pytest.raises(ConfigError, match="no models"):
        predict_arrays_many([], [_rgb(32, 32, 0)], size=32)


def test_bad_arrays_are_refused():
    from mdbd.core.errors import ConfigError, DataError

    model = build_model("hl", backbone_weights="none")
    with pytest.raises(DataError, match=r"image 1 has shape \(8, 8\)"):
        predict_arrays(model, [_rgb(20, 20, 0), np.zeros((8, 8), np.uint8)], size=32)
    with pytest.raises(ConfigError, match="size must be an even number >= 16"):
        predict_arrays(model, [_rgb(20, 20, 0)], size=15)


def test_predict_files_of_mixed_sizes_writes_maps_at_original_size(checkpoint, tmp_path):
    paths = []
    for name, (h, w) in {"wide.png": (30, 90), "tall.jpg": (77, 41), "square.png": (48, 48)}.items():
        p = tmp_path / "in" / name
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(_rgb(h, w, len(paths))).save(p)
        paths.append(p)
    written = predict_files(checkpoint, paths, tmp_path / "out", preset="hl", batch_size=2)
    assert [p.name for p in written] == ["wide.png", "tall.png", "square.png"]
    model, _, _ = load_checkpoint(checkpoint)
    for src, out in zip(paths, written):
        with Image.open(src) as a, Image.open(out) as b:
            assert b.size == a.size and b.mode == "L"
            expected = predict_arrays(model, [np.asarray(a.convert("RGB"))], size=32)[0]
            got = np.asarray(b).astype(np.float32) / 255
        assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_predict_cli_folder_input(checkpoint, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, (h, w) in enumerate([(20, 50), (64, 32)]):
        Image.fromarray(_rgb(h, w, k)).save(folder / f"img{k}.png")
    (folder / "notes.txt").write_text("not an image")
    assert main(["predict", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]) == 0
    assert "2 map(s) written" in capsys.readouterr().out
    with Image.open(tmp_path / "out" / "img0.png") as m:
        assert m.size == (50, 20)


@pytest.mark.parametrize("case", ["missing_checkpoint", "other_preset", "corrupt_image", "missing_image",
                                  "same_stem", "corrupt_checkpoint"])
def test_predict_cli_errors_name_the_culprit(case, checkpoint, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(_rgb(24, 40, 0)).save(good)
    ckpt, images, expect = str(checkpoint), [str(good)], ""
    if case == "missing_checkpoint":
        ckpt = str(tmp_path / "absent.pt")
        expect = f"checkpoint not found: {ckpt}"
    elif case == "corrupt_checkpoint":
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"PK\x03\x04 not really a zip")
        ckpt, expect = str(bad), f"cannot read checkpoint {bad}"
    elif case == "other_preset":
        expect = "holds a 'hl' model, not the requested preset 'multianet'"
    elif case == "corrupt_image":
        bad = tmp_path / "broken.jpg"
        bad.write_bytes(good.read_bytes()[:60])
        images, expect = [str(good), str(bad)], f"cannot decode {bad}"
    elif case == "missing_image":
        images, expect = [str(good), str(tmp_path / "ghost.png")], f"image not found: {tmp_path / 'ghost.png'}"
    elif case == "same_stem":
        other = tmp_path / "sub" / "good.jpg"
        other.parent.mkdir()
        Image.fromarray(_rgb(10, 30, 1)).save(other)
        images, expect = [str(good), str(other)], "two inputs would write the same output good.png"
    argv = ["predict", *images, "--checkpoint", ckpt, "--out", str(tmp_path / "out")]
    if case == "other_preset":
        argv += ["--preset", "multianet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "mdbd predict: error:" in err and expect in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing half-written


# -- issue 25: EXIF orientation, bounded memory, all-or-nothing outputs, checks before the work ----------------

def test_an_exif_rotated_photo_gets_an_upright_map(checkpoint, tmp_path):
    """A JPEG stored 20x50 with orientation 6 (rotate 90 degrees to display) is a 50x20 photo: its map is 50x20 and
    is the map of the displayed pixels."""
    from PIL import ImageOps

    stored = _rgb(20, 50, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "in" / "phone.jpg"
    path.parent.mkdir()
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    [out] = predict_files(checkpoint, [path], tmp_path / "out", batch_size=2)
    with Image.open(path) as src, Image.open(out) as m:
        upright = np.asarray(ImageOps.exif_transpose(src).convert("RGB"))
        assert upright.shape[:2] == (50, 20) and m.size == (20, 50)  # PIL sizes are (width, height)
        got = np.asarray(m).astype(np.float32) / 255
    model, _, _ = load_checkpoint(checkpoint)
    expected = predict_arrays(model, [upright], size=32)[0]
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6


def test_inputs_are_streamed_one_full_size_image_at_a_time_in_batches(checkpoint, tmp_path, monkeypatch):
    """The network gets batches of at most batch_size resized inputs, and only one decoded full-size photo is held
    at a time (each is resized as soon as it is read), however many inputs and whatever the batch size; the maps are
    those predict_arrays gives."""
    import mdbd.runs.predict

    paths = []
    for k in range(5):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(_rgb(24, 40, k)).save(paths[-1])
    import mdbd.data.readers as readers

    batches, alive, peak = [], [0], [0]
    real_read, real_predict = readers.read_image, mdbd.runs.predict._predict_resized

    class Tracked(np.ndarray):
        def __del__(self):
            alive[0] -= 1

    def read(path, **kwargs):
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        return real_read(path, **kwargs).view(Tracked)

    def spy(model, batch, shapes, *args):
        batches.append(len(shapes))
        return real_predict(model, batch, shapes, *args)

    monkeypatch.setattr(readers, "read_image", read)
    monkeypatch.setattr(mdbd.runs.predict, "_predict_resized", spy)
    written = predict_files(checkpoint, paths, tmp_path / "out", batch_size=2)
    assert len(written) == 5 and batches == [2, 2, 1] and peak[0] == 1
    model, cfg, _ = load_checkpoint(checkpoint)
    expected = predict_arrays(model, [_rgb(24, 40, k) for k in range(5)], inference_size(cfg), bf16=False)
    for path, want in zip(written, expected):
        assert np.array_equal(np.asarray(Image.open(path)), np.round(want * 255).astype(np.uint8))


def test_a_full_disk_leaves_no_partial_set_of_maps(checkpoint, tmp_path, monkeypatch):
    import errno

    import mdbd.runs.predict

    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(_rgb(24, 40, k)).save(paths[-1])
    out = tmp_path / "out"
    out.mkdir()
    (out / "1.png").write_bytes(b"an earlier map")
    real, calls = mdbd.runs.predict.save_map_png, []

    def full_disk(prob, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(prob, path)

    monkeypatch.setattr(mdbd.runs.predict, "save_map_png", full_disk)
    assert main(["predict", *map(str, paths), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--batch-size", "1"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["1.png"] and (out / "1.png").read_bytes() == b"an earlier map"


def test_maps_are_world_readable(checkpoint, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_rgb(24, 40, 0)).save(path)
    [out] = predict_files(checkpoint, [path], tmp_path / "out")
    assert out.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("case", ["out_is_a_file", "out_under_a_file", "size_0", "size_odd", "no_cuda"])
def test_bad_options_are_refused_before_any_work(case, checkpoint, tmp_path, capsys, monkeypatch):
    import mdbd.runs.predict

    good = tmp_path / "good.png"
    Image.fromarray(_rgb(24, 40, 0)).save(good)
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(mdbd.runs.predict, "predict_arrays", lambda *a, **k: pytest.fail("predicted"))
    out, extra, expect = tmp_path / "out", [], ""
    if case == "out_is_a_file":
        out, expect = tmp_path / "afile", f"output folder {tmp_path / 'afile'} is a file"
    elif case == "out_under_a_file":
        out, expect = tmp_path / "afile" / "maps", f"lies under a file ({tmp_path / 'afile'})"
    elif case == "size_0":
        extra, expect = ["--size", "0"], "size must be an even number >= 16, got 0"
    elif case == "size_odd":
        extra, expect = ["--size", "33"], "size must be an even number >= 16, got 33"
    else:
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra, expect = ["--device", "cuda"], "device 'cuda': CUDA is not available on this machine"
    assert main(["predict", str(good), "--checkpoint", str(checkpoint), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mdbd predict: error:" in err and expect in err, err
