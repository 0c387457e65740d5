"""Training progress for a watcher in another process.

`mdbd reproduce` runs the notebooks in Jupyter kernels, and the stages train in those kernels or in worker processes
of their own (mdbd.runs.parallel), so a training's tqdm bar lands in a notebook cell, not on the terminal. When
$MDBD_PROGRESS_FILE names a file (`mdbd reproduce` sets it for its kernels, which pass it on to their workers), every
training also appends a JSON line to it every few seconds and at the end of each epoch:

    {"run": "multianet-cuhk-seed0-1a2b3c4d", "epoch": 2, "epochs": 6, "step": 40, "steps": 101,
     "done": 141, "total": 606, "elapsed": 95.2, "left": 312.0, "finished": false}

`done`/`total` count optimiser steps over the whole run, `elapsed` the seconds this process has trained it, `left`
the estimate of the seconds still to go at this process's rate (None before the first step). Lines are short and
appended with one write each, so concurrent trainings can share the file. `FeedReader` follows it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_FILE_ENV = "MDBD_PROGRESS_FILE"
#: seconds between two lines of one training within an epoch (epoch ends are always written)
FEED_INTERVAL_S = 5.0


class ProgressFeed:
    """The writing side: one per training (rank 0). Does nothing when $MDBD_PROGRESS_FILE is unset."""

    def __init__(self, run: str, epochs: int, steps_per_epoch: int, start_epoch: int = 0,
                 path: str | os.PathLike | None = None, interval: float = FEED_INTERVAL_S) -> None:
        target = path if path is not None else os.environ.get(PROGRESS_FILE_ENV)
        self.path = Path(target) if target else None
        self.run, self.epochs, self.steps = run, int(epochs), int(steps_per_epoch)
        self.first_done = int(start_epoch) * self.steps  # steps trained before this process (a resumed run)
        self.interval = interval
        self._started = time.perf_counter()
        self._last = -float("inf")

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def step(self, epoch: int, step: int) -> None:
        """After optimiser step `step` (1-based) of 0-based `epoch`; written at most every `interval` seconds,
        and always at an epoch's last step."""
        if self.path is None:
            return
        now = time.perf_counter()
        if step < self.steps and now - self._last < self.interval:
            return
        self._last = now
        done, total = epoch * self.steps + step, self.epochs * self.steps
        elapsed = now - self._started
        here = done - self.first_done
        left = elapsed / here * (total - done) if here > 0 else None
        self._write({"run": self.run, "epoch": epoch + 1, "epochs": self.epochs, "step": step, "steps": self.steps,
                     "done": done, "total": total, "elapsed": round(elapsed, 1),
                     "left": None if left is None else round(left, 1), "finished": done >= total})

    def _write(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            self.path = None  # progress is a courtesy: a watcher that went away never stops a training


@dataclass
class FeedReader:
    """The watching side: `poll()` returns the latest event of each run seen so far, reading only new lines."""

    path: Path
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    _offset: int = 0
    _partial: bytes = b""

    def poll(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.latest
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the rest
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "run" in event:
                self.latest[str(event["run"])] = event
        return self.latest

    def active(self) -> list[dict[str, Any]]:
        """The runs still training, in the order they were first seen."""
        return [event for event in self.poll().values() if not event.get("finished")]


def describe_event(event: dict[str, Any]) -> str:
    """One short line: 'multianet-cuhk-seed0-1a2b3c4d: epoch 2/6, step 40/101 (23 %), ~5.2 min left'."""
    share = 100 * event["done"] / max(event["total"], 1)
    left = event.get("left")
    eta = f", ~{left / 60:.1f} min left" if left is not None else ""
    return (f"{event['run']}: epoch {event['epoch']}/{event['epochs']}, step {event['step']}/{event['steps']} "
            f"({share:.0f} %){eta}")
