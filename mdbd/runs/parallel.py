"""Several training runs at once: each run (train, then optionally score on the test split) in its own process.

    jobs = [Job(cfg) for cfg in ablation_configs(load_config("paper", dataset="cuhk"))]
    results = run_jobs(jobs, concurrent=7)      # 7 processes at once; concurrent=1: one after another, in-process
    raise_for_failures(results)                 # RunsFailed naming each failed run, its folder and its log

Why processes: a run that crashes (an error, CUDA running out of memory, a kill) takes nothing else down, every
run keeps train()'s own code path (seeding, checkpoints, resuming), and nothing in mdbd.runs.train has to know. On a
GPU the processes share it; whether that, CUDA streams or several models in one process pays more is what
mdbd.bench.concurrency measures there.

Same results as one at a time: each process seeds and trains exactly as train() does in-process. On CPU a run is
bit-identical for a seed AND a thread count, so pass the same `threads` to compare (tests/test_parallel.py does,
with 2 runs). On CUDA, cuDNN's autotuner may pick other kernels under contention (as it may between any two runs):
equal to within float rounding, not bit for bit.

Before the first process starts, the parent prepares what every run would otherwise race to build: the synthetic
benchmark and the uint8 caches of each dataset split (mdbd.data.cache).

A run's output goes to <run_dir>/job.log and, prefixed with the run's label, to the parent's stdout. A worker is
`python -m mdbd.runs.parallel <run_dir>/job.json`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch

from mdbd.runs.config import RunConfig
from mdbd.data import ensure_synthetic, open_dataset
from mdbd.data.cache import cache_side, load_or_build
from mdbd.core.errors import ConfigError, DataError, MdbdError
from mdbd.core.io import atomic_write_text
from mdbd.core.paths import REPO_ROOT, display_path
# a job's files are a run folder's (mdbd.runs.rundir), where their names live; re-exported here, their old home
from mdbd.runs.rundir import EVALUATION_FILE, JOB_FILE, JOB_LOG, JOB_RESULT, RunDir  # noqa: F401
from mdbd.runs.scoring import EXTENDED_METRICS, evaluate_runs
from mdbd.core.threads import torch_threads
from mdbd.runs.train import train


class RunsFailed(MdbdError):
    """One or more runs failed; the message names each one's configuration, run folder and log."""


@dataclass
class Job:
    """One run: train `config` (resuming an interrupted run of it), then score it on the test split when
    `evaluate` (every protocol, `bootstrap` resamples; mdbd.runs.scoring.evaluate_runs; `extended`: with the structure
    metrics). `train=False` scores the run folder's checkpoint as it is (a run stopped at a deadline)."""

    config: RunConfig
    evaluate: bool = True
    bootstrap: int = 1000
    label: str = ""
    train: bool = True
    extended: bool = EXTENDED_METRICS

    def __post_init__(self) -> None:
        if not self.label:
            self.label = f"{self.config.preset} seed {self.config.seed}"

    @property
    def run_dir(self) -> Path:
        return self.config.resolved_run_dir()

    @property
    def run(self) -> RunDir:
        """The run folder (its files and state: mdbd.runs.rundir)."""
        return RunDir(self.run_dir)


@dataclass
class JobResult:
    job: Job
    status: str  # done | failed | stopped (at the deadline) | not started
    form: str  # how it ran: "in-process, one run at a time" or "N processes at once, T threads each"
    seconds: float = 0.0  # wall time of the run (training and scoring)
    train_seconds: float = float("nan")  # the training epochs alone (sum of log.csv's seconds)
    log: pd.DataFrame | None = None  # log.csv
    evaluation: pd.DataFrame | None = None  # EvaluationResult.table
    error: str = ""
    output: Path | None = None  # job.log (processes) or None (in-process)
    returncode: int | None = None
    trained: str = ""  # what train() did (TrainResult.status): trained | resumed | reused; "" when unknown

    @property
    def label(self) -> str:
        return self.job.label

    @property
    def run_dir(self) -> Path:
        return self.job.run_dir

    @property
    def checkpoint(self) -> Path:
        return self.job.run.checkpoint


