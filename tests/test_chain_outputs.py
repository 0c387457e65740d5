"""The smoke chain's tables and figures: rows, provenance, and values that could be wrong (the trained model beats a
constant map, the quoted columns equal the transcribed paper tables, notebooks agree on the same number, curves are
monotone where they must be).

In `make test` the nbval run has just executed the chain (smoke profile, private state) and MDBD_CHAIN_RESULTS names
the folder its tables went to; run alone, this module executes the chain itself first."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdbd.runs.config import load_config
from mdbd.metrics import PROTOCOLS
from mdbd.core.paths import NOTEBOOKS_DIR, REPO_ROOT, resolve
from mdbd.evaluation.report import PAPER_TABLES, results_dir

pytestmark = pytest.mark.slow

PROVENANCE = ("dataset", "split", "profile", "device", "seed", "code_version")
FIGURES = ("01_samples_train", "01_samples_test", "01_augmented_batch", "02_loss_multianet", "03_table_iii",
           "04_table_i", "05_pr_f_curves", "05_pr_f_curves_zhao", "07_visual")
SMOKE = load_config("smoke")


def _newest_source_mtime() -> float:
    sources = list(NOTEBOOKS_DIR.glob("*.ipynb")) + list((REPO_ROOT / "mdbd").rglob("*.py"))
    return max(p.stat().st_mtime for p in sources)


@pytest.fixture(scope="module")
def smoke_results() -> Path:
    if os.environ.get("MDBD_CHAIN_RESULTS"):
        folder = Path(os.environ["MDBD_CHAIN_RESULTS"])
        assert (folder / "tables" / "06_table_ii.csv").is_file(), f"MDBD_CHAIN_RESULTS={folder} holds no chain run"
        return folder
    folder = results_dir("smoke", SMOKE.results_label())
    marker = folder / "tables" / "06_table_ii.csv"  # the last table of the chain
    figure = folder / "figures" / "07_visual.png"
    if not (marker.is_file() and figure.is_file() and figure.stat().st_mtime > _newest_source_mtime()):
        from mdbd.chain.reproduce import run_chain

        run_chain("smoke", progress=False)
    return folder


def _table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / "tables" / f"{name}.csv"
    assert path.is_file(), f"{path} was not written"
    assert (folder / "tables" / f"{name}.md").is_file()
    df = pd.read_csv(path)
    missing = [c for c in PROVENANCE if c not in df.columns]
    assert not missing, f"{name}: provenance columns missing {missing}"
    assert df["profile"].isin(["smoke", "n/a (quoted only)"]).all() and df["profile"].eq("smoke").any()
    return df


def _paper(table: str) -> pd.DataFrame:
    """The transcription, read here directly (not through mdbd.evaluation.report), to check what the tables quote."""
    df = pd.read_csv(PAPER_TABLES, dtype={"table": str})
    return df[df["table"] == table]


def _value(df: pd.DataFrame, protocol: str, metric: str, model: str | None = None) -> float:
    sub = df[(df["protocol"] == protocol) & (df["metric"] == metric)]
    if model is not None:
        sub = sub[sub["model"] == model]
    assert len(sub) == 1, (protocol, metric, model, len(sub))
    return float(sub["value"].iloc[0])


def test_data_summary(smoke_results):
    df = _table(smoke_results, "01_data_summary")
    assert list(df["split"]) == ["train", "test"]
    assert list(df["pairs"]) == [SMOKE.synth.train_images, SMOKE.synth.test_images]
    side = SMOKE.synth.image_size
    assert set(df["height_range"]) == set(df["width_range"]) == {f"{side}-{side}"}
    assert df["mean_infocus_fraction"].between(0.05, 0.95).all()


def test_the_trained_model_beats_a_constant_map_on_the_same_test_masks(smoke_results):
    """A constant map has one level: at thresholds up to it every image has P = p_i (its in-focus fraction), R = 1,
    so its protocol-1 max F is mean_i 1.3 p_i / (0.3 p_i + 1), and its MAE that of a flat 0.5. Scored here on the
    masks the chain's test split holds, through the same evaluate_maps."""
    from mdbd.data import open_dataset
    from mdbd.evaluation.evaluate import evaluate_maps

    df = _table(smoke_results, "02_metrics_multianet")
    assert set(df["protocol"]) == set(PROTOCOLS)
    assert df["value"].between(0, 1).all() and (df["ci_low"] <= df["ci_high"]).all()
    assert set(df["precision"]) == {"fp32, 8-bit maps"}
    pairs = open_dataset("synthetic", resolve(df["data_root"].iloc[0]), "test")  # display_path: repo-relative
    gts = [pairs.load_mask_levels(i) for i in range(len(pairs))]
    constant = evaluate_maps([np.full(g.shape, 128, np.uint8) for g in gts], gts, protocols=["sod"], bootstrap=0,
                             strict_gt=False).table
    p = np.array([np.mean(g > 128) for g in gts])
    assert _value(constant, "sod", "max_f") == pytest.approx(np.mean(1.3 * p / (0.3 * p + 1)), abs=1e-12)
    assert _value(df, "sod", "max_f") > _value(constant, "sod", "max_f") + 0.1
    assert _value(df, "sod", "mae") < _value(constant, "sod", "mae")
    assert _value(df, "sod", "max_f") >= _value(df, "sod", "mean_f")  # a max over thresholds is >= their mean


