"""Training checkpoints: the file format, reading it safely, and rebuilding the model it holds.

    model, cfg_dict, meta = load_checkpoint("results/runs/.../last.pt", expected_preset="multianet")

Kept apart from training (mdbd.runs.train writes checkpoints) and prediction (mdbd.runs.predict reads them), so that
neither imports the other.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from mdbd.runs.config import LEGACY_CONFIG_DEFAULTS, RunConfig
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.model import PRESETS, build_model
from mdbd.core.provenance import resolve_device
from mdbd.runs.sections import fields_by_section

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = "mdbd-checkpoint/1"


def inference_size(cfg_dict: dict[str, Any]) -> int:
    """The network input side a checkpoint predicts at: its eval_size, else (older runs, or None) its image_size."""
    return int(cfg_dict.get("eval_size") or cfg_dict["image_size"])


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and EOF errors all mean the same thing here
        # torch's own text advises weights_only=False, which is wrong advice for a damaged file: only its kind is kept
        raise CheckpointError(f"cannot read checkpoint {path}: damaged, truncated or not a PyTorch file "
                              f"({type(exc).__name__}); retrain or restore the run") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise CheckpointError(f"{path} is not an mdbd training checkpoint (no {CHECKPOINT_FORMAT!r} marker)")
    if "tensor_digest" in state and tensor_digest(state["model"]) != state["tensor_digest"]:
        raise CheckpointError(f"checkpoint {path} is damaged: its weights do not match the digest written with them "
                              "(changed on disk after it was saved); retrain or restore the run")
    _fill_legacy_config(state, path)
    _check_model_records(state, path)
    return state


def tensor_digest(model_state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes, in key order: written with every checkpoint and
    checked on reading, so that a checkpoint damaged in place (same size, other bytes) is refused, not loaded."""
    digest = hashlib.sha256()
    for name in sorted(model_state):
        tensor = model_state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(model_state[name].shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def checkpoint_finished(state: dict[str, Any]) -> bool:
    """Whether the checkpoint's run trained all its epochs (recorded since the field existed; before, read from
    the epoch count against its configuration's)."""
    if "finished" in state:
        return bool(state["finished"])
    return int(state.get("epoch", 0)) >= int(state.get("config", {}).get("epochs", 0) or 0)


def _fill_legacy_config(state: dict[str, Any], path: Path) -> None:
    """Give a checkpoint written before a model field existed that field's old meaning (in its flat config and in its
    model section), with a warning naming the file, so that it loads (and resumes) as the model it holds."""
    config = state.setdefault("config", {})
    records = [config] + ([state["model_section"]] if isinstance(state.get("model_section"), dict) else [])
    for key, (value, meaning) in LEGACY_CONFIG_DEFAULTS.items():
        lacking = [record for record in records if key not in record]
        for record in lacking:
            record[key] = value
        if lacking:
            warnings.warn(f"{path}: checkpoint written before the {key} option existed (not in its config); "
                          f"loaded as {key}={value!r} ({meaning})", stacklevel=3)


def _check_model_records(state: dict[str, Any], path: Path) -> None:
    """CheckpointError when a checkpoint's two records of its model, its model section and the model fields of its
    flat config (kept for older readers), disagree: written alike, so the file was edited since."""
    section = state.get("model_section")
    if not isinstance(section, dict):
        return
    config = state["config"]
    for key in sorted(set(section) & set(config)):
        if section[key] != config[key]:
            raise CheckpointError(f"checkpoint {path}: its model section and its config disagree on {key} "
                                  f"({section[key]!r} against {config[key]!r}); edited since it was written: "
                                  "retrain or restore the run")


def model_section(state: dict[str, Any]) -> dict[str, Any]:
    """The model's constructor options a checkpoint holds (`build_model(**model_section(state))`, its backbone
    weights named as trained): its `model_section`, written since the configuration has sections, else (older
    checkpoints) the model fields of its flat config; the preset is always the checkpoint's own."""
    section = state.get("model_section")
    if not isinstance(section, dict):
        config = state.get("config", {})
        section = {key: config[key] for key in fields_by_section(RunConfig)["model"] if key in config}
    return {**section, "preset": state.get("preset", section.get("preset"))}


def load_checkpoint(path: str | os.PathLike, expected_preset: str | None = None, device: str | None = "cpu",
                    ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, the run's config dict, meta: epoch, preset, backbone_source, code_version, device,
    schedule, history...). CheckpointError for a missing or corrupt file or a preset other than `expected_preset`."""
    state = read_checkpoint(path)
    preset = state.get("preset")
    if expected_preset is not None and preset != expected_preset:
        raise CheckpointError(f"checkpoint {path} holds a {preset!r} model, not the requested preset "
                              f"{expected_preset!r}")
    if preset not in PRESETS:
        raise CheckpointError(f"checkpoint {path} names preset {preset!r}, which this version of mdbd does not "
                              f"know (presets: {', '.join(PRESETS)})")
    config = state["config"]
    try:  # the weights are the checkpoint's: no backbone file is read
        model = build_model(**{**model_section(state), "backbone_weights": "none"})
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: its configuration does not fit this code version ({exc})") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the {preset!r} model of this code version "
                              f"({str(exc).splitlines()[0]})") from None
    if hasattr(model, "backbone_source"):
        model.backbone_source = state.get("backbone_source", model.backbone_source)
    model.to(resolve_device(device)).eval()
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "scheduler", "rng", "config")}
    meta["finished"] = checkpoint_finished(state)
    return model, dict(config), meta


def recorded_training_precision(meta: dict[str, Any], config: dict[str, Any]) -> str:
    """What a checkpoint's training steps computed in: recorded since cpu_bf16 existed; before, CPU runs were fp32
    and CUDA runs bf16 autocast unless their config turned it off."""
    if meta.get("train_precision"):
        return str(meta["train_precision"])
    on_cuda = str(meta.get("device", "")).lower().startswith(("cuda", "nvidia"))
    return "bf16 autocast" if on_cuda and config.get("bf16", True) else "fp32"
