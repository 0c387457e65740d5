"""Several runs at once (mdbd.runs.parallel): the same weights as one at a time, every run's output visible, a failing
run named with its folder and log, a deadline that stops runs cleanly. Tiny runs: 32 px, random backbone, one
epoch of two steps on 12 synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mdbd.cli import main
from mdbd.runs.config import load_config
from mdbd.core.errors import ConfigError
import mdbd.runs.parallel as parallel
from mdbd.runs.parallel import (
    Job, RunsFailed, loader_workers, prepare_shared_inputs, raise_for_failures, run_jobs, threads_per_run)

pytestmark = pytest.mark.slow

TINY = {"image_size": 32, "backbone_weights": "none", "epochs": 1, "batch_size": 6, "val_every": 1,
        "synth.train_images": 12, "synth.test_images": 4, "synth.image_size": 48}


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A private data folder (synthetic set and cache), the same for this process and its workers."""
    folder = tmp_path / "data"
    monkeypatch.setenv("MDBD_DATA_DIR", str(folder))
    return folder


def _jobs(tmp_path: Path, data_dir: Path, name: str, presets=("hl", "hl_ll"), **overrides) -> list[Job]:
    settings = {**TINY, **overrides}
    return [Job(load_config("smoke", preset=preset, data_root=str(data_dir / "synth"),
                            run_dir=str(tmp_path / name / preset), **settings), bootstrap=20)
            for preset in presets]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


def test_two_runs_at_once_give_the_same_weights_and_scores_as_one_after_another(tmp_path, data_dir, capfd):
    sequential = run_jobs(_jobs(tmp_path, data_dir, "one-by-one"), concurrent=1, threads=1, progress=False)
    together = run_jobs(_jobs(tmp_path, data_dir, "together"), concurrent=2, threads=1, progress=True)
    shown = capfd.readouterr().out
    for a, b in zip(sequential, together):
        assert (a.status, b.status) == ("done", "done")
        assert a.form.startswith("in-process") and b.form.startswith("up to 2 processes")
        wa, wb = _weights(a.run_dir), _weights(b.run_dir)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{a.label}: weights differ"  # bit for bit
        assert a.log["train_loss"].tolist() == b.log["train_loss"].tolist()
        np.testing.assert_array_equal(a.evaluation["value"].to_numpy(), b.evaluation["value"].to_numpy())
        # every run's progress reaches the parent, prefixed with its label, and its own log
        assert f"[{b.label}] epoch 1/1 loss" in shown and f"[{b.label}] done: {b.label}" in shown
        assert "epoch 1/1" in b.output.read_text()


def test_a_failing_run_is_named_with_its_configuration_folder_and_log_and_the_others_go_on(tmp_path, data_dir):
    jobs = _jobs(tmp_path, data_dir, "bad", presets=("no_such_preset", "hl"))
    jobs[1].evaluate = False
    results = run_jobs(jobs, concurrent=2, threads=1, progress=False)
    bad, good = results
    assert bad.status == "failed" and bad.returncode == 2 and "unknown preset 'no_such_preset'" in bad.error
    assert "unknown preset" in bad.output.read_text()
    assert good.status == "done" and len(good.log) == 1 and good.checkpoint.is_file()
    with pytest.raises(RunsFailed) as info:
        raise_for_failures(results)
    message = str(info.value)
    assert "1 of 2 runs did not finish: no_such_preset seed 0 (failed; run folder" in message
    assert str(tmp_path / "bad" / "no_such_preset") in message and "job.log" in message


def test_a_deadline_stops_running_runs_and_leaves_the_rest_unstarted(tmp_path, data_dir):
    import time

    jobs = _jobs(tmp_path, data_dir, "deadline", presets=("hl", "hl_ll", "multianet"), epochs=50)
    prepare_shared_inputs([job.config for job in jobs])  # the data first: the deadline is for the runs
    started = time.monotonic()
    results = run_jobs(jobs, concurrent=2, threads=1, progress=False, deadline=started + 8)
    assert time.monotonic() - started < 30
    assert [r.status for r in results] == ["stopped", "stopped", "not started"]
    assert all(r.returncode is not None and r.returncode != 0 for r in results[:2])


def test_bad_arguments_are_refused_before_any_run_starts(tmp_path, data_dir):
    jobs = _jobs(tmp_path, data_dir, "args")
    with pytest.raises(ConfigError, match="concurrent must be >= 1"):
        run_jobs(jobs, concurrent=0)
    same_folder = [jobs[0], Job(jobs[1].config.replace(run_dir=jobs[0].config.run_dir))]
    with pytest.raises(ConfigError, match="share a run folder"):
        run_jobs(same_folder, concurrent=2)
    assert not (tmp_path / "args").exists()
    assert main(["ablation", "--profile", "smoke", "--concurrent", "0", "--quiet"]) == 2


