"""Where a number came from: attached to every checkpoint, table and figure under results/."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from typing import Any

from mdbd import __version__
from mdbd.core.errors import ConfigError
from mdbd.core.paths import REPO_ROOT


#: tracked folders whose edits do not make the code "dirty": the chain itself rewrites the tracked reference set,
#: so counting them would stamp every table of a clean checkout's run "-dirty" from its second notebook on
NOT_CODE = ("results",)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`mdbd <version>+<git short hash>[-dirty]` (dirty: a tracked file outside NOT_CODE differs from the commit),
    or the bare version outside a git checkout."""
    return _code_version(REPO_ROOT)


def _code_version(root: str | os.PathLike) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        excluded = [f":(exclude){folder}" for folder in NOT_CODE]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def device_name(device: Any = None) -> str:
    """A readable device name: the GPU's model, or the CPU's with its thread count."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def resolve_device(device: str | None) -> str:
    """`None` means cuda when available, else cpu (the notebooks' `device = None` parameter)."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def usable_device(device: str | None) -> str:
    """resolve_device, refused (ConfigError naming it) when the device is not a torch device or is not present here:
    for commands about to run on it (resolve_device alone only names it, e.g. in a run's identity)."""
    import torch

    resolved = resolve_device(device)
    try:
        dev = torch.device(resolved)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {device!r} is not a torch device; use cpu or cuda (cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine (no GPU, or a CPU-only torch "
                          f"{torch.__version__}); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    return resolved


def provenance(**fields: Any) -> dict[str, Any]:
    """Standard provenance columns plus any caller fields (dataset, split, protocol, weights, profile, seed...)."""
    import torch

    base = {"code_version": code_version(), "torch_version": torch.__version__}
    base.update(fields)
    return base
