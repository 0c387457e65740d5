"""One route per table: `mdbd ablation` names and titles its tables as notebook 03 does, defaults to the profile's
concurrency, and every notebook passes its data folder on to start() (05 did not: with --dataset folder it looked for
04's curves under another folder)."""

from __future__ import annotations

import json

import pytest

from mdbd.cli import build_parser
from mdbd.runs.config import load_config
from mdbd.core.paths import NOTEBOOKS_DIR
from mdbd.chain.stages.ablation import model_variant, table_iii_title, variant_suffix


def test_the_cli_names_a_non_default_attention_form_like_notebook_03():
    assert variant_suffix(load_config("smoke")) == ""
    literal = load_config("smoke", attention_scale="none", spatial_gate="sigmoid")
    assert variant_suffix(literal) == model_variant("none", "sigmoid")[1] == "_attention-none_gate-sigmoid"
    assert variant_suffix(load_config("smoke", attention_scale="none")) == "_attention-none"


def test_table_iii_is_titled_with_the_protocol_its_values_are_under():
    title = table_iii_title(load_config("laptop", dataset="cuhk"))
    assert "sod-blur" in title and "protocol sod," not in title and "protocol 1 max F" not in title


def test_the_cli_ablation_defaults_to_the_profiles_concurrency():
    assert build_parser().parse_args(["ablation"]).concurrent is None


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_with_a_data_root_parameter_passes_it_to_start(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    source = ["".join(c["source"]) for c in cells]
    params = next(s for c, s in zip(cells, source) if "parameters" in c["metadata"].get("tags", []))
    starts = [s for s in source if "ctx = start(" in s]
    assert starts, f"{path.name} has no start() call"
    if "data_root" in params:
        assert all("data_root=data_root" in s for s in starts), f"{path.name} does not pass data_root to start()"
