"""mdbd.model.diagnostics: the attention statistics on hand-checked cases, on real features (fixed CUHK image), and
`mdbd model --attention-stats` on a tiny checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mdbd.cli import main
from mdbd.model import ChannelAttention
from mdbd.model.diagnostics import (attention_statistics, attention_table, channel_attention_stats,
                                    module_statistics, spatial_attention_stats, with_attention_scale)


# -- hand-checked numbers ---------------------------------------------------------------------------------------------
def test_channel_attention_stats_by_hand():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.995, 0.005, 0.0], [0.2, 0.3, 0.5]])
    stats = channel_attention_stats(a)
    entropies = [0.0, -(0.995 * math.log(0.995) + 0.005 * math.log(0.005)),
                 -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))]
    assert stats["channels"] == 3
    assert stats["row_max_mean"] == pytest.approx((1 + 0.995 + 0.5) / 3)
    assert stats["row_entropy_mean"] == pytest.approx(sum(entropies) / 3)
    assert stats["uniform_entropy"] == pytest.approx(math.log(3))
    assert stats["distinct_argmax"] == 2  # rows pick channels 0, 0, 2
    assert stats["one_hot_fraction"] == pytest.approx(2 / 3)  # max > 0.99: rows 1 and 2
    with pytest.raises(Exception, match=r"\(C, C\)"):
        channel_attention_stats(torch.ones(2, 3) / 3)


def test_spatial_attention_stats_by_hand():
    z = torch.tensor([0.01, 0.5, 0.97, 0.2]).view(1, 1, 2, 2)
    stats = spatial_attention_stats(z)
    assert stats["z_mean"] == pytest.approx(0.42)
    assert stats["z_std"] == pytest.approx(math.sqrt((0.41**2 + 0.08**2 + 0.55**2 + 0.22**2) / 4))
    assert stats["z_q50"] == pytest.approx(0.35)  # linear interpolation between 0.2 and 0.5
    assert stats["z_q25"] == pytest.approx(0.01 + 0.75 * 0.19)
    assert stats["z_below_0.05"] == 0.25 and stats["z_above_0.95"] == 0.25
    split = spatial_attention_stats(z, infocus=torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2))
    assert split["z_mean_infocus"] == pytest.approx((0.01 + 0.97) / 2)
    assert split["z_mean_blurred"] == pytest.approx((0.5 + 0.2) / 2)
    assert math.isnan(spatial_attention_stats(z, infocus=torch.ones(1, 1, 2, 2))["z_mean_blurred"])


class _SumOfChannels(nn.Module):
    """logits = sum over channels of channel attention's output: a model small enough to differentiate by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.ca = ChannelAttention("none")

    def forward(self, x):
        return self.ca(x).sum(dim=1, keepdim=True)


def test_gradient_statistics_by_hand():
    # The hand example of test_attention.py: x1 = [1, 0], x2 = [1, 1], alpha = 0.5, A = [[1/2, 1/2], [p, q]] with
    # p = 1/(1+e), q = e/(1+e). logits l = Y1 + Y2 = [3, 1.25 + 0.5 q]; target [1, 0]; L = mean BCE, so
    # g = dL/dl = (sigmoid(l) - t) / 2, and dL/dY_j = g for both channels.
    # dL/dA_ji = alpha * g . x_i: both rows [0.5 g0, 0.5 (g0 + g1)].
    # Softmax row a = [a0, a1]: dL/de = a0 a1 (G0 - G1) [1, -1] = a0 a1 * 0.5 g1 * [-1, 1].
    e = math.e
    p, q = 1 / (1 + e), e / (1 + e)
    model = _SumOfChannels()
    with torch.no_grad():
        model.ca.alpha.fill_(0.5)
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    g0, g1 = (sig(3.0) - 1) / 2, sig(1.25 + 0.5 * q) / 2
    grad_a = math.sqrt(2 * ((0.5 * g0) ** 2 + (0.5 * (g0 + g1)) ** 2))
    grad_e = 0.5 * abs(g1) * math.sqrt(2) * math.sqrt(0.25**2 + (p * q) ** 2)

    stats = module_statistics(model, x, target)["ca"]
    assert stats["positions"] == 2 and stats["channels"] == 2 and stats["alpha"] == 0.5
    assert stats["row_max_mean"] == pytest.approx((0.5 + q) / 2)
    assert stats["grad_attention_norm"] == pytest.approx(grad_a, rel=1e-5)
    assert stats["grad_energy_norm"] == pytest.approx(grad_e, rel=1e-5)
    assert stats["softmax_gradient_ratio"] == pytest.approx(grad_e / grad_a, rel=1e-5)
    assert model.ca.alpha.grad is None  # measuring does not leave gradients on the parameters
    no_target = module_statistics(model, x)["ca"]
    assert math.isnan(no_target["grad_attention_norm"]) and no_target["row_max_mean"] == stats["row_max_mean"]


