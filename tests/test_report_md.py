"""The generated report (mdbd.chain.report_md, `mdbd report`) on a small hand-made results folder written through the
study's own save_table / save_figure: every table and figure file appears in REPORT.md, every inline image exists,
quoted numbers are marked and only they, a planned figure that is missing is reported, the numbers come from the
files; the tracked real reference set's REPORT.md and report.html are what the generator writes today; and, where
Chromium is installed, report.html checked in a real browser (the `browser` tests; `make report-check`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from mdbd.chain import report_md  # noqa: E402
from mdbd.evaluation import report  # noqa: E402
from mdbd.cli import main  # noqa: E402
from mdbd.core.paths import REPO_ROOT  # noqa: E402

PROFILE, DATASET = "smoke", "cuhk"
PROV = {"dataset": DATASET, "split": "test", "device": "cpu (test)", "seed": 0}
QUOTED_F, QUOTED_MAE = 0.951, 0.096  # the paper's Table I (cuhk), as a notebook would quote them
#: planned figures the fixture writes: all of the plan's but 05_pr_f_curves_zhao, left out to be reported missing
FIGURES = ("01_samples_train", "01_samples_test", "01_augmented_batch", "02_loss_multianet", "04_table_i",
           "03_table_iii", "05_pr_f_curves", "07_visual", "08_extra_figure")


def _figure(name: str, **prov) -> None:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    ax.set_title(name, fontsize=6)
    report.save_figure(fig, name, profile=PROFILE, dataset=DATASET, provenance={**PROV, **prov})
    plt.close(fig)


def _simple(name: str, rows: int = 3, **prov) -> None:
    df = pd.DataFrame({"method": [f"m{i}" for i in range(rows)], "metric": "fbeta",
                       "value": [0.5 + i / 1000 for i in range(rows)]})
    report.save_table(df, name, profile=PROFILE, dataset=DATASET, title=f"{name} title", provenance={**PROV, **prov})


def _table_i() -> None:
    rows = []
    for method, source, f, mae, qf, qm in (
            ("MultiANet (ours)", "trained here", 0.91431, 0.17459, QUOTED_F, QUOTED_MAE),
            ("LBP", "re-implemented", 0.86043, 0.20162, 0.866, 0.186),
            ("SS (quoted only, not re-run)", "quoted", None, None, 0.787, 0.298)):
        for metric, value, quoted, protocol in (("fbeta", f, qf, "sod-blur:max_f"), ("mae", mae, qm, "sod-blur:mae")):
            rows.append({"method": method, "source": source, "metric": metric, "value": value,
                         "ci_low": None if value is None else value - 0.02,
                         "ci_high": None if value is None else value + 0.02,
                         "paper (quoted): cuhk": quoted,
                         "difference vs cuhk": None if value is None else value - quoted,
                         "protocol": protocol if value is not None else "n/a (quoted only)"})
    report.save_table(pd.DataFrame(rows), "04_table_i", profile=PROFILE, dataset=DATASET, title="Table I",
                      provenance={**PROV, "quoted_from": "Jiang et al. MMSP 2020, Table I"})


def _table_iii(name: str = "03_table_iii") -> None:
    presets = ("hl", "hl_ll", "hl_ll_hca", "hl_ll_hca_sa", "hl_ll_hca_lca", "hl_ll_lca_sa", "multianet")
    paper = {"fbeta": (0.924, 0.937, 0.938, 0.944, 0.938, 0.940, 0.950),
             "mae": (0.132, 0.101, 0.092, 0.088, 0.089, 0.087, 0.078)}
    rows = [{"method": p, "metric": metric, "value": (0.80 + i / 100) if metric == "fbeta" else (0.20 - i / 100),
             report.QUOTED: paper[metric][i], "protocol": f"sod-blur:{'max_f' if metric == 'fbeta' else 'mae'}"}
            for metric in ("fbeta", "mae") for i, p in enumerate(presets)]
    report.save_table(pd.DataFrame(rows), name, profile=PROFILE, dataset=DATASET, title="Table III",
                      provenance=PROV)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A results folder with every table of the plan, every planned figure but 05_pr_f_curves_zhao, a Table III
    variant, a long table, a table and a figure outside the plan, and a stray file."""
    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path))
    for name in FIGURES:
        _figure(name, **({"protocol": "sod-blur"} if name == "05_pr_f_curves" else {}))
    for name in ("01_data_summary", "02_metrics_multianet", "02_multianet_vs_references", "03_ablation_runs",
                 "03_attention_stats", "06_bench", "13_extra_table", "04_comparison_all_protocols"):
        _simple(name)
    _simple("04_comparison_all_protocols_curves", rows=report_md.MAX_ROWS + 7, protocol="sod-blur")
    _table_i()
    _table_iii()
    _table_iii("03_table_iii_attention-none_gate-sigmoid")
    table2 = pd.DataFrame({"method": ["MultiANet"], "seconds_per_image": [0.33],
                           "paper (quoted): cuhk (Titan Xp / CPU)": [0.062]})
    report.save_table(table2, "06_table_ii", profile=PROFILE, dataset=DATASET, title="Table II", provenance=PROV)
    out = report.results_dir(PROFILE, DATASET)
    (out / "figures" / "notes.txt").write_text("a stray file\n")
    return out


