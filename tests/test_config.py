"""Run profiles: one declared configuration, overridable per field, with clear errors."""

import re

import pytest

from mdbd.runs.config import PROFILES, load_config, parse_overrides
from mdbd.core.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_and_round_trips(profile):
    cfg = load_config(profile)
    assert cfg.profile == profile
    again = cfg.replace()
    assert again.to_dict() == cfg.to_dict()


def test_paper_profile_has_the_papers_recipe():
    cfg = load_config("paper")
    assert (cfg.image_size, cfg.batch_size, cfg.lr) == (320, 6, 4e-4)
    assert len(cfg.ablation.seeds) >= 3  # issue: the paper-profile ablation runs at least 3 seeds


def test_overrides_field_by_field_and_sections():
    cfg = load_config("smoke", preset="hl", epochs=5, **{"synth.train_images": 7, "ablation.seeds": [1, 2]})
    assert (cfg.preset, cfg.epochs, cfg.synth.train_images, cfg.ablation.seeds) == ("hl", 5, 7, (1, 2))
    # untouched sub-fields keep the profile's value
    assert cfg.synth.test_images == load_config("smoke").synth.test_images


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"image_size": 65}, "image_size must be even"),
    ({"lr": -1.0}, "lr must be > 0"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"attention_scale": "1/n"}, "attention_scale must be one of none, n, sqrt_n, cosine .*got '1/n'"),
    ({"no_such_field": 1}, "unknown configuration field 'no_such_field'"),
    ({"synth.colour": 1}, "unknown field 'synth.colour'"),
])
def test_bad_values_are_named(bad, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", **bad)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="smoke, laptop, paper"):
        load_config("huge")


def test_parse_overrides_reads_yaml_scalars():
    assert parse_overrides(["epochs=3", "bf16=false", "lr=1e-3", "preset=hl"]) == \
        {"epochs": 3, "bf16": False, "lr": 1e-3, "preset": "hl"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_mask_polarity_is_the_configured_one_for_folder_datasets_only():
    assert load_config("smoke", dataset="folder", polarity="blur_white").mask_polarity() == "blur_white"
    assert load_config("smoke", dataset="folder").mask_polarity() == "infocus_white"
    # synthetic, cuhk and dut have a fixed polarity their readers know
    for dataset in ("synthetic", "cuhk", "dut"):
        assert load_config("smoke", dataset=dataset, polarity="blur_white").mask_polarity() is None


def test_run_dirs_are_anchored_at_the_repository(monkeypatch, tmp_path):
    from mdbd.core.paths import REPO_ROOT

    monkeypatch.chdir(tmp_path)  # the caller's folder must not matter
    cfg = load_config("smoke", seed=3)
    assert cfg.resolved_data_root().is_relative_to(REPO_ROOT) or "MDBD_DATA_DIR" in __import__("os").environ
    name = cfg.resolved_run_dir().name
    assert re.fullmatch(r"multianet-synthetic-(cuhk|procedural)masks-seed3-[0-9a-f]{8}", name), name  # + identity


def test_synthetic_variants_never_share_a_folder(monkeypatch, tmp_path):
    """A model trained on the CUHK-mask variant must not be reused on the procedural one (and vice versa)."""
    from mdbd.runs import config

    folders = {}
    for origin in ("cuhk", "procedural"):
        monkeypatch.setattr(config, "synthetic_mask_origin", lambda o=origin: o)
        cfg = load_config("smoke")
        folders[origin] = (cfg.resolved_data_root(), cfg.resolved_run_dir())
    assert folders["cuhk"][0] != folders["procedural"][0] and folders["cuhk"][1] != folders["procedural"][1]
    assert folders["cuhk"][0].name == "smoke-seed0-cuhkmasks"


def test_a_profile_declares_per_dataset_settings_and_explicit_overrides_win(tmp_path, monkeypatch):
    from mdbd.runs import config

    (tmp_path / "smoke.yaml").write_text("image_size: 64\nepochs: 2\n"
                                         "datasets:\n  cuhk: {image_size: 96, freeze_backbone_blocks: 3}\n")
    monkeypatch.setattr(config, "PROFILES_DIR", tmp_path)
    synthetic, cuhk = config.load_config("smoke"), config.load_config("smoke", dataset="cuhk")
    assert (synthetic.image_size, synthetic.freeze_backbone_blocks) == (64, 0)
    assert (cuhk.image_size, cuhk.freeze_backbone_blocks, cuhk.epochs) == (96, 3, 2)
    assert config.load_config("smoke", dataset="cuhk", image_size=128).image_size == 128
    assert "datasets" not in cuhk.to_dict()  # what runs is the resolved configuration
    (tmp_path / "smoke.yaml").write_text("datasets:\n  imagenet: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="imagenet"):
        config.load_config("smoke")
