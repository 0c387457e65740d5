"""Training: exact resumption after SIGKILL, 2-process DDP == 1 process, learning beats a constant map,
checkpoint errors and CLI errors. Tiny sizes (32-64 px, a dozen synthetic images) keep the file to a couple of
minutes."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mdbd.runs.config import load_config
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.core.paths import REPO_ROOT
from mdbd.runs.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from mdbd.runs.train import KILL_ENV, LOG_COLUMNS, DistInfo, atomic_write, train
from mdbd.core.weights import oxford_cache_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_data_dir")]
OXFORD = oxford_cache_path()  # the real cache, looked up before the tests point MDBD_DATA_DIR elsewhere

# one tiny run: 12 training images of the synthetic benchmark at 32 px, batch 6 -> 2 steps per epoch
TINY = {"image_size": 32, "backbone_weights": "none", "epochs": 2, "batch_size": 6, "val_every": 1,
        "synth.train_images": 12, "synth.test_images": 4, "synth.image_size": 48}
TINY_SET = [f"{k}={v}" for k, v in TINY.items()]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", KILL_ENV)}
    env.update(MDBD_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def _train_cli(run_dir: Path, data_dir: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mdbd", "train", "--profile", "smoke", "--quiet", "--run-dir", str(run_dir),
           "--data-root", str(data_dir / "synth"), "--set", *TINY_SET, *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env or _env(data_dir), capture_output=True, text=True,
                          timeout=300, **kw)


def _state(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)


def _tiny_cfg(data_dir: Path, run_dir: Path, **kw):
    return load_config("smoke", data_root=str(data_dir / "synth"), run_dir=str(run_dir), **{**TINY, **kw})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir) -> Path:
    """An uninterrupted 2-epoch run through the command line, the yardstick of the resume and DDP tests."""
    run_dir = tmp_path_factory.mktemp("reference")
    # with a progress feed, as under `mdbd reproduce` (test_a_training_feeds_its_steps)
    proc = _train_cli(run_dir, data_dir, env=_env(data_dir, MDBD_PROGRESS_FILE=str(_feed_file(run_dir))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def _feed_file(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}-feed.jsonl"


def test_a_training_feeds_its_steps_to_a_watcher(reference_run):
    """Issue 26 item 3: the steps and the time left, for `mdbd reproduce` to show (mdbd.core.progress_feed)."""
    events = [json.loads(line) for line in _feed_file(reference_run).read_text().splitlines()]
    assert {e["run"] for e in events} == {reference_run.name}
    ends = [e for e in events if e["step"] == e["steps"]]
    assert [e["epoch"] for e in ends] == [1, 2] and ends[-1]["finished"] and ends[-1]["done"] == ends[-1]["total"]


# -- resuming -------------------------------------------------------------------------------------------

def test_sigkill_mid_epoch_then_resume_gives_the_same_weights_and_log(reference_run, data_dir, tmp_path):
    run_dir = tmp_path / "killed"
    killed = _train_cli(run_dir, data_dir, env=_env(data_dir, **{KILL_ENV: "2:1"}))  # after step 1 of epoch 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = _state(run_dir)  # the checkpoint of epoch 1 survived intact, with what resuming needs
    assert state["epoch"] == 1 and {"optimizer", "scheduler", "rng"} <= set(state)
    assert len(pd.read_csv(run_dir / "log.csv")) == 1

    resumed = _train_cli(run_dir, data_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed {run_dir} after epoch 1 of 2: epochs 2-2 of multianet trained here" in resumed.stdout
    got, want = _state(run_dir), _state(reference_run)
    assert got["epoch"] == want["epoch"] == 2
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    log_got, log_want = pd.read_csv(run_dir / "log.csv"), pd.read_csv(reference_run / "log.csv")
    assert list(log_got.columns) == list(LOG_COLUMNS)
    np.testing.assert_array_equal(log_got["train_loss"].to_numpy(), log_want["train_loss"].to_numpy())
    np.testing.assert_array_equal(log_got["val_fmax"].to_numpy(), log_want["val_fmax"].to_numpy())


def test_persistent_loader_workers_augment_each_epoch_like_one_process(reference_run, data_dir, tmp_path):
    """Two persistent workers (made once, before epoch 2's set_epoch) give the in-process run's losses and weights;
    checkpoint_every=2 writes no checkpoint before epoch 2, so a kill in epoch 2 leaves none."""
    killed_dir = tmp_path / "killed"
    killed = _train_cli(killed_dir, data_dir, "checkpoint_every=2", env=_env(data_dir, **{KILL_ENV: "2:1"}))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (killed_dir / "last.pt").exists() and len(pd.read_csv(killed_dir / "log.csv")) == 1

    run_dir = tmp_path / "workers"
    proc = _train_cli(run_dir, data_dir, "num_workers=2", "checkpoint_every=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _state(run_dir), _state(reference_run)
    assert got["epoch"] == 2
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    np.testing.assert_array_equal(pd.read_csv(run_dir / "log.csv")["train_loss"].to_numpy(),
                                  pd.read_csv(reference_run / "log.csv")["train_loss"].to_numpy())


def test_checkpoint_records_the_run(reference_run):
    state = _state(reference_run)
    assert state["format"] == CHECKPOINT_FORMAT
    for key in ("model", "sampler", "config", "preset", "backbone_source", "code_version", "device", "schedule",
                "history"):
        assert key in state, key
    # a finished run is reused, never continued: no optimizer moments (they tripled its size on disk)
    assert not {"optimizer", "scheduler", "rng"} & set(state)
    assert state["preset"] == "multianet" and state["config"]["image_size"] == 32
    assert state["code_version"].startswith("0.")
    assert (reference_run / "config.yaml").is_file()
    # poly decay per iteration: 2 steps per epoch, 4 in all; epoch 2 starts at step 2
    sched = state["schedule"]
    assert (sched["name"], sched["total_steps"], sched["steps_per_epoch"]) == ("poly", 4, 2)
    log = pd.read_csv(reference_run / "log.csv")
    assert log["lr"].tolist() == pytest.approx([4e-4, 4e-4 * (1 - 2 / 4) ** 0.9], rel=1e-6)
    assert (log["images_per_s"] > 0).all() and log["val_mae"].between(0, 1).all()


def test_resume_with_another_configuration_is_refused(reference_run, data_dir):
    cfg = _tiny_cfg(data_dir, reference_run, lr=1e-3, epochs=3)
    with pytest.raises(ConfigError, match=r"epochs: run 2, now 3; lr: run 0\.0004, now 0\.001"):
        train(cfg, resume=True, progress=False)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def broken(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


# -- distributed ------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_loss_curve_of_one(reference_run, data_dir, tmp_path):
    """2 ranks (gloo), 3 images each per step == 1 process with batch 6: the same loss curve within rtol 1e-4 (only
    the order of floating-point sums differs) and the same weights within 1% relative norm per tensor (Adam divides
    each gradient element by its own magnitude, so elements whose gradient is ~0 move by +-lr on rounding noise)."""
    run_dir = tmp_path / "ddp"
    port = str(_free_port())
    cmd = [sys.executable, "-m", "mdbd", "train", "--profile", "smoke", "--quiet", "--run-dir", str(run_dir),
           "--data-root", str(data_dir / "synth"), "--set", *TINY_SET]
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(data_dir, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1"))
             for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    got, want = pd.read_csv(run_dir / "log.csv"), pd.read_csv(reference_run / "log.csv")
    np.testing.assert_allclose(got["train_loss"], want["train_loss"], rtol=1e-4)
    assert not np.array_equal(got["train_loss"], np.full(len(got), want["train_loss"][0]))  # it did train
    state, ref = _state(run_dir), _state(reference_run)
    assert state["world_size"] == 2
    for name, tensor in ref["model"].items():
        relative = float((state["model"][name] - tensor).norm() / tensor.norm().clamp_min(1e-12))
        assert relative < 1e-2, (name, relative)


def test_global_batch_must_split_over_the_ranks(monkeypatch, data_dir, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    assert DistInfo.from_env() == DistInfo(0, 4, 0)
    with pytest.raises(ConfigError, match="batch_size 6 .* 4 processes"):
        train(_tiny_cfg(data_dir, tmp_path / "r"), progress=False)


# -- learning ---------------------------------------------------------------------------------------------

def constant_map_fmax(masks: list[np.ndarray], beta2: float = 0.3) -> float:
    """Protocol-1 max F of a constant map: at every threshold it predicts all pixels in focus (recall 1,
    precision = in-focus fraction pi_i) or none (F 0); P and R are averaged over images, so the best it can do is
    (1 + b2) * mean(pi) / (b2 * mean(pi) + 1)."""
    p = float(np.mean([m.mean() for m in masks]))
    return (1 + beta2) * p / (beta2 * p + 1)


def test_full_model_learns_beyond_a_constant_map(data_dir, tmp_path):
    from mdbd.data import TrainDataset, open_dataset

    if not OXFORD.is_file():
        pytest.skip(f"Oxford VGG-16 weights not cached at {OXFORD}: run `mdbd weights fetch --source oxford`")
    records = []
    cfg = load_config("smoke", data_root=str(data_dir / "learn"), run_dir=str(tmp_path / "learn"),
                      backbone_weights=str(OXFORD), image_size=64, epochs=6, val_every=3, freeze_backbone_blocks=5,
                      **{"synth.train_images": 24, "synth.test_images": 6, "synth.image_size": 64})
    result = train(cfg, progress=False, callback=records.append)
    assert [r["epoch"] for r in records] == list(range(1, 7))
    losses = result.log["train_loss"].to_numpy()
    assert losses[-1] < 0.9 * losses[0], losses
    test = TrainDataset(open_dataset("synthetic", data_dir / "learn", "test"), 64, augment=False)
    bound = constant_map_fmax([test[i][1].numpy()[0] for i in range(len(test))])
    assert 0.2 < bound < 0.95
    fmax = result.metrics["val_fmax"]
    assert fmax > bound + 0.05, (fmax, bound)
    assert result.metrics["val_mae"] < 0.45


# -- loading checkpoints ----------------------------------------------------------------------------------

def test_load_checkpoint_round_trip_and_errors(reference_run, tmp_path):
    model, cfg, meta = load_checkpoint(reference_run / "last.pt", expected_preset="multianet")
    assert not model.training and cfg["image_size"] == 32 and meta["epoch"] == 2
    state = _state(reference_run)
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())

    with pytest.raises(CheckpointError, match="holds a 'multianet' model, not the requested preset 'hl'"):
        load_checkpoint(reference_run / "last.pt", expected_preset="hl")
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match=f"checkpoint not found: {missing}"):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {garbage}"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((reference_run / "last.pt").read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an mdbd training checkpoint"):
        load_checkpoint(foreign)


# -- the command line -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["--set", "colour=red"], "unknown configuration field 'colour'"),
    (["--set", "epochs"], "override 'epochs' is not of the form key=value"),
    (["--set", "lr=-1"], "lr must be > 0"),
])
def test_train_cli_rejects_bad_settings(argv, message, capsys, tmp_path):
    from mdbd.cli import main

    assert main(["train", "--run-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert "mdbd train: error:" in err and message in err, err
    assert not (tmp_path / "last.pt").exists()


def test_too_few_images_for_one_batch(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="12 images, fewer than one batch of 16"):
        train(_tiny_cfg(data_dir, tmp_path / "r", batch_size=16), progress=False)


def test_evaluate_checkpoint_scores_the_test_split(reference_run, data_dir):
    from mdbd.runs.scoring import evaluate_checkpoint

    result = evaluate_checkpoint(reference_run / "last.pt", "synthetic", data_dir / "synth", bootstrap=0)
    table = result.table
    assert len(table) >= 1
    for column, value in (("model", "multianet"), ("dataset", "synthetic"), ("split", "test"), ("seed", 0),
                          ("profile", "smoke")):
        assert column in table.columns and (table[column] == value).all(), column
    assert not math.isnan(float(table.select_dtypes("number").iloc[0].dropna().iloc[0]))


def test_val_every_zero_trains_without_validating(data_dir, tmp_path, monkeypatch):
    import mdbd.runs.train

    calls = []
    monkeypatch.setattr(mdbd.runs.train, "validate", lambda *a, **k: calls.append(1) or {})
    result = train(_tiny_cfg(data_dir, tmp_path / "r", epochs=1, val_every=0), progress=False)
    assert calls == [] and result.log["val_fmax"].isna().all() and result.metrics == {}
    assert result.checkpoint.is_file()