def _files(folder: Path) -> list[str]:
    return sorted(f"{sub}/{p.name}" for sub in ("tables", "figures") for p in (folder / sub).iterdir())


def _md_tables(markdown: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table of the text: (header cells, rows of cells); escaped pipes stay inside their cell."""
    tables, current = [], None
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if current is None:
                current = (cells, [])
            elif not all(set(c) <= {"-", " ", ":"} for c in cells):
                current[1].append(cells)
        elif current is not None:
            tables.append(current)
            current = None
    return tables


def test_every_table_and_figure_file_appears_and_every_inline_image_exists(folder):
    result = report_md.write_report(PROFILE, DATASET)
    markdown, page = result.markdown.read_text(encoding="utf-8"), result.html.read_text(encoding="utf-8")
    files = _files(folder)
    assert len(files) > 40 and "figures/notes.txt" in files and "figures/07_visual.pdf" in files
    absent = [f for f in files if f"({f})" not in markdown]  # as a Markdown link or image target
    assert not absent, f"files of the folder not in REPORT.md: {absent}"
    absent_html = [f for f in files if f'"{f}"' not in page]
    assert not absent_html, f"files of the folder not in report.html: {absent_html}"
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(images) == sorted(f"figures/{name}.png" for name in FIGURES)
    assert all((folder / src).is_file() for src in images)
    html_images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(html_images) == sorted(images) and "base64" not in page  # linked, not embedded
    # every table and figure has its provenance line, with the six fields
    assert markdown.count("*Provenance:* dataset ") == len(list((folder / "tables").glob("*.csv"))) + len(FIGURES)
    for line in (x for x in markdown.splitlines() if x.startswith("*Provenance:*")):
        assert all(f" {label} **" in line or line.startswith(f"*Provenance:* {label} **")
                   for _, label in report_md.PROVENANCE_FIELDS), line
    assert "protocol **sod-blur**" in markdown  # 05_pr_f_curves' JSON records its protocol
    # the findings in the plan's order, the rest after them
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## At a glance", "## Data", "## Our model: training"]
    assert headings.index("## Table I and the protocol audit") < headings.index(
        "## Table III: the ablation and its verdict") < headings.index("## Running time (Table II)") < \
        headings.index("## Further results on disk")
    assert markdown.index("08_extra_figure") > markdown.index("## Further results on disk")
    # a long table is cut, and says so
    assert f"Showing the first {report_md.MAX_ROWS} of {report_md.MAX_ROWS + 7} rows" in markdown


def test_quoted_numbers_are_marked_and_only_they(folder):
    markdown, page, _ = report_md.report_texts(folder, PROFILE, DATASET)
    mark = report_md.QUOTED_MARK
    checked = 0
    for header, rows in _md_tables(markdown):
        for j, name in enumerate(header):
            quoted = "(quoted" in name
            assert quoted == (mark in name), f"header {name!r}"
            for row in rows:
                cell = row[j]
                if quoted and cell:
                    assert cell.endswith(mark) and cell.startswith("*"), f"quoted value not marked: {cell!r}"
                    checked += 1
                else:
                    assert mark not in cell, f"a value of {name!r} marked as quoted: {cell!r}"
    assert checked >= 4 + 4 + 14 + 14 + 1  # Table I (twice: at a glance and in full), Table III and its variant, II
    assert f"*{QUOTED_F}* {mark}" in markdown and f"*{QUOTED_MAE}* {mark}" in markdown
    assert f'<td class="q">{QUOTED_F}{mark}</td>' in page
    assert "difference vs cuhk" in markdown and f"difference vs cuhk {mark}" not in markdown  # computed here


def test_a_missing_planned_figure_is_reported_not_skipped(folder):
    result = report_md.write_report(PROFILE, DATASET)
    markdown = result.markdown.read_text(encoding="utf-8")
    assert result.missing == ["figures/05_pr_f_curves_zhao.png"]
    assert "MISSING: figure figures/05_pr_f_curves_zhao.png" in markdown
    assert "MISSING from this folder" in markdown.split("## At a glance")[0]  # said at the top too
    assert "MISSING" in result.html.read_text(encoding="utf-8")
    # the audit's figure is expected only with the audit's table: without it, "not produced", with it, missing
    assert "figures/04_protocol_audit.png" in result.not_produced
    _simple("04_protocol_audit")
    assert "figures/04_protocol_audit.png" in report_md.write_report(PROFILE, DATASET).missing
    # a PNG gone with its JSON left: the figure is missing, its JSON still listed
    (folder / "figures" / "07_visual.png").unlink()
    again = report_md.write_report(PROFILE, DATASET)
    assert "figures/07_visual.png" in again.missing
    assert "(figures/07_visual.json)" in again.markdown.read_text(encoding="utf-8")
    # the CLI lists them, and fails on them only with --strict
    assert main(["report", "--profile", PROFILE, "--dataset", DATASET]) == 0
    assert main(["report", "--profile", PROFILE, "--dataset", DATASET, "--strict"]) == 1


def test_the_numbers_come_from_the_files(folder):
    before, _, _ = report_md.report_texts(folder, PROFILE, DATASET)
    assert "**0.914 [0.894, 0.934]**" in before  # at a glance: 3 decimals of the CSV's 0.91431 and its interval
    table = pd.read_csv(folder / "tables" / "04_table_i.csv")
    table.loc[table["method"].eq("MultiANet (ours)") & table["metric"].eq("fbeta"), "value"] = 0.87654
    table.to_csv(folder / "tables" / "04_table_i.csv", index=False)
    after, _, _ = report_md.report_texts(folder, PROFILE, DATASET)
    assert "**0.877 [0.894, 0.934]**" in after and "0.8765" in after and "0.914 [" not in after
    # the Table III verdict is computed from the table on disk: the fixture's full model is best on both metrics
    assert "Table III (tables/03_table_iii.csv): The paper's ordering of Table III (full model best on both " \
           "metrics) IS reproduced" in before
    t3 = pd.read_csv(folder / "tables" / "03_table_iii.csv")
    t3.loc[t3["method"].eq("hl") & t3["metric"].eq("mae"), "value"] = 0.01
    t3.to_csv(folder / "tables" / "03_table_iii.csv", index=False)
    assert "Table III (tables/03_table_iii.csv): The paper's ordering of Table III is NOT reproduced" in \
        report_md.report_texts(folder, PROFILE, DATASET)[0]


def test_report_is_deterministic_and_refuses_a_missing_folder(folder, tmp_path):
    first = report_md.report_texts(folder, PROFILE, DATASET)[:2]
    assert report_md.report_texts(folder, PROFILE, DATASET)[:2] == first
    with pytest.raises(report_md.ConfigError, match="no results folder"):
        report_md.write_report("smoke", "nothing-here", folder=tmp_path / "nothing-here")


def test_run_chain_ends_by_writing_the_report(tmp_path, monkeypatch):
    """run_chain's last step, with papermill replaced by a stub that writes one table the way a notebook does."""
    import papermill

    import mdbd.chain.stages.data
    from mdbd.chain import reproduce

    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(mdbd.chain.stages.data, "check_dataset", lambda cfg: None)

    def fake_execute(source, target, **kwargs):
        shutil.copy(source, target)
        label = reproduce.chain_config("smoke").results_label()
        report.save_table(pd.DataFrame({"method": ["a"], "value": [0.5]}), "01_data_summary", profile="smoke",
                          dataset=label, title="T", provenance=PROV)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    result = reproduce.run_chain("smoke", ["01_data"], out_dir=tmp_path / "out", progress=False)
    assert result.report is not None and result.report.markdown.is_file() and result.report.html.is_file()
    assert "figures/01_samples_train.png" in result.report.missing
    assert "(tables/01_data_summary.csv)" in result.report.markdown.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ the tracked real reference set

TRACKED = REPO_ROOT / "results" / "laptop" / "cuhk"


def test_tracked_real_set_report_is_current_and_complete():
    """results/laptop/cuhk/REPORT.md and report.html are what the generator writes from the folder today (after a
    change to the generator or to the folder: `mdbd report --profile laptop --dataset cuhk`), and show every file."""
    markdown, page, result = report_md.report_texts(TRACKED, "laptop", "cuhk")
    assert (TRACKED / report_md.REPORT_MD).read_text(encoding="utf-8") == markdown, "stale REPORT.md: run `make report`"
    assert (TRACKED / report_md.REPORT_HTML).read_text(encoding="utf-8") == page, "stale report.html: run `make report`"
    assert result.missing == []
    files = [f for f in _files(TRACKED)]
    assert not [f for f in files if f"({f})" not in markdown]
    assert all((TRACKED / src).is_file() for src in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown))


