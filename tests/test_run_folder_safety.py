"""Nothing lost, nothing silently wrong in a run folder: one writer at a time, a finished run never moved aside by
its own configuration, stale temporaries removed on resume, damaged and unfinished checkpoints named."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mdbd.runs.train
from mdbd.runs.checkpoint import read_checkpoint
from mdbd.runs.config import load_config
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.core.paths import REPO_ROOT
from mdbd.chain.stages.common import evaluate_runs
from mdbd.runs.train import KILL_ENV, train
from mdbd.core.writer_lock import LOCK_NAME, writer_lock

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_data_dir")]

TINY = {"image_size": 32, "backbone_weights": "none", "epochs": 2, "batch_size": 6, "val_every": 0,
        "synth.train_images": 12, "synth.test_images": 4, "synth.image_size": 48}


def _cfg(data_dir: Path, run_dir: Path, **kw):
    return load_config("smoke", device="cpu", data_root=str(data_dir / "synth"), run_dir=str(run_dir),
                       **{**TINY, **kw})


def _interrupted(data_dir: Path, run_dir: Path, monkeypatch):
    """A run stopped during epoch 2 of 2: its checkpoint holds epoch 1."""
    def crash(epoch, step):
        if (epoch, step) == (2, 1):
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(mdbd.runs.train, "_maybe_kill", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(data_dir, run_dir), progress=False)
    monkeypatch.undo()


def test_a_second_training_of_a_running_folder_is_refused_and_the_first_finishes_intact(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    overrides = [f"{k}={v}" for k, v in {**TINY, "epochs": 6}.items()]
    cmd = [sys.executable, "-m", "mdbd", "train", "--profile", "smoke", "--quiet", "--run-dir", str(run_dir),
           "--data-root", str(data_dir / "synth"), "--set", *overrides]
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env.update(MDBD_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    first = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / LOCK_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (run_dir / LOCK_NAME).exists(), "the first training never took the folder's lock"
        second = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        out, err = first.communicate(timeout=300)
    assert second.returncode == 2
    assert "being written by process" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert first.returncode == 0, err[-2000:]
    state = read_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 6 and state["finished"] is True
    assert not (run_dir / "previous").exists() and not (run_dir / LOCK_NAME).exists()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run_dir / LOCK_NAME).write_text(dead.stdout.strip())
    result = train(_cfg(data_dir, run_dir, epochs=1), progress=False)
    assert result.status == "trained" and not (run_dir / LOCK_NAME).exists()
    with writer_lock(run_dir):  # re-entrant within a process: train() inside a held lock still runs
        assert train(_cfg(data_dir, run_dir, epochs=1), resume=True, progress=False).status == "reused"


def test_a_fresh_start_never_moves_a_finished_run_of_the_same_configuration(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    train(_cfg(data_dir, run_dir, epochs=1), progress=False)
    before = (run_dir / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="finished run of this very configuration"):
        train(_cfg(data_dir, run_dir, epochs=1), progress=False)
    assert (run_dir / "last.pt").read_bytes() == before and not (run_dir / "previous").exists()
    # another configuration in that folder is still a fresh start, the old files moved to previous/ (as before)
    assert train(_cfg(data_dir, run_dir, epochs=2), progress=False).status == "trained"
    assert (run_dir / "previous" / "last.pt").read_bytes() == before


def test_resume_removes_the_temporary_file_of_a_write_that_was_killed(tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    _interrupted(data_dir, run_dir, monkeypatch)
    stale = run_dir / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    result = train(_cfg(data_dir, run_dir), resume=True, progress=False)
    assert result.status == "resumed" and not stale.exists()


def test_a_checkpoint_damaged_in_place_is_refused_naming_the_file(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    train(_cfg(data_dir, run_dir, epochs=1), progress=False)
    path = run_dir / "last.pt"
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # 4 KiB zeroed in the middle of the weights, the size unchanged
        fh.seek(size // 2)
        fh.write(b"\0" * 4096)
    assert path.stat().st_size == size
    with pytest.raises(CheckpointError, match=rf"{path}.*(damaged|corrupt)"):
        read_checkpoint(path)


def test_an_unfinished_run_is_refused_by_the_tables_and_named_by_predict(tmp_path, data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    _interrupted(data_dir, run_dir, monkeypatch)
    assert read_checkpoint(run_dir / "last.pt")["finished"] is False
    with pytest.raises(CheckpointError, match="unfinished run"):
        evaluate_runs([(run_dir / "last.pt", _cfg(data_dir, run_dir))], bootstrap=0)
    images = sorted((data_dir / "synth" / "test" / "images").iterdir())[:1]
    done = subprocess.run([sys.executable, "-m", "mdbd", "predict", "--checkpoint", str(run_dir / "last.pt"),
                           "--out", str(tmp_path / "maps"), str(images[0])], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MDBD_DATA_DIR": str(data_dir)})
    assert done.returncode == 0 and "UNFINISHED run (epoch 1 of 2)" in done.stderr


def test_an_unreadable_checkpoint_gets_one_line_without_torchs_weights_only_advice(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(bad)
    message = str(info.value)
    assert str(bad) in message and "weights_only" not in message and "\n" not in message


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_last_checkpoint(tmp_path, data_dir,
                                                                                        monkeypatch):
    import errno

    import torch

    run_dir = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last\.pt after epoch 2: No space left"):
        train(_cfg(data_dir, run_dir), progress=False)
    monkeypatch.undo()
    assert read_checkpoint(run_dir / "last.pt")["epoch"] == 1 and not list(run_dir.glob(".*.tmp"))
