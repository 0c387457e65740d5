"""scripts/gpu_paper_cuhk.py runs unchanged on CPU at tiny sizes: a carry of a small CUHK-layout folder, the
smoke profile at 32 px, one epoch, MultiANet and HL two at once. That is its test; the GPU run is its purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mdbd.data.carry import make_carry
from mdbd.core.paths import REPO_ROOT

pytestmark = pytest.mark.slow
SCRIPT = REPO_ROOT / "scripts" / "gpu_paper_cuhk.py"
SPLITS = {"train": list(range(1, 13)), "test": [605, 606, 607, 608]}


@pytest.fixture(scope="module")
def carry(tmp_path_factory) -> Path:
    """A carry of a 12 + 4 pair folder in the official CUHK layout (textured images, white = blurred masks)."""
    root = tmp_path_factory.mktemp("cuhk")
    (root / "image").mkdir()
    (root / "gt").mkdir()
    rng = np.random.default_rng(0)
    for number in SPLITS["train"] + SPLITS["test"]:
        image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        mask = np.zeros((60, 80), np.uint8)
        blurred = 40 + number % 30  # more than half blurred, as Shi's masks are (else the copy reads as inverted)
        mask[:, :blurred] = 255
        image[:, :blurred] = image[:, :blurred] // 4 + 96  # "blurred": less contrast
        Image.fromarray(image).save(root / "image" / f"out_of_focus{number:04d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "gt" / f"out_of_focus{number:04d}.png")
    out = tmp_path_factory.mktemp("gpu") / "cuhk-carry"
    make_carry(root, out, splits=SPLITS, max_side=64, progress=False)
    return out


def _run(tmp_path: Path, carry: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out, results = tmp_path / "out", tmp_path / "results"
    env = {**os.environ, "MDBD_RESULTS_DIR": str(results), "MDBD_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, str(SCRIPT), "run", "--profile", "smoke", "--carry", str(carry), "--weights", "none",
           "--device", "cpu", "--presets", "multianet", "hl", "--concurrent", "2", "--threads", "1",
           "--bootstrap", "20", "--set", "image_size=32", "epochs=1", "--out", str(out), *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    return proc, out, results / "smoke" / "cuhk" / "tables"


def test_the_script_trains_scores_and_writes_both_tables_with_provenance_and_timings(tmp_path, carry):
    # one form here (tests/test_concurrency_bench.py runs the others); generous limits: they are for the GPU
    proc, out, tables = _run(tmp_path, carry, "--forms", "sequential", "--forms-steps", "1", "--forms-warmup", "1",
                             "--forms-seconds", "600", "--reserve", "20", "--seconds", "1500")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["provenance.json", "results.tar.gz", "summary.md"]
    status = pd.read_csv(tables / "gpu_runs_status.csv")
    assert status["status"].tolist() == ["done", "done"] and status["scored"].all()
    runs = pd.read_csv(tables / "gpu_runs.csv")
    assert sorted(set(runs["method"])) == ["hl", "multianet"] and set(runs["metric"]) == {"fbeta", "mae"}
    assert (runs["n_images"] == 4).all() and runs["complete"].all()  # the 4 test images, at the GT's size
    for column in ("device", "torch_version", "profile", "seed", "weights", "concurrency", "code_version",
                   "source_digest", "carry_manifest_sha256", "dataset", "split", "protocol"):
        assert column in runs, column
    assert runs["concurrency"].iloc[0] == "up to 2 processes at once, 1 CPU thread(s) each"
    assert "UNVERIFIED" in runs["code_version"].iloc[0]  # no code stamp was prepared for this tree
    every = pd.read_csv(tables / "gpu_all_protocols.csv")
    from mdbd.metrics.protocols import PROTOCOLS

    assert set(every["protocol"]) == set(PROTOCOLS)  # the default (sod), the audit's (sod-blur) and every other
    table1 = pd.read_csv(tables / "gpu_table_i.csv")
    ours = table1[table1["method"] == "MultiANet (ours)"]
    assert len(ours) == 2 and ours["paper (quoted): cuhk"].notna().all()
    assert "HL only (ours, same recipe)" in set(table1["method"])
    table3 = pd.read_csv(tables / "gpu_table_iii.csv")
    assert not table3["complete"].iloc[0] and "incomplete: 2 of 7" in table3["verdict"].iloc[0]
    forms = pd.read_csv(tables / "gpu_concurrency_forms.csv")
    assert forms["form"].tolist() == ["sequential"] and (forms["status"] == "measured").all()
    provenance = json.loads((out / "provenance.json").read_text())
    stages = {s["stage"]: s["status"] for s in provenance["stages"]}
    assert all(stages[name] == "done" for name in ("machine", "verify carry", "measure concurrency forms",
                                                   "prepare caches", "train and score"))
    summary = (out / "summary.md").read_text()
    assert "| train and score |" in summary and "multianet seed 0 | done | 1/1" in summary
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    assert "results/smoke/cuhk/tables/gpu_table_i.csv" in names
    # every run in the default folder of its identity (mdbd.runs.identity), as the notebooks' runs
    run_dir = Path(status.loc[status["run"] == "multianet seed 0", "run_dir"].iloc[0])
    assert run_dir.parent == tmp_path / "results" / "runs" / "smoke" and run_dir.name.startswith("multianet-cuhk-")
    assert {f"results/runs/smoke/{run_dir.name}/{name}" for name in ("log.csv", "job.log")} <= set(names)
    assert "results/smoke/cuhk/gpu-script/timings.csv" in names


def test_past_its_deadline_the_script_still_writes_what_it_has(tmp_path, carry):
    proc, out, tables = _run(tmp_path, carry, "--seconds", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    provenance = json.loads((out / "provenance.json").read_text())
    stages = {s["stage"]: s["status"] for s in provenance["stages"]}
    assert stages["train and score"] == "skipped" and stages["write tables"] == "done"
    assert pd.read_csv(tables / "gpu_runs_status.csv").empty  # no run started: the table says so
    assert "deadline reached before training" in (out / "summary.md").read_text()


def test_a_carry_that_fails_its_checksums_trains_nothing(tmp_path, carry):
    import shutil

    broken = tmp_path / "broken-carry"
    shutil.copytree(carry, broken)
    (broken / "gt" / "out_of_focus0001.png").write_bytes(b"not the mask")
    proc, out, _ = _run(tmp_path, broken, "--forms")
    assert proc.returncode == 0
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["error"] == "the carry did not verify: nothing trained"
    failed = [s for s in provenance["stages"] if s["stage"] == "verify carry"][0]
    assert failed["status"] == "failed" and "out_of_focus0001.png" in failed["note"]