# -------------------------------------------------------------------------------- in a real browser (Chromium)

needs_chromium = pytest.mark.skipif(report_md.find_chromium() is None,
                                    reason="no Chromium installed (Debian: apt-get install chromium)")


@needs_chromium
def test_browser_loads_every_figure_and_renders(folder, tmp_path):
    result = report_md.write_report(PROFILE, DATASET)
    check = report_md.check_in_browser(result.html, tmp_path / "shot.png", width=1000, height=1500)
    assert check.total == len(FIGURES) and check.loaded == check.total and check.broken == []
    assert check.screenshot_ok and check.ok


@needs_chromium
def test_browser_check_fails_on_a_figure_that_does_not_load(folder, tmp_path):
    result = report_md.write_report(PROFILE, DATASET)
    (folder / "figures" / "07_visual.png").write_bytes(b"not a png")
    check = report_md.check_in_browser(result.html, None)
    assert check.broken == ["figures/07_visual.png"] and check.loaded == check.total - 1 and not check.ok


def test_blank_screenshot_is_refused(tmp_path):
    from PIL import Image

    Image.new("RGB", (50, 50), "white").save(tmp_path / "blank.png")
    assert not report_md.screenshot_not_blank(tmp_path / "blank.png")
    assert not report_md.screenshot_not_blank(tmp_path / "absent.png")
