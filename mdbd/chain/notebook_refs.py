"""Reference outputs for nbval: the notebooks executed once on the smoke profile (CPU), kept under tests/nbval/, so
that `make test` re-runs them and compares every deterministic output (nbval strict, with tests/nbval/sanitize.cfg
for times, paths, versions and the CPU's name; cells tagged `nbval-ignore-output` are run but not compared).

    make nbval-refs                      # regenerate tests/nbval/*.ipynb (the one command; ~5 min on 2 cores)
    python -m mdbd.chain.notebook_refs check   # do the references still run the notebooks' cells? (also a test)

Both `make test` and `make nbval-refs` run the chain in the same fresh, private state (Makefile NBVAL_ENV): no
$MDBD_SHARED_DATA (so the synthetic benchmark has procedural masks on every machine), data and results folders of
their own, wiped first (so every run is trained, never reused), two CPU threads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mdbd.core.paths import NOTEBOOKS_DIR, REPO_ROOT
from mdbd.chain.reproduce import ALL_NOTEBOOKS, run_chain

REFERENCE_DIR = REPO_ROOT / "tests" / "nbval"
SANITIZE_FILE = REFERENCE_DIR / "sanitize.cfg"
#: what the references were executed with (papermill's injected-parameters cell)
REFERENCE_PARAMETERS = {"profile": "smoke", "dataset": "synthetic", "data_root": None}
#: output types nbval never compares (without nbdime): dropped from the references to keep them small
UNCOMPARED_DATA = ("image/png", "image/jpeg", "application/pdf")
NBVAL_TAGS = ("nbval-ignore-output", "nbval-check-output", "nbval-skip", "nbval-raises-exception")


def strip_uncompared(nb):
    """The executed notebook without image data (nbval skips it) and papermill's per-cell timings."""
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            for key in UNCOMPARED_DATA:
                output.get("data", {}).pop(key, None)
    nb.metadata.pop("papermill", None)
    return nb


def _code_cells(nb) -> list[tuple[str, tuple[str, ...]]]:
    """(source, nbval tags) of each code cell except papermill's injected parameters."""
    out = []
    for cell in nb.cells:
        tags = tuple(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code" and "injected-parameters" not in tags:
            out.append((cell.source, tuple(t for t in tags if t in NBVAL_TAGS)))
    return out


def _assignments(source: str) -> dict:
    """`name = literal` lines of a parameters cell as a dict (other lines ignored)."""
    import ast

    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def reference_mismatches(reference_dir: Path = REFERENCE_DIR, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """Why the references no longer stand for the notebooks (empty when they do): a missing reference, a code cell
    or nbval tag that differs from notebooks/, a cell never executed (nbval would skip its comparison), or other
    parameters than REFERENCE_PARAMETERS."""
    import nbformat

    problems = []
    for name in ALL_NOTEBOOKS:
        ref_path = reference_dir / f"{name}.ipynb"
        if not ref_path.is_file():
            problems.append(f"{ref_path} is missing")
            continue
        ref = nbformat.read(ref_path, as_version=4)
        source = nbformat.read(notebooks_dir / f"{name}.ipynb", as_version=4)
        got, want = _code_cells(ref), _code_cells(source)
        if len(got) != len(want):
            problems.append(f"{name}: {len(got)} code cells in the reference, {len(want)} in notebooks/")
        for k, ((ref_src, ref_tags), (src, tags)) in enumerate(zip(got, want)):
            if ref_src != src:
                problems.append(f"{name}: code cell {k} differs from notebooks/{name}.ipynb")
            elif ref_tags != tags:
                problems.append(f"{name}: code cell {k} has nbval tags {ref_tags}, notebooks/ has {tags}")
        unrun = [k for k, c in enumerate(ref.cells) if c.cell_type == "code" and c.get("execution_count") is None]
        if unrun:
            problems.append(f"{name}: cells {unrun} of the reference were never executed")
        injected = [c for c in ref.cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        if not injected or _assignments(injected[0].source) != REFERENCE_PARAMETERS:
            problems.append(f"{name}: the reference was not executed with {REFERENCE_PARAMETERS}")
    return problems


def write_references(reference_dir: Path = REFERENCE_DIR, names: list[str] | None = None) -> list[Path]:
    """Execute every notebook (smoke profile; `names`: only those, e.g. a notebook just added) into `reference_dir`
    and strip what nbval does not compare. Run it through `make nbval-refs`, which sets the private state the
    comparison in `make test` uses."""
    import nbformat

    # every notebook, those run by name only (09) included: nbval checks each one's reference
    result = run_chain(**REFERENCE_PARAMETERS, notebooks=list(names or ALL_NOTEBOOKS), out_dir=reference_dir)
    for path in result.executed:
        nbformat.write(strip_uncompared(nbformat.read(path, as_version=4)), path)
    return result.executed


def main(argv: list[str]) -> int:
    if argv[:1] == ["write"]:
        for path in write_references(names=argv[1:] or None):
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        return 0
    if argv[:1] == ["check"]:
        problems = reference_mismatches()
        print("\n".join(problems) if problems else "the nbval references match notebooks/")
        return 1 if problems else 0
    print("usage: python -m mdbd.chain.notebook_refs write [NOTEBOOK ...] | check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