def test_table_iii(smoke_results):
    df = _table(smoke_results, "03_table_iii")
    assert len(df) == 14 and set(df["metric"]) == {"fbeta", "mae"}
    assert df["value"].between(0, 1).all() and df["dataset"].eq("synthetic").all()
    assert df["difference (ours - quoted)"].isna().all()  # synthetic vs DUT: never a difference
    quoted = _paper("III").query("dataset == 'dut'").set_index(["method", "metric"])["value"]
    got = df.set_index(["method", "metric"])["paper (quoted)"]
    pd.testing.assert_series_equal(got.sort_index(), quoted.reindex(got.index).sort_index(), check_names=False)
    # one ablation seed in the smoke profile: no interval over seeds, the run's bootstrap interval kept and said so
    assert (df["seeds"] == 1).all() and df["ci_low"].isna().all()
    assert df["interval"].str.startswith("no interval over seeds").all()
    assert (df["bootstrap_ci_low"] <= df["bootstrap_ci_high"]).all()
    runs = _table(smoke_results, "03_ablation_runs")
    assert (runs["epochs"] == SMOKE.ablation.epochs).all() and len(runs) == 14
    assert runs.drop_duplicates("checkpoint").shape[0] == 7  # seven runs, each in its own folder


def test_table_i(smoke_results):
    df = _table(smoke_results, "04_table_i")
    assert len(df) == 20  # the paper's nine methods + our Laplacian-energy map, x (fbeta, mae)
    measured = df[df["value"].notna()]
    assert set(measured["method"]) == {"MultiANet (ours)", "HiFST", "LBP", "Laplacian energy"}
    assert df["method"].str.contains("quoted only").sum() == 12
    # provenance of every row; no published maps on the synthetic benchmark, so DBDF stays quoted with the reason
    assert set(df.loc[df["value"].notna(), "source"]) == {"trained here", "re-implemented", "implemented here"}
    assert set(df.loc[df["value"].isna(), "source"]) == {"quoted"}
    assert df.loc[df["method"].str.startswith("DBDF"), "note"].str.startswith("not available").all()
    paper = _paper("I")
    key = df["method"].str.replace(r" \(quoted only, not re-run\)| \(ours\)", "", regex=True)
    for ds in ("cuhk", "dut"):
        quoted = paper[paper["dataset"] == ds].set_index(["method", "metric"])["value"]
        want = [quoted.get((m, k), np.nan) for m, k in zip(key, df["metric"])]
        np.testing.assert_array_equal(df[f"paper (quoted): {ds}"].to_numpy(dtype=float), np.array(want, float))
    # the same checkpoint scored by 02 and by 04 through the one scoring path: the same number
    from mdbd.chain.stages.common import HEADLINE

    ours = df[df["method"] == "MultiANet (ours)"].set_index("metric")["value"]
    metrics = _table(smoke_results, "02_metrics_multianet")
    assert ours["fbeta"] == _value(metrics, *HEADLINE["fbeta"]) and ours["mae"] == _value(metrics, *HEADLINE["mae"])


def test_curves_are_monotone_where_they_must_be(smoke_results):
    curves = pd.read_csv(smoke_results / "tables" / "04_comparison_all_protocols_curves.csv")
    sizes = curves.groupby(["model", "protocol"]).size().to_dict()
    assert {sizes[(m, "sod")] for m in curves["model"].unique()} == {256}
    assert {sizes[(m, "zhao")] for m in curves["model"].unique()} == {21}
    for (model, protocol), c in curves.groupby(["model", "protocol"]):
        c = c.sort_values("threshold")
        assert c["threshold"].is_monotonic_increasing and c["threshold"].iloc[0] == 0
        # pred >= t selects fewer pixels as t grows: recall can only fall (per image, hence on average)
        assert (np.diff(c["recall"].to_numpy()) <= 1e-12).all(), (model, protocol)
        assert c["recall"].iloc[0] == pytest.approx(1.0), (model, protocol)  # t = 0 selects every pixel
        assert c[["precision", "recall", "fmeasure"]].stack().between(0, 1).all()


def test_table_ii(smoke_results):
    df = _table(smoke_results, "06_table_ii")
    assert set(df["method"]) == {"MultiANet", "HiFST", "LBP", "Laplacian energy"}
    assert df["seconds_per_image"].gt(0).all()
    quoted = [c for c in df.columns if c.startswith("paper (quoted): cuhk")]
    paper = _paper("II").query("dataset == 'cuhk'").set_index("method")["value"]
    assert quoted and df.set_index("method").loc["MultiANet", quoted[0]] == paper["MultiANet"] == 0.062


def test_figures(smoke_results):
    for name in FIGURES:
        for ext in ("png", "pdf", "json"):
            path = smoke_results / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path


def test_report_on_the_smoke_chain(smoke_results, tmp_path):
    """The report of the chain's folder (written to a copy: MDBD_CHAIN_RESULTS may be read-only): nothing the plan
    expects is missing, every table and figure file appears, every inline image exists, quoted numbers are marked."""
    import re
    import shutil

    from mdbd.chain.report_md import QUOTED_MARK, write_report

    folder = tmp_path / "results"
    shutil.copytree(smoke_results, folder, ignore=shutil.ignore_patterns("REPORT.md", "report.html"))
    result = write_report("smoke", SMOKE.results_label(), folder=folder)
    markdown = result.markdown.read_text(encoding="utf-8")
    assert result.missing == [], result.missing
    files = [f"{sub}/{p.name}" for sub in ("tables", "figures") for p in (folder / sub).iterdir()]
    assert not [f for f in files if f"({f})" not in markdown]
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert {f"figures/{name}.png" for name in FIGURES} <= set(images)
    assert all((folder / src).is_file() for src in images)
    quoted = pd.read_csv(folder / "tables" / "04_table_i.csv")["paper (quoted): cuhk"].dropna()
    assert len(quoted) and all(f"*{v:g}* {QUOTED_MARK}" in markdown for v in quoted)
