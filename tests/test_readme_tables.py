"""Nothing in the README's headline table contradicts the tracked tables (issue 26, item 2).

The convention, which a README restructure must keep (and may reuse for other tables):

- the checked table is the first Markdown table after a line ``<!-- checked-table: PATH ... -->`` in README.md, PATH
  being a tracked CSV relative to the repository root (blank lines may stand between the two; the comment is
  invisible on a Git host);
- its first column, headed ``method``, names the row as the CSV's ``method`` column does (``**bold**`` ignored); rows
  naming no method of the CSV (quoted-only rows grouped in one cell, say) are not checked;
- a column headed ``F_beta ...`` holds the CSV's ``fbeta`` row of that method, one headed ``MAE ...`` its ``mae``
  row, as ``VALUE`` or ``VALUE [CI_LOW, CI_HIGH]``: each equal to the CSV's ``value``, ``ci_low``, ``ci_high`` rounded
  to 3 decimals;
- a column headed ``paper (quoted)`` right after a metric column holds the paper's number for that metric: the
  CSV's ``paper (quoted): <dataset>`` column (or its only ``paper (quoted)`` one), as transcribed;
- every other column (source, notes) is free text, not checked.

At least one marked table must exist, and the headline row, MultiANet (ours) on Shi's data under sod-blur (F_beta
0.914, MAE 0.175 when this test was written), must be among the rows checked, so the check cannot pass by finding
nothing. The tests on hand-made READMEs below show that it fails on a changed number, a lost row or a lost marker."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from mdbd.core.paths import REPO_ROOT

MARKER = re.compile(r"<!--\s*checked-table:\s*(\S+)[^>]*-->")
HEADLINE_METHOD = "MultiANet (ours)"
METRIC_HEADERS = {"F_beta": "fbeta", "MAE": "mae"}
NUMBER = r"-?\d+(?:\.\d+)?"


def marked_tables(readme: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(CSV path, header cells, body rows) of every table announced by a checked-table marker."""
    lines = readme.splitlines()
    found = []
    for i, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block = []
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            block.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[j].strip())[1:-1]])
            j += 1
        if len(block) < 2:
            raise AssertionError(f"README line {i + 1}: a checked-table marker with no Markdown table after it")
        found.append((match.group(1), block[0], block[2:]))
    return found


def _numbers(cell: str) -> list[str]:
    return re.findall(NUMBER, cell.replace("**", ""))


def check_table(csv_path: Path, header: list[str], rows: list[list[str]]) -> tuple[list[str], list[str]]:
    """(what was checked, mismatches) for one marked table against its CSV."""
    df = pd.read_csv(csv_path)
    assert header and header[0].lower() == "method", f"the checked table's first column must be 'method': {header}"
    checked, wrong = [], []
    for row in rows:
        method = row[0].replace("**", "").strip()
        sub = df[df["method"] == method]
        if sub.empty:
            continue
        for k, name in enumerate(header):
            metric = next((m for prefix, m in METRIC_HEADERS.items() if name.startswith(prefix)), None)
            if metric is None:
                continue
            line = sub[sub["metric"] == metric]
            if len(line) != 1:
                wrong.append(f"{method} {metric}: {len(line)} rows in {csv_path.name}")
                continue
            line = line.iloc[0]
            shown = _numbers(row[k])
            expected = [line["value"]] + ([line["ci_low"], line["ci_high"]] if len(shown) == 3 else [])
            if len(shown) not in (1, 3):
                wrong.append(f"{method} {metric}: cannot read {row[k]!r} (VALUE or VALUE [LOW, HIGH])")
                continue
            for text, value in zip(shown, expected):
                checked.append(f"{method} {metric} {text}")
                if math.isnan(value) or text != f"{value:.3f}":
                    wrong.append(f"{method} {metric}: README {text}, {csv_path.name} {value:.3f} ({value!r})")
            if k + 1 < len(header) and header[k + 1].startswith("paper (quoted)"):
                per_dataset = f"paper (quoted): {line.get('dataset', '')}"
                column = per_dataset if per_dataset in df.columns else "paper (quoted)"
                if column not in df.columns:
                    wrong.append(f"{method} {metric}: {csv_path.name} has no {column!r} column")
                    continue
                quoted, paper = _numbers(row[k + 1]), float(line[column])
                checked.append(f"{method} {metric} quoted {quoted}")
                if (quoted or not math.isnan(paper)) and (len(quoted) != 1 or float(quoted[0]) != paper):
                    wrong.append(f"{method} {metric} (quoted): README {row[k + 1]!r}, {csv_path.name} {line[column]}")
    return checked, wrong