def test_gradient_is_zero_at_alpha_zero():
    # The module starts as the identity: at alpha = 0 nothing reaches A, whatever the scale.
    stats = module_statistics(_SumOfChannels(), torch.rand(1, 2, 3, 3), torch.ones(1, 1, 3, 3))["ca"]
    assert stats["grad_attention_norm"] == 0 and stats["grad_energy_norm"] == 0


def test_with_attention_scale_keeps_the_weights():
    from mdbd.model import build_model

    torch.manual_seed(0)
    model = build_model("multianet", attention_scale="none")
    with torch.no_grad():
        model.hca.alpha.fill_(0.25)
    cosine = with_attention_scale(model, "cosine")
    assert cosine.attention_scale == "cosine" and cosine.hca.scale == "cosine" and cosine.hca.alpha.item() == 0.25
    assert model.hca.scale == "none"  # the original is untouched
    same = {k: v for k, v in cosine.state_dict().items() if not k.endswith("log_temperature")}
    assert same.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in same.items())
    assert with_attention_scale(model, "none") is model


# -- real features: Oxford VGG-16 on a fixed CUHK test image -----------------------------------------------------------
REAL_ID = "out_of_focus0605"


def test_literal_attention_saturates_on_real_features_and_cosine_does_not(shared_data):
    from mdbd.data import open_dataset
    from mdbd.model import build_model
    from mdbd.core.weights import oxford_cache_path

    if not oxford_cache_path().is_file():
        pytest.skip(f"Oxford VGG-16 weights not cached at {oxford_cache_path()}: `mdbd weights fetch --source oxford`")
    pairs = open_dataset("cuhk", shared_data / "cuhk-full", "test")
    sample = pairs[pairs.ids.index(REAL_ID)]
    torch.manual_seed(0)
    model = build_model("multianet", backbone_weights="oxford")  # a fresh decoder on real VGG features
    frames = [attention_statistics(with_attention_scale(model, s), [sample.image], ids=[REAL_ID], size=160)
              for s in ("none", "n", "cosine")]
    stats = pd.concat(frames).set_index(["attention_scale", "module", "statistic"])["value"]
    assert stats["none", "LCA", "one_hot_fraction"] > 0.9 and stats["none", "HCA", "row_max_mean"] > 0.9
    for module in ("HCA", "LCA"):
        assert stats["cosine", module, "row_max_mean"] < 0.9
        assert stats["cosine", module, "one_hot_fraction"] < 0.1
        assert stats["n", module, "row_entropy_mean"] > 0.95 * stats["n", module, "uniform_entropy"]


