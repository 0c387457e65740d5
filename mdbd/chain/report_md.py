"""The study's report for one results folder: results/<profile>/<dataset>/REPORT.md and report.html.

`write_report(profile, dataset)` (also `mdbd report`, and the end of `mdbd reproduce`) walks a reader through the
findings in order (REPORT_PLAN: data, our model's training, Table I with the protocol audit, Table III with its
verdict and paired table, Fig. 4, the visual grid, the attention diagnostics, running time), then every other table
and figure of the folder. Rules:

- every number comes from a file on disk (a table's CSV, a figure's PNG and JSON); none is typed here. The few
  sentences the report adds (the Table III verdict) are computed from the CSV on disk by the study's own code;
- every table and figure carries its provenance line (dataset, split, protocol, device, profile, code version), read
  from the CSV's columns or the figure's JSON; a field the file does not record says so;
- a number quoted from a paper (a column named "... (quoted...)": `paper (quoted)`, `D-DFFNet (quoted)`) is marked
  QUOTED_MARK, in the column's header and on every value, and the report's legend says what the mark means;
- a table or figure the plan expects but the folder lacks is reported (in the report, and in ReportResult.missing),
  never skipped silently; one the plan expects only under a condition (REPORT_PLAN's `needs`) is reported as not
  produced, with the reason;
- every file under tables/ and figures/ appears somewhere in REPORT.md (at least as a link);
- the output is deterministic (no date, no version of its own): regenerating an unchanged folder rewrites the same
  bytes, so a tracked REPORT.md can be checked for staleness.

report.html is the same document, self-contained (its CSS and a few lines of script inline, nothing fetched) with the
figures linked by relative path, not embedded: the tree does not grow by megabytes at each regeneration. Its script
counts the images that loaded into the element #image-check, which `check_in_browser` reads back from a headless
Chromium (`make report-check`).
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from mdbd.core.errors import ConfigError
from mdbd.core.io import atomic_write
from mdbd.evaluation.report import benchmark_kind, results_dir
from mdbd.chain.stages.ablation import ordering_verdict, verdict_text

REPORT_MD = "REPORT.md"
REPORT_HTML = "report.html"
#: the mark on every number quoted from a paper (never measured here)
QUOTED_MARK = "‡"
#: the provenance line's fields, in order, with their labels
PROVENANCE_FIELDS = (("dataset", "dataset"), ("split", "split"), ("protocol", "protocol"), ("device", "device"),
                     ("profile", "profile"), ("code_version", "code version"))
#: columns that are provenance rather than results: shown once above the table when they are the same on every row
META_COLUMNS = frozenset({
    "seed", "weights", "data_root", "notebook", "torch_version", "precision", "n_boot", "confidence", "quoted_from",
    "verdict", "headline", "left_out", "methods", "interval", "command", "source", "checkpoint", "concurrency",
    "distance_definition", "pred_dir", "pred_pattern", "pred_polarity", "resized_maps", "resized_ids", "positive",
    "n_images", "epochs", "device_name", "epoch", "torch", "model"})
#: a constant text longer than this becomes a note of its own under the provenance line
LONG_TEXT = 60
#: rows shown inline; a longer table shows its first rows and links its CSV
MAX_ROWS = 25
#: a text cell longer than this is shortened inline (the CSV holds it whole); numbers are never shortened
MAX_CELL = 120


def is_quoted_column(name: str) -> bool:
    """A column of numbers quoted from a paper: its name says "(quoted" (`paper (quoted)`, `paper (quoted): cuhk`,
    `D-DFFNet (quoted)`, `paper_gain (quoted, dut)`); `difference (ours - quoted)` is computed here and is not."""
    return "(quoted" in str(name).lower()


# ----------------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlanItem:
    """One table or figure of the plan. `required`: every chain writes it, so its absence is reported as missing;
    `needs`: it is expected only when this other table is on disk (else reported as not produced, with `when`)."""

    stem: str
    kind: str  # "table" | "figure"
    caption: str = ""
    required: bool = True
    needs: str | None = None
    when: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    items: tuple[PlanItem, ...]


def _t(stem, caption="", **kw):
    return PlanItem(stem, "table", caption, **kw)


def _f(stem, caption="", **kw):
    return PlanItem(stem, "figure", caption, **kw)


#: the study's findings in order (the numbered notebooks' tables and figures); anything else on disk follows them
REPORT_PLAN: tuple[Section, ...] = (
    Section("Data", "The dataset the chain ran on: its splits, its masks (1 = in focus after the loaders' inversion) "
                    "and what a training batch looks like after augmentation (notebook 01_data).", (
        _t("01_data_summary", "Data summary"),
        _t("01_cuhk_mask_statistics", "Real CUHK masks", required=False,
           when="written only where Shi's (CUHK) masks are on disk"),
        _f("01_samples_train", "Training samples with their masks"),
        _f("01_samples_test", "Test samples with their masks"),
        _f("01_augmented_batch", "An augmented training batch"),
    )),
    Section("Our model: training", "MultiANet trained by the profile's settings, its loss curve and its scores on "
                                   "the test split under every protocol (notebook 02_train).", (
        _f("02_loss_multianet", "Training loss"),
        _t("02_metrics_multianet", "MultiANet on the test split, all protocols"),
        _t("02_multianet_vs_references", "MultiANet beside the HL baseline and a Laplacian-energy map"),
    )),
    Section("Table I and the protocol audit", "The paper's Table I re-measured: our model, the re-implemented "
            "baselines and the published maps beside the paper's quoted numbers, under the protocol the audit "
            "found the paper to follow; then the audit itself, every candidate protocol ranked by its distance to "
            "the paper's quoted numbers (notebook 04_comparison).", (
        _t("04_table_i", "Table I"),
        _f("04_table_i", "Table I as bars"),
        _t("04_protocol_audit", "Protocol audit", required=False,
           when="written only where the audit could run (real CUHK data with the methods' maps)"),
        _f("04_protocol_audit", "Protocol audit heat map", needs="04_protocol_audit",
           when="drawn only with the audit's table"),
        _t("04_mae_readings", "MAE read in ways the audit's candidates do not cover", needs="04_protocol_audit",
           when="written only with the audit's table"),
        _t("04_comparison_all_protocols", "Every method under every protocol"),
    )),
    Section("Table III: the ablation and its verdict", "The seven ablation rows (notebook 03_ablation) beside the "
            "paper's quoted Table III (measured on DUT), the verdict on the paper's ordering computed from the "
            "table on disk, and each row's paired difference to its reference row.", (
        _t("03_table_iii", "Table III"),
        _t("03_table_iii_paired", "Table III, paired differences to the reference row", required=False,
           when="written by notebook 03_ablation with its paired bootstrap; folders written before that step "
                "existed lack it"),
        _f("03_table_iii", "Table III as bars"),
        _t("03_ablation_runs", "Table III, every run"),
    )),
    Section("Fig. 4: PR and F-measure curves", "The precision-recall and F-measure curves of every method under "
            "the headline protocol and under Zhao's (notebook 05_curves), and the curves' data.", (
        _f("05_pr_f_curves", "PR and F-measure curves, headline protocol"),
        _f("05_pr_f_curves_zhao", "PR and F-measure curves, Zhao's protocol"),
        _t("04_comparison_all_protocols_curves", "The curves' data"),
    )),
    Section("Visual comparison (Figs. 5-7)", "Test images, their ground truth and the maps of our model and two "
                                            "ablation rows (notebook 07_visual).", (
        _f("07_visual", "Visual comparison"),
    )),
    Section("Attention diagnostics", "Statistics of the full model's attention maps on a few test images "
                                     "(notebook 03_ablation).", (
        _t("03_attention_stats", "Attention statistics"),
    )),
    Section("Running time (Table II)", "Seconds per image, ours beside the paper's quoted ones, and the benchmark "
                                       "of the inference and training paths (notebook 06_runtime).", (
        _t("06_table_ii", "Table II"),
        _t("06_bench", "mdbd bench"),
    )),
)
OTHER_TITLE = "Further results on disk"
OTHER_INTRO = ("Every other table and figure of this folder (notebooks outside the default chain, selection runs, "
               "scripts), in the order of their names.")


# ------------------------------------------------------------------------------------------------ the document


@dataclass
class Cell:
    text: str
    quoted: bool = False
    strong: bool = False


@dataclass
class Block:
    kind: str  # heading | para | list | table | figure | links | prov | missing | toc | legend
    text: str = ""
    level: int = 2
    items: list = field(default_factory=list)
    header: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    src: str = ""
    anchor: str = ""


@dataclass
class ReportResult:
    """What write_report wrote and what the plan expected but did not find (paths relative to the folder)."""

    folder: Path
    markdown: Path
    html: Path
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    not_produced: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    """GitHub's heading anchor for `text` (lower case, punctuation dropped, spaces to hyphens)."""
    text = re.sub(r"[^\w\- ]", "", text.lower(), flags=re.UNICODE)
    return text.replace(" ", "-")


