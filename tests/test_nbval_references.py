"""The nbval references (tests/nbval/, made by `make nbval-refs`): they run the notebooks' own cells, the sanitize
file blanks only what differs between two correct runs, and nbval fails when a printed result changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mdbd.notebook_refs import REFERENCE_DIR, SANITIZE_FILE, reference_mismatches
from mdbd.paths import REPO_ROOT


def _clean(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZE_FILE.read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_references_run_the_notebooks_own_cells():
    """Stale references (a notebook changed since `make nbval-refs`) would test old code: regenerate them."""
    problems = reference_mismatches()
    assert not problems, "run `make nbval-refs`:\n" + "\n".join(problems)


def test_sanitize_blanks_times_paths_versions_and_the_cpu_but_keeps_results():
    line = ("epoch 1/2  loss 0.6682  lr 4.00e-04  1.0 img/s  23.0 s  | val loss 0.5910  maxF 0.729  MAE 0.364")
    assert _clean(line) == ("epoch 1/2  loss 0.6682  lr 4.00e-04  RATE img/s  TIME s  | val loss 0.5910  maxF 0.729  "
                            "MAE 0.364")
    assert _clean("ablation runs: 100%|##########| 7/7 [02:28<00:00, 21.28s/it]") == \
        "ablation runs: 100%|##########| 7/7 [TIME]"
    assert _clean("02_train | profile smoke | device cpu (AMD EPYC 7B13, 2 threads) | seed 0") == \
        "02_train | profile smoke | device cpu (CPU, 2 threads) | seed 0"
    assert _clean("checkpoint: /home/x/repo/build/nbval-state/results/runs/smoke/hl-synthetic-proceduralmasks-seed0-"
                  "1a2b3c4d/last.pt, trained by mdbd 0.1.0+811afa0-dirty") == \
        "checkpoint: STATE/results/runs/smoke/hl-synthetic-proceduralmasks-seed0-HASH/last.pt, trained by mdbd VERSION"


def test_sanitize_leaves_every_number_of_the_references_tables_alone():
    """Every number in a table cell (<td>) the references compare is unchanged by the sanitize file."""
    number = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")

    def numbers(html: str) -> list[str]:
        return [v for v in re.findall(r"<td>([^<]*)</td>", html) if number.fullmatch(v)]

    checked = 0
    for path in sorted(REFERENCE_DIR.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for c in nb["cells"]:
            if c["cell_type"] != "code" or "nbval-ignore-output" in c["metadata"].get("tags", []):
                continue
            for output in c.get("outputs", []):
                html = "".join(output.get("data", {}).get("text/html", []))
                values = numbers(html)
                assert numbers(_clean(html)) == values, path.name
                checked += len(values)
    assert checked > 200  # the data summary, the metrics, Table I and III, ...


def _checked_result_cell(nb: dict) -> tuple[int, dict]:
    """(code-cell index, data) of the first compared cell whose result is a printed table of numbers."""
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for k, c in enumerate(code):
        if "nbval-ignore-output" in c["metadata"].get("tags", []):
            continue
        for output in c.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/plain", []))
            if output["output_type"] == "execute_result" and "<Figure" not in text and re.search(r"\d{2,}", text):
                return k, output["data"]
    raise AssertionError("no compared cell with a printed table of numbers")


@pytest.mark.slow
def test_nbval_fails_on_the_one_cell_whose_printed_result_changed(tmp_path):
    """05_curves' reference with one number of a printed table changed, run by nbval in a fresh private state laid
    out as `make test`'s (the chain's curves CSV copied in): exactly that cell fails, every other one (the start
    line with its paths and CPU, the figures) passes."""
    chain = os.environ.get("MDBD_CHAIN_RESULTS")
    if not chain:
        pytest.skip("needs the smoke chain's tables: `make test` runs the nbval references first and sets "
                    "MDBD_CHAIN_RESULTS")
    nb = json.loads((REFERENCE_DIR / "05_curves.ipynb").read_text())
    target, data = _checked_result_cell(nb)
    text = "".join(data["text/plain"])
    number = re.search(r"\d{2,}", text)
    data["text/plain"] = text[:number.start()] + str(int(number.group(0)) + 1) + text[number.end():]
    data.pop("text/html", None)
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "05_curves.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    state = tmp_path / "build" / "nbval-state"  # the sanitize file knows this folder's name
    tables = state / "results" / "smoke" / Path(chain).name / "tables"
    tables.mkdir(parents=True)
    shutil.copy(Path(chain) / "tables" / "04_comparison_all_protocols_curves.csv", tables)
    (state / "data").mkdir()
    env = {**os.environ, "MDBD_SHARED_DATA": "", "MDBD_DATA_DIR": str(state / "data"),
           "MDBD_RESULTS_DIR": str(state / "results"), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
           "PYTHONPATH": str(REPO_ROOT)}
    report = tmp_path / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(refs), "--nbval", "--nbval-current-env",
                           "--nbval-sanitize-with", str(SANITIZE_FILE), "-p", "no:cacheprovider", "-q",
                           f"--junitxml={report}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    cases = list(ET.parse(report).getroot().iter("testcase"))
    failed = sorted(c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None)
    assert len(cases) == sum(c["cell_type"] == "code" for c in nb["cells"])
    assert failed == [f"Cell {target}"], proc.stdout[-4000:]
    assert "Cell outputs differ" in proc.stdout