# -- the command line on a tiny checkpoint (conftest's tiny_multianet) -------------------------------------------------
def _stats_cli(argv, capsys):
    status = main(["model", "--attention-stats", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_attention_stats_on_a_dataset(tiny_multianet, tmp_path, capsys):
    from mdbd.data import open_dataset

    checkpoint, root = tiny_multianet
    ids = open_dataset("synthetic", root, "test").ids
    out = tmp_path / "stats.csv"
    status, printed, _ = _stats_cli(["--checkpoint", str(checkpoint), "--dataset", "synthetic", "--data-root",
                                     str(root), "--ids", *ids, "--size", "32", "--out", str(out)], capsys)
    assert status == 0
    assert all(i in printed for i in ids) and "row_max_mean" in printed and "z_above_0.95" in printed
    stats = pd.read_csv(out)
    assert set(stats["module"]) == {"HCA", "LCA", "SA"} and list(dict.fromkeys(stats["image"])) == ids
    for col, value in (("size", 32), ("preset", "multianet"), ("attention_scale", "none"), ("dataset", "synthetic"),
                       ("split", "test"), ("trained_attention_scale", "none"), ("epoch", 2)):
        assert (stats[col] == value).all(), col
    v = stats.set_index(["image", "module", "statistic"])["value"]
    for image in ids:
        assert v[image, "HCA", "positions"] == 8 * 8 and v[image, "LCA", "positions"] == 32 * 32
        assert v[image, "HCA", "channels"] == 256 and v[image, "LCA", "channels"] == 64
        for module, c in (("HCA", 256), ("LCA", 64)):
            assert 1 / c - 1e-9 <= v[image, module, "row_max_mean"] <= 1 + 1e-9
            assert v[image, module, "alpha"] != 0  # two steps of training moved it
            assert v[image, module, "grad_attention_norm"] > 0  # masks given: one BCE step measured
        assert 0 <= v[image, "SA", "z_q05"] <= v[image, "SA", "z_q50"] <= v[image, "SA", "z_q95"] <= 1


def test_cli_files_with_masks_match_the_dataset_and_scale_override(tiny_multianet, tmp_path, capsys):
    from mdbd.data import open_dataset

    checkpoint, root = tiny_multianet
    pairs = open_dataset("synthetic", root, "test")
    image = pairs.image_paths[0]
    mask_dir = pairs.mask_paths[0].parent  # the synthetic set's mask files: white = in focus
    status, _, _ = _stats_cli(["--checkpoint", str(checkpoint), "--dataset", "synthetic", "--data-root", str(root),
                               "--ids", pairs.ids[0], "--size", "32", "--out", str(tmp_path / "a.csv")], capsys)
    assert status == 0
    status, _, _ = _stats_cli(["--checkpoint", str(checkpoint), str(image), "--masks", str(mask_dir), "--size", "32",
                               "--out", str(tmp_path / "b.csv")], capsys)
    assert status == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-6)  # same image, same mask, same numbers
    status, _, _ = _stats_cli(["--checkpoint", str(checkpoint), str(image), "--masks", str(mask_dir), "--polarity",
                               "blur_white", "--size", "32", "--out", str(tmp_path / "c.csv")], capsys)
    c = pd.read_csv(tmp_path / "c.csv").set_index(["module", "statistic"])["value"]
    assert c["LCA", "grad_attention_norm"] != pytest.approx(a.set_index(["module", "statistic"])["value"]
                                                            ["LCA", "grad_attention_norm"])  # inverted targets

    status, printed, _ = _stats_cli(["--checkpoint", str(checkpoint), str(image), "--size", "32",
                                     "--attention-scale", "cosine", "--out", str(tmp_path / "d.csv")], capsys)
    assert status == 0 and "no masks" in printed
    d = pd.read_csv(tmp_path / "d.csv")
    assert (d["attention_scale"] == "cosine").all() and (d["trained_attention_scale"] == "none").all()
    dv = d.set_index(["module", "statistic"])["value"]
    assert dv["HCA", "temperature"] == pytest.approx(10.0) and math.isnan(dv["HCA", "grad_attention_norm"])


@pytest.mark.parametrize("case", ["unknown id", "missing mask", "no checkpoint", "images without stats", "no images"])
def test_cli_errors_name_the_culprit(case, tiny_multianet, tmp_path, capsys):
    checkpoint, root = tiny_multianet
    image = sorted((root / "test").rglob("*.png"))[0]
    argv, message = {
        "unknown id": (["--attention-stats", "--checkpoint", str(checkpoint), "--dataset", "synthetic",
                        "--data-root", str(root), "--ids", "no_such_image"], "'no_such_image'"),
        "missing mask": (["--attention-stats", "--checkpoint", str(checkpoint), str(image), "--masks",
                          str(tmp_path)], f"no mask for {image}"),
        "no checkpoint": (["--attention-stats", str(image)], "needs --checkpoint"),
        "images without stats": ([str(image)], "go with --attention-stats"),
        "no images": (["--attention-stats", "--checkpoint", str(checkpoint)], "needs IMAGE arguments or --dataset"),
    }[case]
    assert main(["model", *argv]) == 2
    assert message in capsys.readouterr().err


def test_attention_table_is_one_row_per_module_and_statistic():
    stats = pd.DataFrame({"image": ["a", "a", "b", "b"], "module": ["HCA"] * 4,
                          "statistic": ["row_max_mean", "alpha"] * 2, "value": [0.5, 0.1, 0.7, 0.1]})
    table = attention_table(stats)
    assert list(table.columns) == ["module", "statistic", "a", "b", "mean"]
    assert list(table["statistic"]) == ["row_max_mean", "alpha"]  # first-seen order, not alphabetical
    assert table.loc[0, "mean"] == pytest.approx(0.6)
