"""Issue 24 item 2 (first step): today's run-identity hashes, pinned for every profile x dataset x preset and for
the options that enter an identity by special rules (attention scale, spatial gate, CPU bf16, a folder dataset's
polarity). A restructuring of the configuration must leave every one of them as it is, or change this file in the
same commit and say which move and why: a changed hash means every finished run of that configuration is trained
again (results/runs/ folders are named by it, mdbd.runs.identity).

Regenerate on purpose only: MDBD_UPDATE_GOLDEN=1 pytest tests/test_identity_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mdbd.runs.config import ATTENTION_SCALES, PROFILES, SPATIAL_GATES, load_config
from mdbd.runs.identity import identity_hash, run_identity
from mdbd.model import PRESETS

GOLDEN = Path(__file__).with_name("golden_identity_hashes.json")


def _cases() -> dict[str, dict]:
    cases = {}
    for profile in PROFILES:
        for dataset in ("synthetic", "cuhk", "dut"):
            for preset in PRESETS:
                cases[f"{profile}/{dataset}/{preset}"] = {"profile": profile, "dataset": dataset, "preset": preset}
    base = {"profile": "laptop", "dataset": "cuhk"}
    for preset in ("hl_ll", "hl_ll_hca", "multianet"):
        for scale in ATTENTION_SCALES:
            cases[f"laptop/cuhk/{preset}/attention_scale={scale}"] = {**base, "preset": preset,
                                                                       "attention_scale": scale}
    for preset in ("hl_ll_hca", "multianet"):
        for gate in SPATIAL_GATES:
            cases[f"laptop/cuhk/{preset}/spatial_gate={gate}"] = {**base, "preset": preset, "spatial_gate": gate}
    cases["laptop/cuhk/multianet/cpu_bf16"] = {**base, "preset": "multianet", "cpu_bf16": True,
                                               "cache_frozen_features": False}
    for polarity in ("infocus_white", "blur_white"):
        cases[f"laptop/folder/multianet/{polarity}"] = {"profile": "laptop", "dataset": "folder",
                                                        "preset": "multianet", "data_root": "data/mine",
                                                        "polarity": polarity}
    return cases


def _hashes() -> dict[str, str]:
    out = {}
    for name, fields in _cases().items():
        fields = dict(fields)
        profile = fields.pop("profile")
        out[name] = identity_hash(run_identity(load_config(profile, device="cpu", **fields)))
    return out


@pytest.fixture
def fixed_places(monkeypatch):
    """Identities name the data folder: the repository's data/, procedural synthetic masks, on every machine."""
    monkeypatch.delenv("MDBD_DATA_DIR", raising=False)
    monkeypatch.setenv("MDBD_SHARED_DATA", "")


def test_run_identity_hashes_are_unchanged(fixed_places):
    hashes = _hashes()
    if os.environ.get("MDBD_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    changed = {k: f"{golden.get(k)} -> {v}" for k, v in hashes.items() if golden.get(k) != v}
    gone = sorted(set(golden) - set(hashes))
    assert not changed and not gone, f"run identities changed: {changed}; cases gone: {gone}"


def test_the_golden_cases_tell_configurations_apart(fixed_places):
    """A pin that cannot fail is no pin: the options that enter an identity give different hashes, the ones that
    do not (attention scale without channel attention) the same."""
    golden = json.loads(GOLDEN.read_text())
    assert len(set(golden.values())) > 0.8 * len(golden)
    assert golden["laptop/cuhk/multianet/attention_scale=none"] != golden["laptop/cuhk/multianet/attention_scale=n"]
    assert golden["laptop/cuhk/hl_ll/attention_scale=none"] == golden["laptop/cuhk/hl_ll/attention_scale=cosine"]
    assert golden["laptop/folder/multianet/infocus_white"] != golden["laptop/folder/multianet/blur_white"]
