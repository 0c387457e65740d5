"""MultiANet: presets, shapes, gradients, module presence, precision, memory format, cost, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mdbd.core.errors import ConfigError, WeightsError
from mdbd.model import (
    ATTENTION_SCALES,
    PRESETS,
    ChannelAttention,
    ModelSpec,
    MultiANet,
    SpatialAttention,
    UpsampleConcatConv,
    build_model,
    count_parameters,
    to_probability,
)
from mdbd.model.backbone import TAP_CHANNELS

TABLE_III = {
    "hl": ("VGG HL (Baseline)", ("HL",)),
    "hl_ll": ("VGG HL+LL", ("HL", "LL")),
    "hl_ll_hca": ("VGG+HL+LL+HCA", ("HL", "LL", "HCA")),
    "hl_ll_hca_sa": ("VGG+HL+LL+HCA+SA", ("HL", "LL", "HCA", "SA")),
    "hl_ll_hca_lca": ("VGG+HL+LL+HCA+LCA", ("HL", "LL", "HCA", "LCA")),
    "hl_ll_lca_sa": ("VGG+HL+LL+LCA+SA", ("HL", "LL", "LCA", "SA")),
    "multianet": ("VGG+HL+LL+HCA+LCA+SA", ("HL", "LL", "HCA", "LCA", "SA")),
}
VGG16_FEATURE_PARAMS = 14_714_688  # torchvision vgg16().features


def test_presets_are_the_seven_rows_of_table_iii():
    assert list(PRESETS) == list(TABLE_III)
    for name, (label, modules) in TABLE_III.items():
        spec = PRESETS[name]
        assert isinstance(spec, ModelSpec)
        assert (spec.name, spec.table_label, spec.modules) == (name, label, modules)


@pytest.mark.parametrize("preset", list(TABLE_III))
def test_preset_forward_backward_and_modules(preset):
    torch.manual_seed(0)
    model = build_model(preset)
    assert model.preset == preset and model.spec is PRESETS[preset]
    modules = TABLE_III[preset][1]
    # Presence AND absence of each submodule, by type, not by the switches the constructor stored.
    assert isinstance(model.hca, ChannelAttention) == ("HCA" in modules)
    assert isinstance(model.lca, ChannelAttention) == ("LCA" in modules)
    assert isinstance(model.sa, SpatialAttention) == ("SA" in modules)
    assert isinstance(model.ll_reduce, UpsampleConcatConv) == ("LL" in modules)
    n_channel = sum(isinstance(m, ChannelAttention) for m in model.modules())
    n_spatial = sum(isinstance(m, SpatialAttention) for m in model.modules())
    assert n_channel == ("HCA" in modules) + ("LCA" in modules)
    assert n_spatial == ("SA" in modules)
    assert model.present_modules() == modules

    x = torch.rand(1, 3, 97, 131)
    logits = model(x)
    assert logits.shape == (1, 1, 97, 131)
    assert torch.isfinite(logits).all()
    loss = F.binary_cross_entropy_with_logits(logits, (x[:, :1] > 0.5).float())
    loss.backward()
    first_conv = model.backbone.features[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    assert model.classifier.weight.grad.abs().sum() > 0
    for attention in (model.hca, model.lca):
        if attention is not None:  # alpha starts at 0 but must receive a gradient
            assert attention.alpha.grad is not None and attention.alpha.grad.abs() > 0


@pytest.mark.parametrize("scale", ATTENTION_SCALES)
def test_every_attention_scale_runs_forward_and_backward_at_an_odd_size(scale):
    torch.manual_seed(0)
    model = build_model("multianet", attention_scale=scale)
    assert model.attention_scale == scale and model.hca.scale == scale and model.lca.scale == scale
    x = torch.rand(1, 3, 97, 131)
    logits = model(x)
    assert logits.shape == (1, 1, 97, 131) and torch.isfinite(logits).all()
    F.binary_cross_entropy_with_logits(logits, (x[:, :1] > 0.5).float()).backward()
    for attention in (model.hca, model.lca):
        assert attention.alpha.grad is not None and attention.alpha.grad.abs() > 0
    # only the cosine form has a parameter besides alpha (its temperature): one more per module
    extra = sum(p.numel() for name, p in model.named_parameters() if name.endswith("log_temperature"))
    assert extra == (2 if scale == "cosine" else 0)
    assert count_parameters(model) == count_parameters(build_model("multianet", attention_scale="none")) + extra


def test_unknown_attention_scale_is_named():
    with pytest.raises(ConfigError, match="'1/n'"):
        build_model("multianet", attention_scale="1/n")


def test_parameter_counts():
    # hl decoder: 1x1 1280->256 (327,936) + GroupNorm (512) + 3x3 256->64 (147,520) + 1x1 64->1 (65)
    assert count_parameters(build_model("hl")) == VGG16_FEATURE_PARAMS + 476_033
    model = build_model("multianet")
    assert count_parameters(model.backbone) == VGG16_FEATURE_PARAMS
    model.freeze_backbone_blocks(5)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - VGG16_FEATURE_PARAMS


def test_state_dict_uses_torchvision_feature_indices():
    keys = {k for k in build_model("hl").state_dict() if k.startswith("backbone.features.")}
    expected = {f"backbone.features.{i}.{kind}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
                for kind in ("weight", "bias")}
    assert keys == expected


def test_backbone_taps_sizes_and_channels():
    taps = build_model("hl").backbone(torch.rand(1, 3, 97, 131))
    assert [t.shape[1] for t in taps] == list(TAP_CHANNELS)
    assert [tuple(t.shape[-2:]) for t in taps] == [(97, 131), (48, 65), (24, 32), (12, 16), (6, 8)]
    assert all((t >= 0).all() for t in taps)  # tapped after the ReLU


def test_model_normalises_with_imagenet_statistics():
    model = build_model("hl")
    seen = {}
    model.backbone.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0].clone()))
    x = torch.rand(1, 3, 32, 32)
    model(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["x"], (x - mean) / std)


def test_upsample_concat_conv_equals_the_literal_formulation():
    torch.manual_seed(0)
    module = UpsampleConcatConv((4, 6, 5), 7)
    inputs = [torch.randn(2, 4, 12, 17), torch.randn(2, 6, 6, 8), torch.randn(2, 5, 3, 4)]
    literal = module.conv(torch.cat([inputs[0]] + [
        F.interpolate(t, size=(12, 17), mode="bilinear", align_corners=False) for t in inputs[1:]], dim=1))
    torch.testing.assert_close(module(inputs, (12, 17)), literal, rtol=1e-5, atol=1e-5)


def test_freeze_backbone_blocks():
    model = build_model("multianet")
    model.freeze_backbone_blocks(2)
    flags = [all(p.requires_grad for p in block.parameters()) for block in model.backbone.blocks]
    frozen = [not any(p.requires_grad for p in block.parameters()) for block in model.backbone.blocks]
    assert frozen[:2] == [True, True] and flags[2:] == [True, True, True]
    model(torch.rand(1, 3, 32, 32)).sum().backward()
    assert model.backbone.features[0].weight.grad is None  # block 1
    assert model.backbone.features[7].weight.grad is None  # conv2_2, block 2
    assert model.backbone.features[10].weight.grad is not None  # conv3_1, block 3
    model.freeze_backbone_blocks(0)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("n", [-1, 6, 2.5, True])
def test_freeze_backbone_blocks_rejects_bad_counts(n):
    with pytest.raises(ConfigError, match=repr(n)):
        build_model("hl").freeze_backbone_blocks(n)


def test_bf16_autocast_forward_on_cpu_keeps_gram_in_fp32(monkeypatch):
    dtypes = []
    original = ChannelAttention.attention_map

    def recording(self, x):
        out = original(self, x)
        dtypes.append((x.dtype, out.dtype))
        return out

    monkeypatch.setattr(ChannelAttention, "attention_map", recording)
    torch.manual_seed(0)
    model = build_model("multianet").eval()
    x = torch.rand(1, 3, 49, 67)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.shape == (1, 1, 49, 67) and torch.isfinite(logits.float()).all()
    assert len(dtypes) == 2  # HCA and LCA
    assert all(inp == torch.bfloat16 and out == torch.float32 for inp, out in dtypes)
    with torch.no_grad():
        reference = model(x)
    assert (logits.float() - reference).abs().max() < 0.05 * reference.abs().max() + 0.05


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = build_model("multianet").eval()
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


def test_to_probability_is_the_in_focus_sigmoid():
    logits = torch.tensor([-1e4, -2.0, 0.0, 3.0, 1e4])
    prob = to_probability(logits)
    torch.testing.assert_close(prob, torch.tensor([0.0, 0.11920292, 0.5, 0.95257413, 1.0]))


def test_decoder_costs_under_a_quarter_of_vgg_at_320():
    with torch.device("meta"):
        model = MultiANet()
        x = torch.rand(1, 3, 320, 320)
    with FlopCounterMode(display=False) as total:
        model(x)
    with FlopCounterMode(display=False) as backbone:
        model.backbone(x)
    vgg = backbone.get_total_flops()
    assert 60e9 < vgg < 65e9  # VGG-16 conv part at 320x320: ~31.3 GMACs
    assert (total.get_total_flops() - vgg) / vgg < 0.25


# -- bad input ---------------------------------------------------------------------------------
def test_unknown_preset_names_it_and_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="'multi_anet'") as info:
        build_model("multi_anet")
    assert all(name in str(info.value) for name in TABLE_III)


def test_unknown_override_is_named():
    with pytest.raises(ConfigError, match="'attention'"):
        build_model("hl", attention=True)


def test_low_level_modules_need_the_low_level_branch():
    with pytest.raises(ConfigError, match="low_level"):
        MultiANet(low_level=False, hca=True, lca=True, spatial_attention=False)
    with pytest.raises(ConfigError, match="low_level"):
        build_model("hl", spatial_attention=True)


def test_switch_overrides_give_the_matching_spec():
    model = build_model("hl_ll", hca=True)
    assert model.preset == "hl_ll_hca" and model.present_modules() == ("HL", "LL", "HCA")
    custom = build_model("hl_ll", lca=True)
    assert custom.preset == "custom" and custom.spec.modules == ("HL", "LL", "LCA")


def test_bad_widths_are_rejected():
    with pytest.raises(ConfigError, match="ll_channels"):
        MultiANet(ll_channels=30)


@pytest.mark.parametrize("x, match", [
    (torch.rand(3, 64, 64), r"\(B, 3, H, W\)"),
    (torch.rand(1, 1, 64, 64), r"\(1, 1, 64, 64\)"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "torch.uint8"),
    (torch.rand(1, 3, 15, 64), r"\(15, 64\)"),
])
def test_bad_input_is_rejected_with_its_shape_or_dtype(x, match):
    with pytest.raises(ConfigError, match=match):
        build_model("hl")(x)


def test_oxford_weights_missing_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("MDBD_DATA_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="mdbd weights fetch --source oxford"):
        build_model("hl", backbone_weights="oxford")


def test_backbone_source_is_recorded():
    assert build_model("hl").backbone_source.startswith("none")


# -- command line ------------------------------------------------------------------------------
def _run_model_command(argv, capsys):
    import argparse

    from mdbd.commands import model as model_command

    parser = argparse.ArgumentParser(prog="mdbd")
    model_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["model", *argv])
    return args.func(args), capsys.readouterr().out


def test_model_summary_lists_the_seven_presets(capsys):
    status, out = _run_model_command(["--summary"], capsys)
    lines = out.strip().splitlines()
    assert status == 0 and len(lines) == 2 + 7  # header, rule, one row per preset
    for line, (name, (label, modules)) in zip(lines[2:], TABLE_III.items()):
        assert line.startswith(name) and label in line and "+".join(modules) in line
    assert f"{VGG16_FEATURE_PARAMS + 476_033:,}" in lines[2]


def test_model_summary_markdown(capsys):
    status, out = _run_model_command(["--markdown"], capsys)
    lines = out.strip().splitlines()
    assert status == 0 and len(lines) == 2 + 7
    assert lines[0].startswith("| preset | Table III label |") and all(line.startswith("|") for line in lines)
