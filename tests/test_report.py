"""Tables and figures keep measured and quoted numbers apart and always carry their provenance."""

import json

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from mdbd.evaluation import report  # noqa: E402
from mdbd.core.errors import ConfigError  # noqa: E402


def test_paper_tables_transcription():
    t = report.load_paper_tables()
    assert set(t["table"]) == {"I", "II", "III"}
    # Table I: 9 methods x 2 datasets x 2 metrics; Table II: 9 x 2; Table III: 7 rows x 2 metrics
    assert (t["table"] == "I").sum() == 36 and (t["table"] == "II").sum() == 18 and (t["table"] == "III").sum() == 14
    t1 = t[(t["table"] == "I") & (t["method"] == "MultiANet")].set_index(["dataset", "metric"])["value"]
    assert t1[("cuhk", "fbeta")] == 0.951 and t1[("dut", "mae")] == 0.078
    t3 = t[(t["table"] == "III") & (t["method"] == "hl")].set_index("metric")["value"]
    assert (t3["mae"], t3["fbeta"]) == (0.132, 0.924)
    assert t["source"].str.startswith("quoted").all()


def test_unknown_paper_table():
    with pytest.raises(ConfigError, match="no Table 'IV'"):
        report.load_paper_tables("IV")


def test_synthetic_titles_say_so():
    assert "SYNTHETIC" in report.table_title("Table I", "synthetic", "test")
    assert "SYNTHETIC" not in report.table_title("Table I", "dut", "test")


def test_beside_paper_leaves_difference_empty_on_synthetic_data():
    ours = pd.DataFrame({"method": ["MultiANet"], "metric": ["fbeta"], "value": [0.90], "dataset": ["synthetic"]})
    out = report.beside_paper(ours, "I", paper_dataset="cuhk").set_index(["method", "metric"])
    assert out.loc[("MultiANet", "fbeta"), report.QUOTED] == 0.951
    assert pd.isna(out.loc[("MultiANet", "fbeta"), "difference (ours - quoted)"])
    ours["dataset"] = "cuhk"
    out = report.beside_paper(ours, "I", paper_dataset="cuhk").set_index(["method", "metric"])
    assert out.loc[("MultiANet", "fbeta"), "difference (ours - quoted)"] == pytest.approx(0.90 - 0.951)


def test_save_table_writes_csv_and_markdown_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path))
    df = pd.DataFrame({"method": ["a"], "value": [0.5]})
    paths = report.save_table(df, "t", profile="smoke", dataset="synthetic", title="T",
                              provenance={"dataset": "synthetic", "split": "test", "device": "cpu", "seed": 0})
    back = pd.read_csv(paths["csv"])
    for col in ("dataset", "split", "profile", "device", "seed", "code_version"):
        assert col in back.columns
    assert paths["md"].read_text().startswith("# T")
    assert paths["csv"] == tmp_path / "smoke" / "synthetic" / "tables" / "t.csv"
    assert not list((tmp_path / "smoke" / "synthetic" / "tables").glob(".*tmp"))


def test_save_table_refuses_missing_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="lacks provenance columns"):
        report.save_table(pd.DataFrame({"x": [1]}), "t", profile="smoke", dataset="cuhk", title="T",
                          provenance={"device": "cpu"})
    assert not (tmp_path / "smoke" / "cuhk" / "tables" / "t.csv").exists()


def test_save_figure_writes_png_pdf_and_provenance(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    paths = report.save_figure(fig, "f", profile="smoke", dataset="synthetic",
                               provenance={"dataset": "synthetic", "seed": 1})
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and paths["pdf"].read_bytes()[:4] == b"%PDF"
    assert json.loads(paths["json"].read_text())["seed"] == 1