def check_readme(readme: str, root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    tables = marked_tables(readme)
    assert tables, "README.md has no <!-- checked-table: ... --> marker (see this test's docstring)"
    checked, wrong = [], []
    for path, header, rows in tables:
        c, w = check_table(root / path, header, rows)
        checked += c
        wrong += [f"{path}: {m}" for m in w]
    return checked, wrong


def test_readme_headline_table_matches_the_tracked_csv():
    checked, wrong = check_readme((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert not wrong, "README.md contradicts the tracked tables:\n" + "\n".join(wrong)
    for metric in ("fbeta", "mae"):
        assert any(c.startswith(f"{HEADLINE_METHOD} {metric} ") and "quoted" not in c for c in checked), \
            f"the headline row ({HEADLINE_METHOD}, {metric}) was not checked: {checked}"
    # the numbers the README leads with, read from the CSV rather than typed here
    table = pd.read_csv(REPO_ROOT / "results" / "laptop" / "cuhk" / "tables" / "04_table_i.csv")
    ours = table[table["method"] == HEADLINE_METHOD].set_index("metric")["value"]
    for metric in ("fbeta", "mae"):
        assert f"{HEADLINE_METHOD} {metric} {ours[metric]:.3f}" in checked


SAMPLE = """Intro.

<!-- checked-table: tables/t.csv -->

| method | source | F_beta [95% CI] | paper (quoted) | MAE [95% CI] | paper (quoted) |
| --- | --- | --- | ---: | --- | ---: |
| **MultiANet (ours)** | trained here | **0.914** [0.896, 0.932] | 0.951 | **0.175** [0.159, 0.192] | 0.096 |
| LBP | re-implemented | 0.860 | 0.866 | 0.202 | 0.186 |
| ASVB, SS | quoted only | | 0.731, 0.787 | | 0.636, 0.298 |
"""


@pytest.fixture
def sample_root(tmp_path) -> Path:
    rows = [("MultiANet (ours)", "fbeta", 0.91430, 0.89561, 0.93214, 0.951),
            ("MultiANet (ours)", "mae", 0.17459, 0.15893, 0.19181, 0.096),
            ("LBP", "fbeta", 0.86043, 0.835, 0.884, 0.866), ("LBP", "mae", 0.20162, 0.178, 0.229, 0.186)]
    (tmp_path / "tables").mkdir()
    pd.DataFrame(rows, columns=["method", "metric", "value", "ci_low", "ci_high", "paper (quoted): cuhk"]) \
        .assign(dataset="cuhk").to_csv(tmp_path / "tables" / "t.csv", index=False)
    return tmp_path


def test_the_check_passes_on_agreeing_numbers(sample_root):
    checked, wrong = check_readme(SAMPLE, sample_root)
    assert wrong == [] and len(checked) == 3 + 1 + 3 + 1 + 1 + 1 + 1 + 1


@pytest.mark.parametrize("old, new, complaint", [
    ("**0.914** [0.896", "**0.915** [0.896", "MultiANet (ours) fbeta: README 0.915"),
    ("[0.159, 0.192]", "[0.159, 0.193]", "MultiANet (ours) mae: README 0.193"),
    ("| 0.951 |", "| 0.950 |", "MultiANet (ours) fbeta (quoted)"),
    ("| 0.202 |", "| 0.20 |", "LBP mae: README 0.20"),
])
def test_the_check_fails_on_a_changed_number(sample_root, old, new, complaint):
    assert SAMPLE.count(old) == 1
    _, wrong = check_readme(SAMPLE.replace(old, new), sample_root)
    assert len(wrong) == 1 and complaint in wrong[0], wrong


def test_the_check_cannot_pass_by_finding_nothing(sample_root):
    with pytest.raises(AssertionError, match="no <!-- checked-table"):
        check_readme(SAMPLE.replace("<!-- checked-table: tables/t.csv -->", ""), sample_root)
    with pytest.raises(AssertionError, match="no Markdown table after it"):
        check_readme("<!-- checked-table: tables/t.csv -->\n\nno table here\n", sample_root)
    without_headline = "\n".join(line for line in SAMPLE.splitlines() if "MultiANet" not in line)
    checked, wrong = check_readme(without_headline, sample_root)
    assert wrong == [] and not any(c.startswith(HEADLINE_METHOD) for c in checked)  # what the real test refuses