def test_references_train_in_the_background_beside_an_in_process_run_with_the_weights_of_one_at_a_time(
        tmp_path, data_dir):
    from mdbd.runs.parallel import Background
    from mdbd.chain.stages.training import train_or_resume

    alone = run_jobs(_jobs(tmp_path, data_dir, "alone", presets=("hl",)), concurrent=1, threads=1, progress=False)[0]
    main_cfg = _jobs(tmp_path, data_dir, "beside", presets=("hl_ll",))[0].config
    background = Background(_jobs(tmp_path, data_dir, "beside", presets=("hl",)), threads=1)
    result = train_or_resume(main_cfg, progress=False, threads=1)  # meanwhile, in this process
    assert result.status == "trained" and torch.get_num_threads() >= 1
    (reference,) = background.wait()
    assert background.done() and reference.status == "done" and reference.trained == "trained"
    wa, wb = _weights(alone.run_dir), _weights(reference.run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same run as trained alone, bit for bit
    np.testing.assert_array_equal(alone.evaluation["value"].to_numpy(), reference.evaluation["value"].to_numpy())


def test_a_failing_background_run_is_raised_by_wait(tmp_path, data_dir, monkeypatch):
    from mdbd.runs.parallel import Background
    from mdbd.runs.train import KILL_ENV

    (job,) = _jobs(tmp_path, data_dir, "broken", presets=("hl",))
    monkeypatch.setenv(KILL_ENV, "1:1")  # the worker dies after its first step (SIGKILL)
    with pytest.raises(RunsFailed, match="1 of 1 runs did not finish: hl seed 0"):
        Background([job], threads=1).wait()


def test_every_run_keeps_the_thread_count_it_started_with(tmp_path, data_dir, capfd):
    """Also the last of more runs than run at once, which trains alone at the end: its numbers must not depend on
    when the others finish (issue 25 item 13; it used to get every thread)."""
    results = run_jobs(_jobs(tmp_path, data_dir, "three", presets=("hl", "hl_ll", "hl_ll_hca"), val_every=0),
                       concurrent=2, threads=1, progress=True)
    shown = capfd.readouterr().out
    assert [r.status for r in results] == ["done"] * 3
    assert "[hl_ll_hca seed 0] start: hl_ll_hca seed 0" in shown and "(1 threads," in shown
    assert "(2 threads," not in shown and not any("started last" in r.form for r in results)


def test_ablation_starts_finished_runs_then_the_longer_presets(tmp_path, data_dir):
    from mdbd.chain.stages.ablation import ablation_configs, launch_order

    cfg = load_config("smoke", data_root=str(data_dir / "synth"), **TINY)
    configs = [c.replace(run_dir=str(tmp_path / c.preset)) for c in ablation_configs(cfg)]
    finished = tmp_path / "hl_ll"
    finished.mkdir()
    (finished / "last.pt").write_bytes(b"")
    (finished / "log.csv").write_text("epoch,train_loss\n1,0.5\n")  # TINY trains one epoch
    order = [configs[i].preset for i in launch_order(configs)]
    assert order[0] == "hl_ll"  # found, not trained: out of the way first
    assert order[1] == "multianet" and order[-1] == "hl"  # five modules first, one last
    assert sorted(order) == sorted(c.preset for c in configs)


def test_concurrent_runs_share_the_cpu_by_one_rule_for_the_chain_and_the_gpu_script(monkeypatch):
    """mdbd.runs.parallel's thread and loader-worker arithmetic (the chain's stages and scripts/gpu_paper_cuhk.py)."""
    assert threads_per_run("cpu", 1) is None  # one run: torch's default
    assert threads_per_run("cpu", 2, cores=2) == 1 and threads_per_run("cpu", 3, cores=16) == 5
    assert threads_per_run("cpu", 4, cores=2) == 1  # never below one
    assert threads_per_run("cuda:0", 4, cores=16) == 2  # half the cores, the rest to the loaders
    assert loader_workers(0, 4, "cpu") == 0 and loader_workers(3, 2, "cpu") == 3  # the configuration's on a CPU
    monkeypatch.setattr(parallel, "shm_megabytes", lambda: 64 * 1024)
    assert loader_workers(0, 4, "cuda", cores=16) == 1 and loader_workers(8, 4, "cuda", cores=16) == 3
    monkeypatch.setattr(parallel, "shm_megabytes", lambda: 64)  # a container's default /dev/shm: no workers
    assert loader_workers(8, 4, "cuda", cores=16) == 0
