"""Issue 24 item 2: the run configuration in sections (mdbd.runs.sections). Every RunConfig field declares one section;
a run's identity is every section but runtime and ablation, each field entering as it declares; the model is built
from the model section; checkpoints store it and older ones (flat config only) still load."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from mdbd.runs.checkpoint import load_checkpoint, model_section, read_checkpoint
from mdbd.runs.config import LEGACY_CONFIG_DEFAULTS, RunConfig, load_config
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.runs.identity import identity_hash, run_identity
from mdbd.model import build_model, count_parameters
from mdbd.core.paths import display_path
from mdbd.runs.sections import (DERIVED, IDENTITY_SECTIONS, SECTIONS, UNLESS_LEGACY, fields_by_section, option,
                           section_of)

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
BASE = {"dataset": "cuhk", "preset": "multianet", "device": "cpu"}  # laptop profile: a real-data run with every module
# a changed value for every field outside the identity: none of them may change it
NOT_IN_IDENTITY = {
    "val_every": 3, "checkpoint_every": 2, "num_workers": 3, "device": "cpu:1", "run_dir": "/tmp/elsewhere",
    "concurrent_runs": 3, "cache_frozen_features": False,  # the laptop profile caches on cuhk
    "ablation": {"ablation.epochs": 3, "ablation.seeds": [4, 5], "ablation.presets": ["hl"]},
}
# a changed value for every field of the identity sections, with the base that field acts on
IN_IDENTITY = {
    "profile": ("paper", {}), "seed": (1, {}), "dataset": ("dut", {}), "data_root": ("data/elsewhere", {}),
    "polarity": ("blur_white", {"dataset": "folder", "data_root": "data/mine"}), "image_size": (64, {}),
    "source_size": (400, {}), "eval_size": (256, {}),
    "synth": ({"synth.train_images": 7}, {"dataset": "synthetic"}),
    "preset": ("hl", {}), "backbone_weights": ("none", {}), "attention_scale": ("n", {}),
    "spatial_gate": ("sigmoid", {}), "epochs": (9, {}), "batch_size": (4, {}), "lr": (1e-3, {}),
    "weight_decay": (1e-4, {}), "lr_schedule": ("constant", {}), "poly_power": (0.5, {}),
    "freeze_backbone_blocks": (2, {}), "bf16": (False, {"device": "cuda"}),
    "channels_last": (False, {"device": "cuda"}), "cpu_bf16": (True, {}), "compile": ("on", {}),
    "augment": (False, {}), "max_rotation_deg": (5.0, {}), "crop_scale": ((0.5, 1.0), {}),
}


@pytest.fixture(autouse=True)
def fixed_places(monkeypatch):
    """Identities name the data folder: the repository's data/, whatever the environment says."""
    monkeypatch.delenv("MDBD_DATA_DIR", raising=False)
    monkeypatch.setenv("MDBD_SHARED_DATA", "")


def _changed(cfg: RunConfig, name: str, value) -> RunConfig:
    return cfg.replace(**(value if isinstance(value, dict) else {name: value}))


def _hash(cfg: RunConfig) -> str:
    return identity_hash(run_identity(cfg))


def test_every_field_belongs_to_exactly_one_known_section_and_every_section_has_fields():
    assert all(f.metadata.get("section") in SECTIONS for f in FIELDS.values()), \
        [f.name for f in FIELDS.values() if f.metadata.get("section") not in SECTIONS]
    by_section = fields_by_section(RunConfig)
    listed = [name for names in by_section.values() for name in names]
    assert sorted(listed) == sorted(FIELDS)  # each field once: a partition
    assert all(by_section.values()), [s for s, names in by_section.items() if not names]
    assert set(IDENTITY_SECTIONS) == set(SECTIONS) - {"runtime", "ablation"}
    assert by_section["model"] == ("preset", "backbone_weights", "attention_scale", "spatial_gate")


def test_the_tables_of_this_module_cover_every_field():
    """A new field must be given a changed value here: in its section's table, so the two tests below test it."""
    outside = {name for name, f in FIELDS.items() if section_of(f) not in IDENTITY_SECTIONS}
    assert set(NOT_IN_IDENTITY) == outside
    assert set(IN_IDENTITY) == set(FIELDS) - outside


def test_a_section_is_its_fields_as_to_dict_writes_them_and_an_unknown_one_is_refused():
    cfg = load_config("laptop", **BASE)
    assert cfg.section("model") == {"preset": "multianet", "backbone_weights": "oxford",
                                    "attention_scale": cfg.attention_scale, "spatial_gate": cfg.spatial_gate}
    assert cfg.section("augmentation")["crop_scale"] == list(cfg.crop_scale)
    assert cfg.section("ablation") == {"ablation": cfg.to_dict()["ablation"]}
    merged = {k: v for name in SECTIONS for k, v in cfg.section(name).items()}
    assert merged == cfg.to_dict()
    with pytest.raises(ConfigError, match="unknown configuration section 'bookkeeping'"):
        cfg.section("bookkeeping")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", sorted(NOT_IN_IDENTITY))
def test_the_identity_ignores_every_runtime_and_ablation_field(name, device):
    base = load_config("laptop", **{**BASE, "device": device})
    value = NOT_IN_IDENTITY[name]
    if name == "device":
        value = f"{device}:1"  # the same type: cuda:0 and cuda:1 train alike
    changed = _changed(base, name, value)
    assert changed.to_dict()[name] != base.to_dict()[name]  # the change is real
    assert run_identity(changed) == run_identity(base)


