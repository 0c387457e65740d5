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

from mdbd.chain.notebook_refs import REFERENCE_DIR, SANITIZE_FILE, reference_mismatches
from mdbd.core.paths import REPO_ROOT


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
    shutil.copy(REFERENCE_DIR / "conftest.py", refs / "conftest.py")  # nbval with the tolerance, as in `make test`
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


# -- printed decimals compared to a stated tolerance (mdbd.chain.nbval_tolerance): the references hold on any CPU --

def _compared_strings() -> list[str]:
    """Every string nbval compares in the references (streams and text data of cells not tagged nbval-ignore-output),
    sanitised as nbval sanitises them."""
    out = []
    for path in sorted(REFERENCE_DIR.glob("*.ipynb")):
        for c in json.loads(path.read_text())["cells"]:
            if c["cell_type"] != "code" or "nbval-ignore-output" in c["metadata"].get("tags", []):
                continue
            for output in c.get("outputs", []):
                values = [output.get("text", "")] + list(output.get("data", {}).values())
                out += [_clean("".join(v) if isinstance(v, list) else v) for v in values if v and
                        isinstance(v, (str, list))]
    return out


def _significant(token: str) -> list[int]:
    """Positions of the significant digits of a printed decimal (its mantissa)."""
    mantissa = re.split(r"[eE]", token)[0]
    first = next(i for i, ch in enumerate(mantissa) if ch in "123456789") if mantissa.strip("0.") else len(mantissa)
    return [i for i, ch in enumerate(mantissa) if i >= first and ch.isdigit()]


def _bump(token: str, position: int, units: int) -> str:
    """`token` with the digit at `position` moved by `units`, down when that stays a digit, else up."""
    digit = int(token[position])
    new = digit - units if digit - units >= 0 else digit + units
    return token[:position] + str(new) + token[position + 1:]


def test_every_printed_decimal_of_the_references_tolerates_its_last_digit_but_not_its_third():
    """For each decimal number nbval compares (each one alone, in its whole output): one unit more or less in its
    last printed digit, as another CPU's kernels give, still agrees; a third significant digit changed by one (two
    when that is also the last digit printed: a three-digit value may flip its last digit on any change) fails."""
    from mdbd.chain.nbval_tolerance import FLOAT, texts_agree

    tolerated = failed = 0
    for text in _compared_strings():
        for match in FLOAT.finditer(text):
            token, (start, end) = match.group(0), match.span()
            digits = _significant(token)
            if not digits:
                continue  # 0.0: nothing to perturb
            near = text[:start] + _bump(token, digits[-1], 1) + text[end:]
            assert texts_agree(text, near), (token, near[start - 40:end + 40])
            tolerated += 1
            if len(digits) >= 3:
                units = 1 if len(digits) > 3 else 2
                far = text[:start] + _bump(token, digits[2], units) + text[end:]
                assert not texts_agree(text, far), (token, far[start - 40:end + 40])
                failed += 1
    assert tolerated > 800 and failed > 700  # training logs, metrics, Table I and III, ... (908 decimals today)


def test_the_tolerance_leaves_the_text_integers_and_signs_exact():
    from mdbd.chain.nbval_tolerance import floats_agree, texts_agree

    line = "epoch 2/3  loss 0.6682  lr 4.00e-04  | val loss 5.4083e-01  maxF 0.729  MAE 0.364  (24 pairs)"
    assert texts_agree(line, line.replace("0.6682", "0.6683").replace("5.4083e-01", "5.4091e-01")
                       .replace("0.729", "0.730"))
    assert not texts_agree(line, line.replace("0.6682", "0.6692"))  # the loss's third significant digit
    assert not texts_agree(line, line.replace("(24 pairs)", "(25 pairs)"))  # integers: exact
    assert not texts_agree(line, line.replace("epoch 2/3", "epoch 3/3"))
    assert not texts_agree(line, line.replace("maxF", "max F"))
    assert not texts_agree("delta 0.0012", "delta -0.0012")  # a sign is text
    assert not texts_agree("0.5408 0.5", "0.5408")  # the number of numbers
    assert floats_agree("0.54083", "0.54091") and not floats_agree("0.5408", "0.5418")
    assert floats_agree("0.0", "0.0") and not floats_agree("0.0", "0.5")


def test_nbval_with_the_references_conftest_tolerates_last_digits_and_fails_a_changed_result(tmp_path):
    """nbval itself, with tests/nbval/conftest.py as `make test` loads it, on a two-cell notebook whose reference
    outputs are 'another CPU's' (last digits differ: passes) and 'a changed result' (third significant digit: fails)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('loss 0.54091  maxF 0.730  (24 pairs)')"),
                nbformat.v4.new_code_cell("print('loss 0.54091  maxF 0.730  (24 pairs)')")]
    for k, (cell, printed) in enumerate(zip(nb.cells, ["loss 0.54083  maxF 0.729  (24 pairs)\n",
                                                       "loss 0.54183  maxF 0.729  (24 pairs)\n"])):
        cell.execution_count = k + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    refs = tmp_path / "refs"
    refs.mkdir()
    nbformat.write(nb, refs / "tiny.ipynb")
    shutil.copy(REFERENCE_DIR / "conftest.py", refs / "conftest.py")
    report = tmp_path / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(refs), "--nbval", "--nbval-current-env",
                           "--nbval-sanitize-with", str(SANITIZE_FILE), "-p", "no:cacheprovider", "-q",
                           f"--junitxml={report}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    cases = list(ET.parse(report).getroot().iter("testcase"))
    failed = sorted(c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None)
    assert len(cases) == 2 and failed == ["Cell 1"], proc.stdout[-4000:]
    assert "0.54183" in proc.stdout  # nbval's own report of the difference
