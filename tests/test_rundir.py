"""One run folder (mdbd.runs.rundir.RunDir): its files by name, its state (finished, resumable, stale, empty) on real
smoke runs, moving it aside to previous/, the score-file rule, and train, the runners of many runs and the stages
reading the same state. Tiny runs: 32 px, random backbone, 12 synthetic images, batch 6 (2 steps an epoch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import mdbd.runs.checkpoint
import mdbd.runs.train
from mdbd.runs.config import load_config
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.runs.parallel import Job, run_jobs
from mdbd.runs.rundir import PREVIOUS_DIR, RUN_FILES, SCORES_DIR, RunDir
from mdbd.runs.scoring import _score_file, evaluate_run
from mdbd.chain.stages.ablation import launch_order
from mdbd.runs.train import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_data_dir")]

TINY = {"image_size": 32, "backbone_weights": "none", "epochs": 1, "batch_size": 6, "val_every": 0,
        "synth.train_images": 12, "synth.test_images": 4, "synth.image_size": 48}


def _cfg(data_dir: Path, run_dir: Path, **kw):
    return load_config("smoke", device="cpu", data_root=str(data_dir / "synth"), run_dir=str(run_dir),
                       **{**TINY, **kw})


def _identity(run: RunDir) -> dict:
    """The identity a run wrote (identity.json): the one train() asks for, with its data fingerprint."""
    return json.loads(run.identity.read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir) -> RunDir:
    """A finished one-epoch smoke run; tests work on copies of it (`_copy`)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDBD_DATA_DIR", str(data_dir))
        result = train(_cfg(data_dir, run_dir), progress=False)
    assert result.status == "trained"
    return RunDir(run_dir)


def _copy(run: RunDir, to: Path) -> RunDir:
    shutil.copytree(run.path, to)
    return RunDir(to)


def _interrupted(data_dir: Path, run_dir: Path, monkeypatch) -> RunDir:
    """A two-epoch run stopped in its second epoch (as a kill would): its checkpoint holds epoch 1."""
    def crash(epoch, step):
        if (epoch, step) == (2, 1):
            raise RuntimeError("simulated kill")

    monkeypatch.setattr(mdbd.runs.train, "_maybe_kill", crash)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_cfg(data_dir, run_dir, epochs=2), progress=False)
    monkeypatch.undo()
    monkeypatch.setenv("MDBD_DATA_DIR", str(data_dir))  # undo() took private_data_dir's setting too
    return RunDir(run_dir)


def test_the_names_of_a_run_folders_files(tmp_path):
    run = RunDir(tmp_path / "run")
    assert mdbd.runs.checkpoint.CHECKPOINT_NAME == "last.pt" == run.checkpoint.name  # importable from its old home
    assert [run.log.name, run.config.name, run.identity.name] == ["log.csv", "config.yaml", "identity.json"]
    assert RUN_FILES == ("last.pt", "log.csv", "config.yaml", "identity.json")
    assert (run.previous, run.scores) == (tmp_path / "run" / PREVIOUS_DIR, tmp_path / "run" / SCORES_DIR)
    assert [run.job_file.name, run.job_log.name, run.job_result.name, run.evaluation.name] == [
        "job.json", "job.log", "job_result.json", "evaluation.csv"]
    # the score-file rule: scores/<split>-<key>.pkl
    assert run.score_file("test", "0123abcd") == tmp_path / "run" / "scores" / "test-0123abcd.pkl"
    cfg = load_config("smoke", device="cpu")
    assert RunDir.of(cfg).path == cfg.resolved_run_dir() and RunDir.of(cfg) == RunDir(cfg.resolved_run_dir())
    assert mdbd.runs.train.PREVIOUS_DIR == PREVIOUS_DIR and mdbd.runs.train.RUN_FILES == RUN_FILES  # old homes


def test_a_missing_or_checkpointless_folder_is_empty_and_a_damaged_checkpoint_is_named(tmp_path, finished):
    assert RunDir(tmp_path / "nothing").state() == "empty"
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(finished.log, partial / "log.csv")  # a run killed before its first checkpoint
    assert RunDir(partial).state(_identity(finished)) == "empty"
    assert RunDir(partial).read_log() is not None and RunDir(tmp_path / "nothing").read_log() is None
    damaged = _copy(finished, tmp_path / "damaged")
    damaged.checkpoint.write_bytes(damaged.checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(damaged.checkpoint)):
        damaged.state()