@pytest.mark.parametrize("name", sorted(IN_IDENTITY))
def test_the_identity_changes_for_every_field_of_the_identity_sections(name):
    value, base_overrides = IN_IDENTITY[name]
    base = load_config("laptop", **{**BASE, **base_overrides})
    changed = _changed(base, name, value)
    assert changed.to_dict()[name] != base.to_dict()[name]
    assert _hash(changed) != _hash(base)


def test_a_field_acting_on_some_modules_devices_or_datasets_only_is_left_out_elsewhere():
    """The declared conditions, field by field: a preset without the modules, the other device type, the other
    datasets; each case's change would change the identity where the field acts (previous test)."""
    elsewhere = {"modules": {"preset": "hl_ll"}, "device": None, "dataset": {"dataset": "cuhk"}}
    checked = []
    for name, f in FIELDS.items():
        for key in ("modules", "device", "dataset"):
            if key not in f.metadata:
                continue
            value, base_overrides = IN_IDENTITY[name]
            other = elsewhere[key] or {"device": "cuda" if f.metadata["device"] == "cpu" else "cpu"}
            base = load_config("laptop", **{**BASE, **base_overrides, **other})
            assert _hash(_changed(base, name, value)) == _hash(base), (name, key)
            checked.append(name)
    assert {"attention_scale", "spatial_gate", "bf16", "channels_last", "cpu_bf16", "synth"} <= set(checked)


def test_a_field_entering_unless_legacy_is_left_out_at_its_legacy_value_only():
    legacy_fields = {name: f.metadata["legacy"][0] for name, f in FIELDS.items()
                     if f.metadata["identity"] == UNLESS_LEGACY}
    assert legacy_fields == {"spatial_gate": "sigmoid", "cpu_bf16": False}
    for name, old in legacy_fields.items():
        value, base_overrides = IN_IDENTITY[name]
        base = load_config("laptop", **{**BASE, **base_overrides})
        at_legacy = base.replace(**{name: old})
        other = base if getattr(base, name) != old else _changed(base, name, value)
        assert name not in run_identity(at_legacy) and run_identity(other)[name] == getattr(other, name)
    # derived fields enter as what they stand for, never as themselves
    derived = {name for name, f in FIELDS.items() if f.metadata["identity"] == DERIVED}
    assert derived == {"data_root", "polarity"}
    cfg = load_config("laptop", **BASE)
    identity = run_identity(cfg)
    assert "data_root" not in identity and identity["polarity"] is None  # the field is read for folder datasets only
    assert identity["data"] == display_path(cfg.resolved_data_root())


def test_legacy_values_are_declared_on_the_fields_and_read_by_checkpoints():
    assert {k: v[0] for k, v in LEGACY_CONFIG_DEFAULTS.items()} == {"attention_scale": "none",
                                                                     "spatial_gate": "sigmoid"}
    with pytest.raises(ValueError, match="unknown section 'bookkeeping'"):
        option("bookkeeping", 0)
    with pytest.raises(ValueError, match="needs the legacy value"):
        option("model", "x", identity=UNLESS_LEGACY)


@pytest.mark.parametrize("preset, options", [("hl", {}), ("hl_ll_hca_sa", {"spatial_gate": "sigmoid"}),
                                             ("multianet", {"attention_scale": "none"})])
def test_the_model_built_from_the_model_section_is_the_one_the_explicit_call_built(preset, options):
    cfg = load_config("laptop", preset=preset, backbone_weights="none", **options)
    torch.manual_seed(0)
    explicit = build_model(cfg.preset, backbone_weights=cfg.backbone_weights, attention_scale=cfg.attention_scale,
                           spatial_gate=cfg.spatial_gate)
    torch.manual_seed(0)
    sectioned = build_model(**cfg.section("model"))
    a, b = explicit.state_dict(), sectioned.state_dict()
    assert list(a) == list(b) and count_parameters(explicit) == count_parameters(sectioned)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (sectioned.attention_scale, sectioned.spatial_gate) == (cfg.attention_scale, cfg.spatial_gate)


def test_a_checkpoint_stores_the_model_section_beside_its_flat_config(tiny_multianet):
    checkpoint, _ = tiny_multianet
    state = read_checkpoint(checkpoint)
    section = state["model_section"]
    assert set(section) == set(fields_by_section(RunConfig)["model"])
    assert section == {key: state["config"][key] for key in section}  # older readers read the flat config
    assert section["preset"] == state["preset"] == "multianet" and section["attention_scale"] == "none"
    model, cfg, meta = load_checkpoint(checkpoint)
    assert (model.attention_scale, model.spatial_gate) == (section["attention_scale"], section["spatial_gate"])
    assert meta["model_section"] == section


def test_an_old_format_checkpoint_without_a_model_section_loads_the_same_model(tiny_multianet, tmp_path):
    checkpoint, _ = tiny_multianet
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    del state["model_section"]  # as every checkpoint written before the configuration had sections
    torch.save(state, tmp_path / "old.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every model field is in its config: no legacy note
        model, cfg, _ = load_checkpoint(tmp_path / "old.pt")
    reference, reference_cfg, _ = load_checkpoint(checkpoint)
    assert cfg == reference_cfg
    assert model_section(read_checkpoint(tmp_path / "old.pt")) == read_checkpoint(checkpoint)["model_section"]
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    assert (model.attention_scale, model.spatial_gate) == (reference.attention_scale, reference.spatial_gate)


def test_a_checkpoint_whose_model_section_and_config_disagree_is_refused(tiny_multianet, tmp_path):
    checkpoint, _ = tiny_multianet
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["model_section"]["attention_scale"] = "cosine"
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt.*disagree on attention_scale"):
        load_checkpoint(tmp_path / "edited.pt")