def threads_per_run(device: str, concurrent: int, cores: int | None = None) -> int | None:
    """CPU threads of each of `concurrent` runs started together on `device` (None: one run, torch's default). On a
    CPU the runs share its threads (torch's count: a user's OMP_NUM_THREADS limit holds); on a GPU machine they share
    half of its `cores`, the other half left to their data-loader workers (loader_workers)."""
    if concurrent <= 1:
        return None
    if device.split(":")[0] == "cpu":
        return max(1, (cores or torch.get_num_threads()) // concurrent)
    return max(1, (cores or os.cpu_count() or 1) // (2 * concurrent))


def loader_workers(num_workers: int, concurrent: int, device: str, cores: int | None = None) -> int:
    """Data-loader workers of each of `concurrent` runs: on a CPU the configuration's `num_workers` (the runs' threads
    already share the cores); on a GPU machine at least one each, from the cores the runs leave, but none where
    /dev/shm holds under 1 GiB (workers hand batches over through it, and a container's default 64 MiB fails)."""
    if device.split(":")[0] == "cpu":
        return num_workers
    shm = shm_megabytes()
    if shm is not None and shm < 1024:
        return 0
    cores = cores or os.cpu_count() or 1
    return max(1, min(num_workers or 1, (cores - concurrent) // concurrent))


def shm_megabytes() -> int | None:
    """Free MiB of /dev/shm (None: no such file system)."""
    try:
        stat = os.statvfs("/dev/shm")
        return stat.f_bavail * stat.f_frsize // 2**20
    except OSError:
        return None


def describe_form(concurrent: int, threads: int | None, in_process: bool | None = None) -> str:
    threads_text = f", {threads} CPU thread(s) each" if threads else ""
    if in_process if in_process is not None else concurrent == 1:
        return f"in-process, one run at a time{threads_text}"
    if concurrent == 1:
        return f"one process at a time{threads_text}"
    return f"up to {concurrent} processes at once{threads_text}"


# -- one run (the same function in-process and in a worker) ------------------------------------------------

def _epoch_printer(cfg: RunConfig, stream: IO[str]) -> Callable[[dict], None]:
    def show(record: dict) -> None:
        line = (f"epoch {record['epoch']}/{cfg.epochs} loss {record['train_loss']:.4f} "
                f"{record['images_per_s']:.1f} img/s {record['seconds']:.1f} s")
        if record["val_fmax"] == record["val_fmax"]:  # not NaN
            line += f" | val maxF {record['val_fmax']:.3f} MAE {record['val_mae']:.3f}"
        print(line, file=stream, flush=True)
    return show


def run_job(job: Job, stream: IO[str] | None = None) -> tuple[Any, Any]:
    """(TrainResult or None when not training, EvaluationResult or None) of one job, in this process; per-epoch
    lines to `stream`."""
    result = None
    if job.train:
        callback = _epoch_printer(job.config, stream) if stream is not None else None
        result = train(job.config, resume=True, progress=False, callback=callback)
    evaluation = (evaluate_runs([(job.run.checkpoint, job.config)], bootstrap=job.bootstrap, extended=job.extended)[0]
                  if job.evaluate else None)
    return result, evaluation


def _worker(job_file: Path) -> int:
    """A worker process: run the job described in `job_file`, write its results beside it."""
    import torch

    spec = json.loads(job_file.read_text())
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    job = Job(RunConfig(**spec["config"]), evaluate=spec["evaluate"], bootstrap=spec["bootstrap"],
              label=spec["label"], train=spec.get("train", True), extended=spec.get("extended", EXTENDED_METRICS))
    print(f"start: {job.label} in {job.run_dir} ({torch.get_num_threads()} threads, pid {os.getpid()})", flush=True)
    started = time.perf_counter()
    result, evaluation = run_job(job, stream=sys.stdout)
    if evaluation is not None:
        atomic_write_text(job.run.evaluation, evaluation.table.to_csv(index=False))
    atomic_write_text(job.run.job_result, json.dumps(
        {"label": job.label, "seconds": time.perf_counter() - started, "trained": job.train,
         "train_call_seconds": result.seconds if result else None,
         "epochs": int(len(result.log)) if result else None, "metrics": result.metrics if result else None,
         "train_status": result.status if result else ""},
        indent=1))
    print(f"done: {job.label} in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


# -- preparing shared inputs --------------------------------------------------------------------------------

def prepare_shared_inputs(configs: Sequence[RunConfig]) -> None:
    """Build once, here, what concurrent runs would each build at the same time: the synthetic benchmark and the
    uint8 cache of every split a run reads (train, and val or else test)."""
    seen = set()
    for cfg in configs:
        key = (cfg.dataset, str(cfg.resolved_data_root()), cfg.image_size, cfg.polarity, repr(cfg.synth))
        if key in seen:
            continue
        seen.add(key)
        root = ensure_synthetic(cfg, progress=False) if cfg.dataset == "synthetic" else cfg.resolved_data_root()
        for split in ("train", "val", "test"):
            try:
                pairs = open_dataset(cfg.dataset, root, split, polarity=cfg.mask_polarity())
            except (DataError, ValueError, KeyError):
                if split == "train":
                    raise
                continue
            load_or_build(pairs, cache_side(cfg.image_size))
            if split == "val":
                break  # train() validates on val when there is one, else on test


# -- running many ---------------------------------------------------------------------------------------------

@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    started: float
    reader: threading.Thread | None = None
    tail: list[str] = field(default_factory=list)
    form_note: str = ""  # how this run differs from the call's form


def _child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # a worker is one whole run, never a torchrun rank
        env.pop(var, None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _start(job: Job, threads: int | None, show: Callable[[str], None] | None) -> _Running:
    run = job.run
    run.path.mkdir(parents=True, exist_ok=True)
    for stale in (run.job_result, run.evaluation):  # from an earlier call: never read as this one's
        stale.unlink(missing_ok=True)
    job_file = run.job_file
    atomic_write_text(job_file, json.dumps({"label": job.label, "config": job.config.to_dict(),
                                            "evaluate": job.evaluate, "bootstrap": job.bootstrap,
                                            "extended": job.extended, "train": job.train, "threads": threads},
                                           indent=1))
    # a session of its own: stopping a run stops its loader workers too (os.killpg)
    proc = subprocess.Popen([sys.executable, "-m", "mdbd.runs.parallel", str(job_file)], cwd=REPO_ROOT,
                            env=_child_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True)
    running = _Running(job, proc, time.perf_counter())

    def pump() -> None:
        with open(run.job_log, "w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                running.tail = (running.tail + [line.rstrip()])[-20:]
                if show is not None:
                    show(f"[{job.label}] {line.rstrip()}")

    running.reader = threading.Thread(target=pump, daemon=True)
    running.reader.start()
    return running


def _stop(running: _Running, grace: float = 10.0) -> None:
    try:
        os.killpg(running.proc.pid, signal.SIGTERM)
        running.proc.wait(timeout=grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(running.proc.pid, signal.SIGKILL)
        running.proc.wait()


def _read_run_outputs(job: Job) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    return job.run.read_log(), job.run.read_evaluation()


def _finished(running: _Running, form: str, status: str | None = None) -> JobResult:
    running.reader.join(timeout=5)
    code = running.proc.returncode
    log, evaluation = _read_run_outputs(running.job)
    if status is None:
        status = "done" if code == 0 else "failed"
    last = next((line for line in reversed(running.tail) if line.strip()), "")
    error = "" if status == "done" else (f"exit status {code}: {last}" if status == "failed"
                                         else "stopped at the deadline")
    train_seconds = float(log["seconds"].sum()) if log is not None and len(log) else float("nan")
    return JobResult(running.job, status, form + running.form_note, time.perf_counter() - running.started,
                     train_seconds, log,
                     evaluation if status == "done" else None, error, running.job.run.job_log, code,
                     _train_status(running.job) if status == "done" else "")


def _train_status(job: Job) -> str:
    """trained | resumed | reused, as the worker recorded it (JOB_RESULT)."""
    return str(job.run.read_job_result().get("train_status", ""))


def _run_in_process(jobs: Sequence[Job], threads: int | None, progress: bool) -> list[JobResult]:
    from tqdm.auto import tqdm

    form = describe_form(1, threads)
    results = []
    with torch_threads(threads):
        for job in tqdm(jobs, desc="runs", disable=not progress):
            started = time.perf_counter()
            trained, evaluation = run_job(job)
            log, _ = _read_run_outputs(job)  # the file, as for a worker (rounded to 8 digits)
            results.append(JobResult(job, "done", form, time.perf_counter() - started,
                                     float(log["seconds"].sum()) if log is not None else float("nan"), log,
                                     evaluation.table if evaluation is not None else None,
                                     trained=trained.status if trained is not None else ""))
    return results


def run_jobs(jobs: Sequence[Job], concurrent: int = 1, threads: int | None = None, progress: bool = True,
             deadline: float | None = None, in_process: bool | None = None, poll_seconds: float = 0.2
             ) -> list[JobResult]:
    """Run every job, at most `concurrent` at once; one JobResult per job, in the jobs' order.

    In this process, one after another (`in_process`; the default for `concurrent=1`): an error propagates, as
    from train(). Otherwise worker processes: a failing run is reported in its JobResult (status "failed", its last
    output line) and the others go on. `threads`: CPU threads per run (default: this machine's cores shared out;
    in-process: unchanged). `deadline` (time.monotonic(); worker processes only): runs still going then are stopped
    (SIGTERM; their last checkpoint stays valid, status "stopped"), runs not yet started are left ("not started")."""
    if in_process is None:
        in_process = concurrent == 1
    if in_process and deadline is not None:
        raise ConfigError("a deadline needs worker processes (in_process=False)")
    if concurrent < 1:
        raise ConfigError(f"concurrent must be >= 1, got {concurrent}")
    folders = [job.run_dir for job in jobs]
    if len(set(folders)) != len(folders):
        raise ConfigError("two runs share a run folder; give each its own run_dir: "
                          + ", ".join(sorted({str(f) for f in folders if folders.count(f) > 1})))
    if in_process:
        return _run_in_process(jobs, threads, progress)
    return _run_in_workers(jobs, concurrent, threads, progress, deadline, poll_seconds)


def _run_in_workers(jobs: Sequence[Job], concurrent: int, threads: int | None, progress: bool,
                    deadline: float | None, poll_seconds: float) -> list[JobResult]:
    """run_jobs with worker processes: start them up to `concurrent` at once, poll them, stop them at `deadline`."""
    threads = threads or max(1, (os.cpu_count() or 1) // min(concurrent, len(jobs) or 1))
    form = describe_form(concurrent, threads, in_process=False)
    prepare_shared_inputs([job.config for job in jobs])
    lock = threading.Lock()

    def show(line: str) -> None:
        with lock:
            print(line, flush=True)

    pending = list(enumerate(jobs))
    running: dict[int, _Running] = {}
    results: dict[int, JobResult] = {}
    try:
        while pending or running:
            if deadline is not None and time.monotonic() >= deadline:
                for index, run in list(running.items()):
                    _stop(run)
                    results[index] = _finished(run, form, "stopped")
                    del running[index]
                for index, job in pending:
                    results[index] = JobResult(job, "not started", form, error="not started before the deadline")
                pending = []
                break
            while pending and len(running) < concurrent:
                index, job = pending.pop(0)
                # every run keeps the call's thread count, also one left training alone at the end: with more
                # threads its frozen VGG taps, when it computes them instead of reading another run's cache (which
                # depends on timing), would differ in the last digits, and so would its numbers (issue 25 item 13)
                running[index] = _start(job, threads, show if progress else None)
            for index, run in list(running.items()):
                if run.proc.poll() is not None:
                    results[index] = _finished(run, form)
                    del running[index]
                    if progress and results[index].status != "done":
                        show(f"[{run.job.label}] FAILED ({results[index].error}); log: {results[index].output}")
            time.sleep(poll_seconds)
    finally:
        for run in running.values():  # an interrupt (Ctrl-C) or an error here: leave no run behind
            _stop(run, grace=2.0)
    return [results[i] for i in range(len(jobs))]


class Background:
    """`jobs` run by run_jobs in worker processes (all at once, `threads` each), polled from a thread, while the
    caller goes on, e.g. training another run in-process (02: the HL reference beside the notebook's own run).
    `wait()` returns their JobResults, raising RunsFailed for any that did not finish."""

    def __init__(self, jobs: Sequence[Job], threads: int | None = 1) -> None:
        self.jobs = list(jobs)
        self._results: list[JobResult] | None = None
        self._error: BaseException | None = None
        # shared inputs (synthetic set, uint8 caches) built here, before the caller's own run reads them too
        prepare_shared_inputs([job.config for job in self.jobs])
        self._thread = threading.Thread(target=self._run, args=(threads,), daemon=True)
        self._thread.start()

    def _run(self, threads: int | None) -> None:
        try:
            self._results = run_jobs(self.jobs, concurrent=len(self.jobs), threads=threads, progress=False,
                                     in_process=False)
        except BaseException as exc:  # re-raised in the caller's thread by wait()
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> list[JobResult]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._results is not None
        raise_for_failures(self._results)
        return self._results


def raise_for_failures(results: Sequence[JobResult]) -> None:
    """RunsFailed naming every run that did not finish: its label, run folder, log and last output line."""
    bad = [r for r in results if r.status != "done"]
    if bad:
        details = "; ".join(f"{r.label} ({r.status}; run folder {display_path(r.run_dir)}"
                            + (f", log {display_path(r.output)}" if r.output else "") + f"): {r.error}"
                            for r in bad)
        raise RunsFailed(f"{len(bad)} of {len(results)} runs did not finish: {details}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m mdbd.runs.parallel RUN_DIR/job.json (started by mdbd.runs.parallel.run_jobs)",
              file=sys.stderr)
        return 2
    try:
        return _worker(Path(args[0]))
    except MdbdError as exc:
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