def test_a_finished_run_is_finished_and_reused_by_train_and_by_the_runners(tmp_path, data_dir, finished):
    identity = _identity(finished)
    assert finished.state() == finished.state(identity) == "finished"
    assert finished.inspect(identity).epoch == 1 and finished.looks_finished(1)
    log = finished.read_log()
    assert list(log["epoch"]) == [1]

    run = _copy(finished, tmp_path / "copy")
    before = run.checkpoint.read_bytes()
    cfg = _cfg(data_dir, run.path)
    assert train(cfg, resume=True, progress=False).status == "reused"
    in_process = run_jobs([Job(cfg, evaluate=False)], concurrent=1, progress=False)[0]
    worker = run_jobs([Job(cfg, evaluate=False)], concurrent=1, in_process=False, threads=1, progress=False)[0]
    assert (in_process.trained, worker.trained) == ("reused", "reused"), worker.error
    assert run.checkpoint.read_bytes() == before and not run.previous.exists()  # nothing retrained or moved
    pd.testing.assert_frame_equal(worker.log, log)
    assert worker.output == run.job_log and run.read_job_result()["train_status"] == "reused"
    # the ablation's launch order reads the same folder: the finished run first (the same preset otherwise)
    assert launch_order([_cfg(data_dir, tmp_path / "not-yet"), cfg]) == [1, 0]


def test_an_interrupted_run_is_resumable_and_train_and_the_runners_continue_it(tmp_path, data_dir, monkeypatch,
                                                                                finished):
    run = _interrupted(data_dir, tmp_path / "run", monkeypatch)
    found = run.inspect(_identity(run))
    assert found.name == "resumable" and found.epoch == 1 and not run.looks_finished(2)
    assert len(run.read_log()) == 1
    result = run_jobs([Job(_cfg(data_dir, run.path, epochs=2), evaluate=False)], concurrent=1, progress=False)[0]
    assert result.trained == "resumed" and len(result.log) == 2
    assert run.state(_identity(run)) == "finished"


def test_a_run_of_another_identity_is_stale_refused_by_resume_and_moved_aside_intact(tmp_path, data_dir, finished):
    run = _copy(finished, tmp_path / "run")
    old = {name: (run.path / name).read_bytes() for name in RUN_FILES}
    old_identity = _identity(run)
    two_epochs = _cfg(data_dir, run.path, epochs=2)
    with pytest.raises(ConfigError, match="holds another run than the one asked for"):
        train(two_epochs, resume=True, progress=False)
    assert run.checkpoint.read_bytes() == old["last.pt"]  # refused: nothing touched

    # train afresh: the old files go to previous/ first, intact, and the new run of 2 epochs is there
    assert train(two_epochs, progress=False).status == "trained"
    new_identity = _identity(run)
    found = RunDir(run.path).inspect(old_identity)
    assert found.name == "stale" and any(line.startswith("epochs: run 2, now 1") for line in found.differences)
    assert run.state(new_identity) == "finished"
    previous = RunDir(run.previous)
    assert {name: (previous.path / name).read_bytes() for name in RUN_FILES} == old
    assert previous.state(old_identity) == "finished" and previous.state(new_identity) == "stale"


def test_move_aside_moves_only_the_run_files_and_replaces_an_older_previous(tmp_path, finished):
    run = _copy(finished, tmp_path / "run")
    (run.path / "notes.txt").write_text("mine")
    first = {name: (run.path / name).read_bytes() for name in RUN_FILES}
    assert run.move_aside() == run.previous
    assert run.state() == "empty" and (run.path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run.previous.iterdir()) == sorted(RUN_FILES)
    assert {name: (run.previous / name).read_bytes() for name in RUN_FILES} == first
    assert run.move_aside() is None and run.previous.is_dir()  # nothing left to move: previous/ kept
    run.log.write_text("epoch\n1\n")
    run.move_aside()
    assert sorted(p.name for p in run.previous.iterdir()) == ["log.csv"]  # the older previous/ replaced


def test_scores_are_kept_where_the_score_file_rule_says(tmp_path, data_dir, finished):
    run = _copy(finished, tmp_path / "run")
    cfg = _cfg(data_dir, run.path)
    assert run.score_files() == []
    evaluate_run(run.checkpoint, cfg, bootstrap=0)
    (kept,) = run.score_files("test")
    assert kept == _score_file(run.checkpoint, cfg, "test", 0)
    assert kept.parent == run.scores and kept.name.startswith("test-") and kept.suffix == ".pkl"
    assert run.score_files("val") == []
