"""Where a number came from: attached to every checkpoint, table and figure under results/."""

from __future__ import annotations

import functools
import platform
import subprocess
from typing import Any

from mdbd import __version__
from mdbd.paths import REPO_ROOT


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`mdbd <version>+<git short hash>[-dirty]`, or the bare version outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
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


def provenance(**fields: Any) -> dict[str, Any]:
    """Standard provenance columns plus any caller fields (dataset, split, protocol, weights, profile, seed...)."""
    import torch

    base = {"code_version": code_version(), "torch_version": torch.__version__}
    base.update(fields)
    return base