def format_number(value, quoted: bool = False, digits: int = 4) -> str:
    """A number as the report shows it: ours to `digits` decimals (integers as integers), a quoted one exactly as
    transcribed (shortest form), an empty cell for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return ""
        if quoted:
            return format(value, ".10g")
        if value.is_integer() and abs(value) >= 1:
            return str(int(value))
        if value != 0 and abs(value) < 10 ** -(digits - 1):
            return format(value, ".3g")
        return f"{value:.{digits}f}"
    return str(value)


def _unique(series: pd.Series) -> list:
    return [v for v in pd.unique(series.dropna()) if str(v) != ""]


def _short(text: str, limit: int = MAX_CELL) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prov_value(values: list) -> str:
    if not values:
        return "not recorded"
    if len(values) > 4:
        return f"{len(values)} values (per row)"
    return "; ".join(str(v) for v in values)


def read_table_title(md: Path) -> str | None:
    if not md.is_file():
        return None
    first = md.read_text(encoding="utf-8").splitlines()[:1]
    return first[0].lstrip("#").strip() if first and first[0].startswith("#") else None


def table_blocks(folder: Path, stem: str, heading: str, level: int = 3) -> list[Block]:
    """A table's heading, provenance line, notes (long constant texts), its rows (at most MAX_ROWS) with the quoted
    columns marked, and links to its files."""
    csv, md = folder / "tables" / f"{stem}.csv", folder / "tables" / f"{stem}.md"
    title = read_table_title(md)
    blocks = [Block("heading", f"{heading}: {stem}", level=level)]
    if title:
        blocks.append(Block("para", title))
    try:
        df = pd.read_csv(csv)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        blocks.append(Block("missing", f"tables/{stem}.csv could not be read ({type(exc).__name__}: {exc})"))
        blocks.append(_file_links(folder, "tables", stem))
        return blocks
    prov = {label: _prov_value(_unique(df[col])) if col in df.columns else "not recorded"
            for col, label in PROVENANCE_FIELDS}
    blocks.append(Block("prov", items=list(prov.items())))
    shown, notes, constants, empty = [], [], [], []
    prov_cols = {c for c, _ in PROVENANCE_FIELDS}
    for col in df.columns:
        values = _unique(df[col])
        if not values:
            empty.append(col)
            continue
        constant = len(values) == 1 and df[col].notna().all()
        if constant and col in prov_cols:
            continue
        if constant and isinstance(values[0], str) and len(values[0]) > LONG_TEXT and not is_quoted_column(col):
            notes.append(f"{col}: {values[0]}")
        elif constant and col in META_COLUMNS and len(df) > 1:
            constants.append(f"{col} {format_number(values[0])}")
        else:
            shown.append(col)
    if constants:
        blocks.append(Block("para", "The same on every row: " + "; ".join(constants) + "."))
    if notes:
        blocks.append(Block("list", items=notes))
    if empty:
        blocks.append(Block("para", "Empty on every row: " + ", ".join(empty) + "."))
    rows = []
    for _, row in df.head(MAX_ROWS).iterrows():
        rows.append([Cell(_short(format_number(row[c], quoted=is_quoted_column(c))), quoted=is_quoted_column(c)
                          and format_number(row[c]) != "") for c in shown])
    header = [Cell(c + (f" {QUOTED_MARK}" if is_quoted_column(c) else ""), quoted=is_quoted_column(c)) for c in shown]
    blocks.append(Block("table", header=header, rows=rows))
    if len(df) > MAX_ROWS:
        blocks.append(Block("para", f"Showing the first {MAX_ROWS} of {len(df)} rows: the whole table is in the CSV."))
    blocks.append(_file_links(folder, "tables", stem))
    return blocks


def figure_blocks(folder: Path, stem: str, heading: str, level: int = 3) -> list[Block]:
    """A figure's heading, provenance line (from its JSON), the image inline and links to its files."""
    png, meta = folder / "figures" / f"{stem}.png", folder / "figures" / f"{stem}.json"
    blocks = [Block("heading", f"{heading}: {stem}", level=level)]
    prov = {}
    if meta.is_file():
        try:
            prov = json.loads(meta.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            blocks.append(Block("missing", f"figures/{stem}.json could not be read ({exc})"))
    else:
        blocks.append(Block("missing", f"figures/{stem}.json (the figure's provenance) is not on disk"))
    blocks.append(Block("prov", items=[(label, str(prov[key]) if key in prov else "not recorded")
                                       for key, label in PROVENANCE_FIELDS]))
    if png.is_file():
        blocks.append(Block("figure", text=f"{heading} ({stem})", src=f"figures/{stem}.png"))
    else:
        blocks.append(Block("missing", f"figures/{stem}.png is not on disk"))
    blocks.append(_file_links(folder, "figures", stem))
    return blocks


def _file_links(folder: Path, sub: str, stem: str) -> Block:
    files = sorted(p for p in (folder / sub).glob(f"{glob_escape(stem)}.*") if p.is_file())
    return Block("links", items=[(p.suffix.lstrip(".").upper(), f"{sub}/{p.name}") for p in files])


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _stems(folder: Path, sub: str, suffix: str) -> set[str]:
    return {p.stem for p in (folder / sub).glob(f"*{suffix}") if p.is_file()} if (folder / sub).is_dir() else set()


def table_iii_verdict(folder: Path, stem: str) -> Block:
    """The verdict on the paper's ordering of Table III, computed from the table on disk by the study's own code
    (mdbd.chain.stages.ablation.ordering_verdict), or why it cannot be."""
    try:
        table = pd.read_csv(folder / "tables" / f"{stem}.csv")
        datasets = _unique(table["dataset"]) if "dataset" in table.columns else []
        synthetic = not datasets or benchmark_kind(str(datasets[0])) == "synthetic"
        text = verdict_text(ordering_verdict(table), synthetic=synthetic)
    except Exception as exc:  # noqa: BLE001 - any shape the table may have: say why, never drop the section
        return Block("missing", f"the Table III verdict could not be computed from tables/{stem}.csv "
                                f"({type(exc).__name__}: {exc})")
    head, *rest = text.splitlines()
    return Block("list", text=f"Verdict ({stem}, computed from the table on disk): {head}",
                 items=[line.lstrip("- ") for line in rest])


def at_a_glance(folder: Path) -> list[Block]:
    """Table I's measured rows with the paper's quoted numbers beside them (3 decimals), from tables/04_table_i.csv,
    and the audit's headline; nothing when Table I is not on disk."""
    path = folder / "tables" / "04_table_i.csv"
    if not path.is_file():
        return []
    df = pd.read_csv(path)
    need = {"method", "metric", "value"}
    if not need <= set(df.columns):
        return [Block("missing", f"tables/04_table_i.csv lacks the columns {sorted(need - set(df.columns))}")]
    datasets = _unique(df["dataset"]) if "dataset" in df.columns else []
    quoted_col = next((c for c in df.columns if is_quoted_column(c) and datasets and c.endswith(f": {datasets[0]}")),
                      next((c for c in df.columns if is_quoted_column(c)), None))
    measured = df[df["value"].notna()]
    header = [Cell("method"), Cell("source")]
    metrics = [m for m in ("fbeta", "mae") if m in set(measured["metric"])]
    for m in metrics:
        header.append(Cell({"fbeta": "F_beta", "mae": "MAE"}[m] + " [95% CI]"))
        if quoted_col:
            header.append(Cell(f"{quoted_col} {QUOTED_MARK}", quoted=True))
    rows = []
    for method in pd.unique(measured["method"]):
        sub = df[df["method"] == method].drop_duplicates("metric").set_index("metric")
        source = sub["source"].iloc[0] if "source" in sub.columns else ""
        row = [Cell(str(method), strong="ours" in str(method)), Cell(format_number(source))]
        for m in metrics:
            if m not in sub.index:
                row += [Cell("")] + ([Cell("")] if quoted_col else [])
                continue
            r = sub.loc[m]
            ci = (f" [{format_number(r['ci_low'], digits=3)}, {format_number(r['ci_high'], digits=3)}]"
                  if "ci_low" in sub.columns and pd.notna(r.get("ci_low")) else "")
            row.append(Cell(format_number(r["value"], digits=3) + ci, strong="ours" in str(method)))
            if quoted_col:
                q = format_number(r[quoted_col], quoted=True)
                row.append(Cell(q, quoted=bool(q)))
        rows.append(row)
    protocols = _unique(measured["protocol"]) if "protocol" in measured.columns else []
    blocks = [Block("heading", "At a glance", level=2),
              Block("para", "Table I's measured rows (tables/04_table_i.csv, 3 decimals; protocol "
                            + ("; ".join(map(str, protocols)) or "not recorded") + "), beside the paper's numbers "
                            f"(quoted, marked {QUOTED_MARK})."),
              Block("table", header=header, rows=rows)]
    audit = folder / "tables" / "04_protocol_audit.csv"
    if audit.is_file():
        a = pd.read_csv(audit)
        lines = [str(_unique(a[c])[0]) for c in ("headline",) if c in a.columns and _unique(a[c])]
        if lines:
            blocks.append(Block("para", "Protocol audit (tables/04_protocol_audit.csv): " + " ".join(lines)))
    if (folder / "tables" / "03_table_iii.csv").is_file():
        verdict = table_iii_verdict(folder, "03_table_iii")
        blocks.append(verdict if verdict.kind == "missing" else
                      Block("para", f"Table III (tables/03_table_iii.csv): {verdict.text.split('): ', 1)[1]}"))
    return blocks


def build_report(folder: Path, profile: str, dataset: str) -> tuple[list[Block], ReportResult]:
    """The report's blocks for `folder` and what it found (the files are written by write_report)."""
    folder = Path(folder)
    tables, figures = _stems(folder, "tables", ".csv"), _stems(folder, "figures", ".png")
    result = ReportResult(folder=folder, markdown=folder / REPORT_MD, html=folder / REPORT_HTML)
    variants = _variants(tables, figures)
    placed: set[tuple[str, str]] = set()
    body: list[Block] = []
    missing_blocks: list[str] = []
    toc: list[tuple[str, str]] = []
    for section in REPORT_PLAN:
        toc.append((section.title, slug(section.title)))
        body += [Block("heading", section.title, level=2, anchor=slug(section.title)), Block("para", section.intro)]
        for item in section.items:
            on_disk = tables if item.kind == "table" else figures
            ext = "csv" if item.kind == "table" else "png"
            path = f"{item.kind}s/{item.stem}.{ext}"
            if item.stem in on_disk:
                body += _item_blocks(folder, item.kind, item.stem, item.caption)
                placed.add((item.kind, item.stem))
            elif item.required and (item.needs is None or item.needs in tables):
                result.missing.append(path)
                missing_blocks.append(path)
                body.append(Block("missing", f"MISSING: {item.kind} {path} ({item.caption}) is in the report's plan "
                                             f"but not on disk."))
            else:
                result.not_produced.append(path)
                body.append(Block("para", f"Not produced in this run: {item.kind} {path} ({item.caption}; "
                                          f"{item.when})."))
            if item.kind == "table" and item.stem == "03_table_iii" and item.stem in on_disk:
                body.append(table_iii_verdict(folder, item.stem))
            for stem in variants.get((item.kind, item.stem), []):
                suffix = stem[len(item.stem) + 1:]
                body += _item_blocks(folder, item.kind, stem, f"{item.caption}, variant {suffix}")
                placed.add((item.kind, stem))
                if item.kind == "table" and item.stem == "03_table_iii":
                    body.append(table_iii_verdict(folder, stem))
    toc.append((OTHER_TITLE, slug(OTHER_TITLE)))
    body += _other_blocks(folder, tables, figures, placed)
    stray = _stray_files(folder, body)
    toc.append(("Other files", slug("Other files")))
    body += [Block("heading", "Other files", level=2, anchor=slug("Other files")),
             Block("para", "Files of tables/ and figures/ that no section above shows (a figure without its PNG, "
                           "a table without its CSV, anything else)." if stray else "None: every file of tables/ "
                                                                                    "and figures/ is shown above.")]
    if stray:
        body.append(Block("links", items=[(s, s) for s in stray]))
    result.tables = sorted(tables)
    result.figures = sorted(figures)

    head = [Block("heading", f"Report: {dataset} ({profile} profile)", level=1),
            Block("para", f"Generated by `mdbd report --profile {profile} --dataset {dataset}` from the tables and "
                          f"figures in this folder only: no number in it is typed by hand. Each table and figure "
                          f"carries its provenance line; the tables' CSVs and the figures' JSONs hold the rest."),
            Block("legend", f"{QUOTED_MARK} marks a number QUOTED from a paper (a column named \"... (quoted)\"): "
                            f"transcribed, not measured here."),
            Block("para", f"{len(tables)} tables and {len(figures)} figures on disk."
                          + (f" {len(result.missing)} planned file(s) MISSING." if result.missing else "")
                          + (f" {len(result.not_produced)} not produced by this run (conditional)."
                             if result.not_produced else ""))]
    if missing_blocks:
        head.append(Block("missing", "MISSING from this folder (planned, see their sections): "
                                     + ", ".join(missing_blocks)))
    executed = folder.parent.parent / "executed" / profile / dataset
    if executed.is_dir():
        head.append(Block("links", items=[("executed notebooks", os.path.relpath(executed, folder) + "/")]))
    glance = at_a_glance(folder)
    if glance:
        toc.insert(0, ("At a glance", slug("At a glance")))
    head.append(Block("toc", items=toc))
    return head + glance + body, result


def _variants(tables: set[str], figures: set[str]) -> dict[tuple[str, str], list[str]]:
    """(kind, planned stem) -> the stems on disk that are its variants. A file named after a planned one plus
    "_<suffix>" (another run's variant: 03_table_iii_attention-none_...) follows it; the longest planned name wins,
    and a planned name is never another's variant."""
    planned = {(i.kind, i.stem) for s in REPORT_PLAN for i in s.items}
    variants: dict[tuple[str, str], list[str]] = {}
    for kind, stems in (("table", tables), ("figure", figures)):
        for stem in sorted(stems):
            if (kind, stem) in planned:
                continue
            parents = [p for k, p in planned if k == kind and stem.startswith(p + "_")]
            if parents:
                variants.setdefault((kind, max(parents, key=len)), []).append(stem)
    return variants


def _other_blocks(folder: Path, tables: set[str], figures: set[str], placed: set[tuple[str, str]]) -> list[Block]:
    """The section of the tables and figures on disk that no planned section placed; adds them to `placed`."""
    others = sorted({s for s in tables if ("table", s) not in placed} | {s for s in figures
                                                                         if ("figure", s) not in placed})
    body = [Block("heading", OTHER_TITLE, level=2, anchor=slug(OTHER_TITLE)), Block("para", OTHER_INTRO)]
    if not others:
        body.append(Block("para", "None."))
    for stem in others:
        if stem in tables:
            body += _item_blocks(folder, "table", stem, "Table")
            placed.add(("table", stem))
        if stem in figures:
            body += _item_blocks(folder, "figure", stem, "Figure")
            placed.add(("figure", stem))
    return body


def _stray_files(folder: Path, body: list[Block]) -> list[str]:
    """Any file under tables/ or figures/ that no block of `body` links (a CSV without its .md is linked with it; a
    stray file is not), as "tables/NAME", sorted."""
    linked = {src for b in body if b.kind == "links" for _, src in b.items} | {b.src for b in body if b.src}
    return sorted(f"{p.parent.name}/{p.name}" for sub in ("tables", "figures") if (folder / sub).is_dir()
                  for p in (folder / sub).iterdir() if p.is_file() and f"{sub}/{p.name}" not in linked)


def _item_blocks(folder: Path, kind: str, stem: str, caption: str) -> list[Block]:
    return table_blocks(folder, stem, caption) if kind == "table" else figure_blocks(folder, stem, caption)


# ----------------------------------------------------------------------------------------------------- rendering


def _md_escape(text: str, cell: bool = False) -> str:
    text = " ".join(str(text).split()) if cell else str(text)
    text = text.replace("\\", "\\\\").replace("$", "\\$").replace("<", "&lt;").replace("*", "\\*")
    return text.replace("|", "\\|") if cell else text


def _md_text(text: str) -> str:
    """A paragraph: `code` spans kept as they are, the rest escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") else _md_escape(p) for p in parts)


def _md_cell(cell: Cell) -> str:
    text = _md_escape(cell.text, cell=True)
    if cell.quoted and text:
        text = f"*{text}*" if QUOTED_MARK in text else f"*{text}* {QUOTED_MARK}"
    if cell.strong and text:
        text = f"**{text}**"
    return text


def render_markdown(blocks: Iterable[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            out += ["#" * b.level + " " + _md_escape(b.text), ""]
        elif b.kind == "para":
            out += [_md_text(b.text), ""]
        elif b.kind == "legend":
            out += [f"> {_md_text(b.text)}", ""]
        elif b.kind == "missing":
            out += [f"> **{_md_text(b.text)}**", ""]
        elif b.kind == "list":
            if b.text:
                out += [_md_text(b.text), ""]
            out += [f"- {_md_text(item)}" for item in b.items] + [""]
        elif b.kind == "prov":
            out += ["*Provenance:* " + " · ".join(f"{k} **{_md_escape(v)}**" for k, v in b.items), ""]
        elif b.kind == "links":
            if b.items:
                out += ["Files: " + " · ".join(f"[{_md_escape(label)}]({href})" for label, href in b.items), ""]
        elif b.kind == "toc":
            out += [f"- [{_md_escape(title)}](#{anchor})" for title, anchor in b.items] + [""]
        elif b.kind == "figure":
            out += [f"![{_md_escape(b.text)}]({b.src})", ""]
        elif b.kind == "table":
            if not b.header:
                out += ["(no columns)", ""]
                continue
            out.append("| " + " | ".join(_md_cell(c) for c in b.header) + " |")
            out.append("|" + "|".join(" --- " for _ in b.header) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        else:  # pragma: no cover - a block kind added without its rendering
            raise ValueError(f"unknown block kind {b.kind!r}")
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #1f2328; }
h1 { border-bottom: 2px solid #d0d7de; } h2 { border-bottom: 1px solid #d0d7de; margin-top: 2em; }
h3 { margin-top: 1.6em; }
.scroll { overflow-x: auto; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; white-space: nowrap; }
td.wrap { white-space: normal; min-width: 22em; }
th { background: #f6f8fa; }
td.q, th.q { background: #fff4c2; font-style: italic; }
.prov { font-size: 13px; color: #57606a; } .prov b { color: #1f2328; }
.legend { border-left: 4px solid #d4a72c; background: #fff8e0; padding: 0.4em 0.8em; }
.missing { border-left: 4px solid #cf222e; background: #ffebe9; padding: 0.4em 0.8em; font-weight: bold; }
figure { margin: 0.5em 0 1em; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 13px; color: #57606a; }
#image-check { font-size: 13px; color: #57606a; }
code { background: #f6f8fa; padding: 0 3px; }
"""

#: counts the images that loaded (complete, with a width) into #image-check, which check_in_browser reads back
IMAGE_CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, bad = [];
  for (var i = 0; i < imgs.length; i++) {
    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) { bad.push(imgs[i].getAttribute('src')); }
  }
  var el = document.getElementById('image-check');
  el.setAttribute('data-total', imgs.length);
  el.setAttribute('data-loaded', imgs.length - bad.length);
  el.setAttribute('data-broken', bad.join(' '));
  el.textContent = 'Images loaded in this browser: ' + (imgs.length - bad.length) + ' of ' + imgs.length +
    (bad.length ? ' (NOT loaded: ' + bad.join(', ') + ')' : '.');
});
"""


def _html_text(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else html.escape(p) for p in parts)


def _html_cell(cell: Cell, tag: str) -> str:
    text = html.escape(cell.text)
    if cell.quoted and cell.text and tag == "td":
        text = f"{text}{QUOTED_MARK}" if QUOTED_MARK not in cell.text else text
    if cell.strong and text:
        text = f"<b>{text}</b>"
    classes = (["q"] if cell.quoted else []) + (["wrap"] if tag == "td" and len(cell.text) > 40 else [])
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<{tag}{cls}>{text}</{tag}>"


def render_html(blocks: list[Block], title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
    for b in blocks:
        if b.kind == "heading":
            anchor = f' id="{b.anchor}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
            if b.level == 1:
                out.append('<p id="image-check">Images loaded in this browser: not counted (scripts off).</p>')
        elif b.kind == "para":
            out.append(f"<p>{_html_text(b.text)}</p>")
        elif b.kind == "legend":
            out.append(f'<p class="legend">{_html_text(b.text)}</p>')
        elif b.kind == "missing":
            out.append(f'<p class="missing">{_html_text(b.text)}</p>')
        elif b.kind == "list":
            if b.text:
                out.append(f"<p>{_html_text(b.text)}</p>")
            out.append("<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "prov":
            out.append('<p class="prov">Provenance: ' + " · ".join(
                f"{html.escape(k)} <b>{html.escape(v)}</b>" for k, v in b.items) + "</p>")
        elif b.kind == "links":
            if b.items:
                out.append("<p>Files: " + " · ".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>'
                                                     for label, href in b.items) + "</p>")
        elif b.kind == "toc":
            out.append("<ul>" + "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for t, a in b.items)
                       + "</ul>")
        elif b.kind == "figure":
            out.append(f'<figure><a href="{html.escape(b.src)}"><img src="{html.escape(b.src)}" '
                       f'alt="{html.escape(b.text)}"></a><figcaption>{html.escape(b.text)}</figcaption></figure>')
        elif b.kind == "table":
            out.append('<div class="scroll"><table>')
            out.append("<thead><tr>" + "".join(_html_cell(c, "th") for c in b.header) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(_html_cell(c, "td") for c in row) + "</tr>" for row in b.rows]
            out.append("</tbody></table></div>")
        else:  # pragma: no cover
            raise ValueError(f"unknown block kind {b.kind!r}")
    out += [f"<script>{IMAGE_CHECK_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(out)


def report_texts(folder: Path, profile: str, dataset: str) -> tuple[str, str, ReportResult]:
    """REPORT.md's and report.html's text for `folder`, without writing them."""
    blocks, result = build_report(folder, profile, dataset)
    return render_markdown(blocks), render_html(blocks, f"mdbd report: {dataset} ({profile})"), result


def write_report(profile: str, dataset: str, folder: Path | None = None) -> ReportResult:
    """Write results/<profile>/<dataset>/REPORT.md and report.html (or those of `folder`) from the tables and
    figures on disk; ReportResult.missing lists the planned files the folder lacks."""
    folder = Path(folder) if folder is not None else results_dir(profile, dataset)
    if not folder.is_dir():
        raise ConfigError(f"no results folder {folder}: run `mdbd reproduce --profile {profile}` (dataset "
                          f"{dataset}) first, or give the folder")
    markdown, page, result = report_texts(folder, profile, dataset)
    for path, text in ((result.markdown, markdown), (result.html, page)):  # UTF-8 whatever the locale (the marks)
        atomic_write(path, lambda fh, text=text: fh.write(text.encode("utf-8")))
    return result


# ------------------------------------------------------------------------------------------ the browser check


@dataclass
class BrowserCheck:
    """What a headless Chromium made of report.html: images counted by the page's own script, the screenshot."""

    html: Path
    total: int
    loaded: int
    broken: list[str]
    screenshot: Path | None
    screenshot_ok: bool

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.loaded == self.total and (self.screenshot is None or self.screenshot_ok)


