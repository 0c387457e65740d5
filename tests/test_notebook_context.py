"""Issue 24 item 4: a notebook asks its context for an upstream run's checkpoint or an upstream notebook's table,
instead of rebuilding the path itself; a missing one names what to run first."""

from __future__ import annotations

import pandas as pd
import pytest

from mdbd.runs.checkpoint import CHECKPOINT_NAME
from mdbd.core.errors import ConfigError
from mdbd.chain.notebook import start
from mdbd.core.paths import REPO_ROOT


@pytest.fixture
def ctx(monkeypatch, tmp_path):
    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path / "results"))
    return start("07_visual", profile="smoke", dataset="synthetic")


def test_a_missing_checkpoint_names_every_run_and_the_notebook_to_run(ctx):
    hl = ctx.cfg.replace(preset="hl")
    with pytest.raises(ConfigError, match=r"missing checkpoint\(s\) .*multianet.*, .*hl-.*: run 03_ablation with "
                                          r"profile='smoke' \(dataset 'synthetic'\) first"):
        ctx.checkpoints({"ours": ctx.cfg, "HL": hl}, made_by="03_ablation")


def test_a_present_checkpoint_is_the_run_folders_by_identity(ctx):
    hl = ctx.cfg.replace(preset="hl")
    path = hl.resolved_run_dir() / CHECKPOINT_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert ctx.checkpoints({"HL": hl}, made_by="03_ablation") == {"HL": path}
    with pytest.raises(ConfigError, match="run 02_train"):  # the notebook's own run is another identity
        ctx.checkpoint()


def test_an_upstream_table_is_read_or_its_notebook_named(ctx):
    with pytest.raises(ConfigError, match=r"04_comparison_all_protocols_curves.csv is missing: run 04_comparison"):
        ctx.upstream_table("04_comparison_all_protocols_curves")
    tables = ctx.results / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame({"a": [1, 2]}).to_csv(tables / "03_table_iii.csv", index=False)
    assert ctx.upstream_table("03_table_iii")["a"].tolist() == [1, 2]


def test_no_notebook_rebuilds_a_checkpoint_path():
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        assert f'"{CHECKPOINT_NAME}' not in text.replace('\\"', '"'), path.name
