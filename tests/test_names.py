"""Issue 24 item 5, one home per fact: the datasets and the mask/map polarities are defined in mdbd.core.names; every
module that offers or checks them uses that definition."""

from __future__ import annotations

import re

import pytest

from mdbd.core.names import DATASETS, POLARITIES
from mdbd.core.paths import REPO_ROOT


def test_every_module_uses_the_home_s_names():
    import mdbd.runs.config
    import mdbd.data
    import mdbd.data.readers
    import mdbd.evaluation.evaluate
    import mdbd.evaluation.published
    import mdbd.evaluation.report
    from mdbd.core.names import REAL_DATASETS

    assert mdbd.runs.config.DATASETS is DATASETS and mdbd.evaluation.published.MAP_POLARITIES is POLARITIES
    assert mdbd.data.readers.DATASETS is DATASETS and mdbd.data.DATASETS is DATASETS
    assert mdbd.data.readers.POLARITIES is POLARITIES and mdbd.evaluation.evaluate.GT_POLARITIES is POLARITIES
    assert mdbd.evaluation.report.REAL_DATASETS is REAL_DATASETS and set(REAL_DATASETS) < set(DATASETS)


def test_the_commands_offer_the_home_s_choices():
    from mdbd.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices

    def choices(command: list[str], option: str):
        p = sub[command[0]]
        for name in command[1:]:
            p = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
        return tuple(next(a for a in p._actions if option in a.option_strings).choices)

    assert choices(["reproduce"], "--dataset") == DATASETS
    assert choices(["model"], "--polarity") == POLARITIES
    assert choices(["data", "summary"], "--dataset") == DATASETS


def test_config_names_the_choices_it_refuses():
    from mdbd.runs.config import load_config
    from mdbd.core.errors import ConfigError

    with pytest.raises(ConfigError, match="choose synthetic, cuhk, dut or folder"):
        load_config("smoke", dataset="kodak")
    with pytest.raises(ConfigError, match="infocus_white or blur_white"):
        load_config("smoke", polarity="white")


def test_no_new_literal_copies():
    """The polarity pair and the dataset lists written out as a tuple literal again, outside their home, would be a
    new copy to drift."""
    literal = re.compile(r"\(\s*\"(?:infocus_white\"\s*,\s*\"blur_white|synthetic\"\s*,\s*\"cuhk\"\s*,\s*\"dut|"
                         r"cuhk\"\s*,\s*\"dut)\"")
    known = {"mdbd/core/names.py"}
    found = [str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "mdbd").rglob("*.py"))
             if literal.search(p.read_text()) and str(p.relative_to(REPO_ROOT)) not in known]
    assert found == []


def test_the_two_default_protocols_are_declared_side_by_side_with_the_reason():
    """`mdbd evaluate`'s default and the tables' headline differ on purpose; both homes say so (issue 24 item 5)."""
    import mdbd.chain.stages.common as common
    from mdbd.metrics import DEFAULT_PROTOCOL

    assert (DEFAULT_PROTOCOL, common.HEADLINE["fbeta"][0]) == ("sod", "sod-blur")
    assert common.DEFAULT_PROTOCOL is DEFAULT_PROTOCOL
    source = (REPO_ROOT / "mdbd" / "chain" / "stages" / "common.py").read_text()
    assert "Two defaults, on purpose" in source and "Two defaults, on purpose" in \
        (REPO_ROOT / "docs" / "metrics.md").read_text()


def test_the_model_options_share_one_check_that_names_the_paper_s_form():
    from mdbd.core.errors import ConfigError
    from mdbd.model.attention import check_attention_scale, check_spatial_gate
    from mdbd.model.spec import ATTENTION_SCALES, SPATIAL_GATES

    assert [check_attention_scale(s) for s in ATTENTION_SCALES] == list(ATTENTION_SCALES)
    assert [check_spatial_gate(g) for g in SPATIAL_GATES] == list(SPATIAL_GATES)
    with pytest.raises(ConfigError, match=r"unknown attention_scale 'l2'; choose one of none, n, sqrt_n, cosine "
                                          r"\(none = eq. 1 as the paper writes it\)"):
        check_attention_scale("l2")
    with pytest.raises(ConfigError, match=r"unknown spatial_gate 'tanh'.*\(sigmoid = eq. 3 as the paper writes it\)"):
        check_spatial_gate("tanh")