def find_chromium() -> str | None:
    """$MDBD_CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH (None: none)."""
    explicit = os.environ.get("MDBD_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome",
                                               "google-chrome-stable")) if p), None)


def _chromium_args(binary: str) -> list[str]:
    args = [binary, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--allow-file-access-from-files", "--virtual-time-budget=20000"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    return args


def check_in_browser(html_path: Path, screenshot: Path | None = None, *, width: int = 1280, height: int = 2400,
                     timeout: float = 180.0) -> BrowserCheck:
    """Open `html_path` in headless Chromium: read back the page's image count (#image-check, after the load event)
    from the rendered DOM and, with `screenshot`, save a PNG of the first `height` pixels and check it is not blank.
    A ConfigError when no Chromium is installed (Debian: apt-get install chromium)."""
    binary = find_chromium()
    if binary is None:
        raise ConfigError("no Chromium found (set MDBD_CHROMIUM, or on Debian: apt-get install chromium)")
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise ConfigError(f"{html_path} does not exist: run `mdbd report` first")
    env = {**os.environ, "HOME": os.environ.get("HOME", "/tmp")}
    dom = subprocess.run(_chromium_args(binary) + ["--dump-dom", html_path.as_uri()], capture_output=True,
                         text=True, timeout=timeout, env=env)
    match = re.search(r'<p id="image-check"([^>]*)>', dom.stdout)
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', match.group(1))) if match else {}
    if "total" not in attrs:
        raise ConfigError(f"Chromium did not run the page's image check (exit {dom.returncode}): "
                          f"{dom.stderr.strip()[-500:]}")
    shot_ok = False
    if screenshot is not None:
        screenshot = Path(screenshot).resolve()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        subprocess.run(_chromium_args(binary) + [f"--screenshot={screenshot}", f"--window-size={width},{height}",
                                                 html_path.as_uri()], capture_output=True, text=True,
                       timeout=timeout, env=env)
        shot_ok = screenshot_not_blank(screenshot)
    return BrowserCheck(html=html_path, total=int(attrs["total"]), loaded=int(attrs["loaded"]),
                        broken=attrs.get("broken", "").split(), screenshot=screenshot, screenshot_ok=shot_ok)


def screenshot_not_blank(path: Path) -> bool:
    """The PNG exists and is not one flat colour (a page that failed to render is white)."""
    if not Path(path).is_file():
        return False
    from PIL import Image

    with Image.open(path) as im:
        lo, hi = im.convert("L").getextrema()
    return hi - lo > 32
