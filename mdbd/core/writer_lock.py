"""One writer per folder: a lock file holding the writer's process id, taken over only when that process is dead.

    with writer_lock(run_dir, what="training"):      # ConfigError naming the holder while another process writes
        ...

Used by training (a run folder has one writer: a second training of the same folder is refused instead of moving
the first one's files aside and writing over them) and by the frozen-feature cache (one writer per cached epoch).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mdbd.core.errors import ConfigError

LOCK_NAME = ".writer.lock"


def process_running(pid_text: str) -> bool:
    """Whether the process `pid_text` names still runs (anything unreadable counts as running: not ours to judge)."""
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OverflowError):
        pass
    return True


def claim(lock: Path) -> bool:
    """Become the one process holding `lock` (True), unless a running process, this one included, already does
    (False). The lock of a process that died is taken over."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = holder_of(lock)
            if holder and process_running(holder):
                return False
            lock.unlink(missing_ok=True)  # its writer died (or had not written its pid yet: then both write)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def holder_of(lock: Path) -> str:
    try:
        return lock.read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike, what: str = "a run") -> Iterator[Path]:
    """Hold `folder`'s writer lock for the block (re-entrant within one process); ConfigError when a running process
    holds it."""
    lock = Path(folder) / LOCK_NAME
    mine_before = holder_of(lock) == str(os.getpid())
    if not mine_before and not claim(lock):
        raise ConfigError(f"{folder} is being written by process {holder_of(lock)} ({what}); a folder has one writer "
                          "at a time: wait for it to finish, or choose another folder (run_dir)")
    try:
        yield lock
    finally:
        if not mine_before and holder_of(lock) == str(os.getpid()):
            lock.unlink(missing_ok=True)
