"""One run folder: the names of its files, reading them, and its state against the run asked for.

    run = RunDir.of(cfg)                       # cfg.resolved_run_dir(), or RunDir(path)
    run.checkpoint, run.log, run.config, run.identity, run.scores, run.previous, run.job_log
    run.state(identity)                        # "finished" | "resumable" | "stale" | "empty"
    run.read_log()                             # log.csv as a DataFrame (None when there is none)
    run.move_aside()                           # a fresh start: the run's files into previous/
    run.score_file("test", key)                # where mdbd.runs.scoring keeps one score of this run's checkpoint

What a run folder holds (docs/training.md): last.pt (mdbd.runs.checkpoint, CHECKPOINT_NAME), log.csv (one row per
epoch, LOG_COLUMNS), config.yaml (the RunConfig), identity.json (mdbd.runs.identity), scores/ (kept scores,
mdbd.runs.scoring), previous/ (an earlier run of another identity, moved aside by a fresh start), the writer lock
(mdbd.core.writer_lock), and, for a run started by mdbd.runs.parallel, job.json, job.log, job_result.json and
evaluation.csv.

The states, against the identity asked for (mdbd.runs.identity, with its data fingerprint):
- empty: no checkpoint (a run killed in its first epoch may have left its other files: a fresh start moves them);
- stale: a checkpoint of another identity: neither reused nor resumed;
- finished: a checkpoint of all its epochs: reused as it is;
- resumable: a checkpoint short of its epochs (interrupted): continued.
Without an identity no checkpoint is stale. A damaged or unreadable checkpoint is a CheckpointError (naming it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from mdbd.runs.checkpoint import CHECKPOINT_NAME, checkpoint_finished, read_checkpoint
from mdbd.runs.identity import differences
from mdbd.core.io import atomic_write, atomic_write_text
from mdbd.core.writer_lock import writer_lock

if TYPE_CHECKING:
    from mdbd.runs.config import RunConfig

LOG_NAME = "log.csv"
CONFIG_NAME = "config.yaml"
IDENTITY_NAME = "identity.json"
#: the files of a run; a fresh start moves them into PREVIOUS_DIR first
RUN_FILES = (CHECKPOINT_NAME, LOG_NAME, CONFIG_NAME, IDENTITY_NAME)
PREVIOUS_DIR = "previous"
#: scores kept beside a run's checkpoint (mdbd.runs.scoring.evaluate_run), one file per checkpoint content and settings
SCORES_DIR = "scores"
#: a run started by mdbd.runs.parallel: its description, its output, what the worker recorded, its scores
JOB_FILE = "job.json"
JOB_LOG = "job.log"
JOB_RESULT = "job_result.json"
EVALUATION_FILE = "evaluation.csv"
#: log.csv's columns: one row per epoch
LOG_COLUMNS = ("epoch", "train_loss", "lr", "images_per_s", "seconds", "val_loss", "val_fmax", "val_mae")
STATES = ("finished", "resumable", "stale", "empty")


@dataclass(frozen=True)
class RunState:
    """A run folder's state against an identity: `name` (one of STATES), the checkpoint read (None when empty) and,
    for a stale one, the fields in which it differs (mdbd.runs.identity.differences)."""

    name: str
    checkpoint: dict[str, Any] | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        """Epochs the checkpoint holds (0 when there is none)."""
        return int(self.checkpoint["epoch"]) if self.checkpoint is not None else 0


class RunDir:
    """The folder of one training run: its files by name, reading them, its state, moving it aside."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, cfg: RunConfig) -> RunDir:
        """The folder of `cfg`'s run: its run_dir, or the default folder named after its identity."""
        return cls(cfg.resolved_run_dir())

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # -- names ------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def log(self) -> Path:
        return self.path / LOG_NAME

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def identity(self) -> Path:
        return self.path / IDENTITY_NAME

    @property
    def scores(self) -> Path:
        return self.path / SCORES_DIR

    @property
    def previous(self) -> Path:
        return self.path / PREVIOUS_DIR

    @property
    def job_file(self) -> Path:
        return self.path / JOB_FILE

    @property
    def job_log(self) -> Path:
        return self.path / JOB_LOG

    @property
    def job_result(self) -> Path:
        return self.path / JOB_RESULT

    @property
    def evaluation(self) -> Path:
        return self.path / EVALUATION_FILE

    def score_file(self, split: str, key: str) -> Path:
        """Where one score of this run's checkpoint on `split` is kept; `key` names everything it depends on
        (mdbd.runs.scoring builds it: the checkpoint's bytes, the data, the settings, the scoring code)."""
        return self.scores / f"{split}-{key}.pkl"

    def score_files(self, split: str | None = None) -> list[Path]:
        """The scores kept here (of `split`, or all), sorted."""
        return sorted(self.scores.glob(f"{split or '*'}-*.pkl")) if self.scores.is_dir() else []

    def records(self) -> list[Path]:
        """The run's small files that exist, without the checkpoint or the scores: what to bring back from another
        machine (log, job log, configuration, job description, evaluation)."""
        return [p for p in (self.log, self.job_log, self.config, self.job_file, self.evaluation) if p.is_file()]

    # -- reading ----------------------------------------------------------------------------------------------

    def read_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's contents (mdbd.runs.checkpoint.read_checkpoint: CheckpointError for a missing or damaged
        file)."""
        return read_checkpoint(self.checkpoint)

    def read_log(self) -> pd.DataFrame | None:
        """log.csv (one row per epoch), None when there is none."""
        return pd.read_csv(self.log) if self.log.is_file() else None

    def read_evaluation(self) -> pd.DataFrame | None:
        """evaluation.csv (a parallel job's scores), None when there is none."""
        return pd.read_csv(self.evaluation) if self.evaluation.is_file() else None

    def read_job_result(self) -> dict[str, Any]:
        """What a parallel worker recorded (job_result.json); {} when missing or unreadable."""
        try:
            return dict(json.loads(self.job_result.read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    # -- state ------------------------------------------------------------------------------------------------

    def inspect(self, identity: dict[str, Any] | None = None) -> RunState:
        """The folder's state against `identity` (None: not compared, so never stale), with the checkpoint read.
        CheckpointError for a checkpoint that cannot be read."""
        if not self.checkpoint.is_file():
            return RunState("empty")
        state = self.read_checkpoint()
        if identity is not None:
            diff = differences(state.get("identity"), identity)
            if diff:
                return RunState("stale", state, diff)
        return RunState("finished" if checkpoint_finished(state) else "resumable", state)

    def state(self, identity: dict[str, Any] | None = None) -> str:
        """finished | resumable | stale | empty (inspect)."""
        return self.inspect(identity).name

    def looks_finished(self, epochs: int) -> bool:
        """A cheap guess, without reading the checkpoint: a checkpoint and a log of `epochs` epochs are there (for
        ordering runs only; inspect decides)."""
        try:
            return self.checkpoint.is_file() and len(pd.read_csv(self.log)) >= epochs
        except (OSError, ValueError, pd.errors.EmptyDataError):
            return False

    # -- writing ----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self, what: str = "a run") -> Iterator[Path]:
        """The folder's one-writer lock (mdbd.core.writer_lock)."""
        with writer_lock(self.path, what) as lock:
            yield lock

    def write_log(self, history: Sequence[dict[str, Any]]) -> pd.DataFrame:
        """log.csv from the epochs' rows (LOG_COLUMNS, 8 significant digits), written atomically; the frame."""
        frame = pd.DataFrame(list(history), columns=list(LOG_COLUMNS))
        atomic_write(self.log, lambda fh: frame.to_csv(fh, index=False, float_format="%.8g"), mode="w")
        return frame

    def write_config(self, config: dict[str, Any]) -> None:
        """config.yaml: the run's RunConfig as a dict (RunConfig.to_dict)."""
        atomic_write(self.config, lambda fh: yaml.safe_dump(config, fh, sort_keys=False), mode="w")

    def write_identity(self, identity: dict[str, Any]) -> None:
        atomic_write_text(self.identity, json.dumps(identity, indent=1, default=str) + "\n")

    def remove_stale_temporaries(self) -> None:
        """Delete the hidden temporary files of writes that never finished (a kill during a checkpoint write); only
        with the folder's writer lock held, when no other process can be writing them."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def move_aside(self) -> Path | None:
        """Move the run's files (RUN_FILES) into previous/ (replacing an older one there) BEFORE a new run writes
        anything: a crash of the new run followed by a resume can then never continue the old one. previous/, or
        None when there was nothing to move."""
        present = [self.path / name for name in RUN_FILES if (self.path / name).exists()]
        if not present:
            return None
        if self.previous.exists():
            shutil.rmtree(self.previous)
        self.previous.mkdir()
        for path in present:
            os.replace(path, self.previous / path.name)
        return self.previous
