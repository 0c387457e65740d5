"""Statistics of the attention modules on real inputs: is channel attention one-hot, does gradient reach it, does
the spatial map saturate?

    stats = attention_statistics(model, images, masks, ids=ids, size=320)   # tidy: one row per image x module x stat
    attention_table(stats)                                                   # statistic x module, one column per image

Channel attention (HCA, LCA), per image, from A (C x C, rows sum to 1):
- row_max_mean: mean over rows of max_i a_ji (1/C uniform, 1 one-hot);
- row_entropy_mean: mean row entropy in nats (log C uniform, 0 one-hot), next to uniform_entropy = log C;
- distinct_argmax: how many different channels the C rows pick as their maximum;
- one_hot_fraction: fraction of rows whose maximum exceeds ONE_HOT_THRESHOLD;
- grad_attention_norm, grad_energy_norm: Frobenius norms of dL/dA and of dL/d(softmax input) for the BCE loss of one
  training step on that image (with masks only). dL/dA = alpha * dL/dY X^T is non-zero whenever alpha is; what a
  saturated softmax kills is the second one, the gradient that passes through the softmax to the energies and on to
  the features (for a one-hot row the softmax Jacobian diag(a) - a a^T vanishes). softmax_gradient_ratio is the
  second over the first: how much of dL/dA the softmax passes on, whatever alpha and the loss's scale (0 one-hot;
  both norms are 0, the ratio NaN, at alpha = 0).
- alpha, temperature (cosine scale only), channels (C), positions (N = H*W).
Spatial attention (SA), per image, from Z in [0, 1]: mean, std, quantiles Z_QUANTILES, the fractions of pixels
below SATURATION_LOW and above SATURATION_HIGH, and (with masks) the mean of Z over in-focus and over blurred pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mdbd.core.errors import ConfigError, DataError
from mdbd.model.attention import ChannelAttention, SpatialAttention, check_attention_scale

ONE_HOT_THRESHOLD = 0.99  # a row of A whose maximum exceeds this counts as one-hot
SATURATION_LOW, SATURATION_HIGH = 0.05, 0.95  # Z below / above: the spatial map is saturated there
Z_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MODULE_LABELS = {"hca": "HCA", "lca": "LCA", "sa": "SA"}  # MultiANet attribute -> the paper's name
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, target) -> loss


def channel_attention_stats(attention: torch.Tensor, one_hot_threshold: float = ONE_HOT_THRESHOLD) -> dict[str, float]:
    """Statistics of one attention matrix A (C, C) whose rows sum to 1."""
    if attention.ndim != 2 or attention.shape[0] != attention.shape[1]:
        raise ConfigError(f"expected a square attention matrix (C, C), got shape {tuple(attention.shape)}")
    a = attention.detach().double()
    row_max, argmax = a.max(dim=-1)
    entropy = torch.special.entr(a).sum(dim=-1)  # entr(0) = 0: zero entries carry no entropy
    return {"channels": float(a.shape[0]), "row_max_mean": float(row_max.mean()),
            "row_entropy_mean": float(entropy.mean()), "uniform_entropy": math.log(a.shape[0]),
            "distinct_argmax": float(argmax.unique().numel()),
            "one_hot_fraction": float((row_max > one_hot_threshold).double().mean())}


def spatial_attention_stats(z: torch.Tensor, infocus: torch.Tensor | None = None, low: float = SATURATION_LOW,
                            high: float = SATURATION_HIGH, quantiles: Sequence[float] = Z_QUANTILES
                            ) -> dict[str, float]:
    """Distribution of one spatial attention map Z (any shape, values in [0, 1]); with `infocus` (a mask of Z's
    shape, 1 = in focus) also the mean of Z over the in-focus and over the blurred pixels (NaN where there are none)."""
    flat = z.detach().double().flatten()
    out = {"z_mean": float(flat.mean()), "z_std": float(flat.std(unbiased=False))}
    for q, v in zip(quantiles, torch.quantile(flat, torch.tensor(list(quantiles), dtype=torch.float64))):
        out[f"z_q{round(q * 100):02d}"] = float(v)
    out[f"z_below_{low:g}"] = float((flat < low).double().mean())
    out[f"z_above_{high:g}"] = float((flat > high).double().mean())
    if infocus is not None:
        sharp = infocus.detach().flatten() >= 0.5
        if sharp.numel() != flat.numel():
            raise ConfigError(f"mask has {sharp.numel()} pixels, Z has {flat.numel()}")
        out["z_mean_infocus"] = float(flat[sharp].mean()) if sharp.any() else math.nan
        out["z_mean_blurred"] = float(flat[~sharp].mean()) if (~sharp).any() else math.nan
    return out


def _attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [(MODULE_LABELS.get(name, name), m) for name, m in model.named_modules()
             if isinstance(m, (ChannelAttention, SpatialAttention))]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no attention module (HCA, LCA or SA): nothing to measure")
    return found


def _capture_hooks(modules: list[tuple[str, nn.Module]], captured: dict[str, dict[str, Any]]) -> list:
    """Forward hooks that store, per module label: N, the softmax's input (energies) and output (A) of channel
    attention; Z of spatial attention (recomputed from the module's input, without gradient)."""
    def on_channel(label: str):
        def hook(_module, inputs, _output):
            captured.setdefault(label, {})["positions"] = int(inputs[0][0, 0].numel())
        return hook

    def on_softmax(label: str):
        def hook(_module, inputs, output):
            captured.setdefault(label, {}).update(energy=inputs[0], attention=output)
        return hook

    def on_spatial(label: str):
        def hook(module, inputs, _output):
            high, low = inputs
            with torch.no_grad():
                captured[label] = {"z": module.attention_map(high, low.shape[-2:])}
        return hook

    handles = []
    for label, module in modules:
        if isinstance(module, ChannelAttention):
            handles.append(module.register_forward_hook(on_channel(label)))
            handles.append(module.softmax.register_forward_hook(on_softmax(label)))
        else:
            handles.append(module.register_forward_hook(on_spatial(label)))
    return handles


def _gradient_norms(logits: torch.Tensor, target: torch.Tensor,
                    loss_fn: LossFn,
                    captured: dict[str, dict[str, Any]]) -> dict[tuple[str, str], float]:
    """{(label, "attention" | "energy"): Frobenius norm of dL/d that tensor} for the loss of one training step."""
    wanted = [(label, key) for label, c in captured.items() for key in ("attention", "energy")
              if key in c and c[key].requires_grad]
    if not wanted:
        return {}
    loss = loss_fn(logits.float(), target)
    # autograd.grad, not backward(): the parameters' .grad stay untouched
    grads = torch.autograd.grad(loss, [captured[label][key] for label, key in wanted], allow_unused=True)
    return {w: 0.0 if g is None else float(g.double().norm()) for w, g in zip(wanted, grads)}


def module_statistics(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None,
                      loss_fn: LossFn = F.binary_cross_entropy_with_logits,
                      one_hot_threshold: float = ONE_HOT_THRESHOLD) -> dict[str, dict[str, float]]:
    """{module label: {statistic: value}} for one input `x` (batch 1) as the model takes it. `target`: the training
    target of the model's output, for the gradient statistics (None: NaN). Parameters' .grad are not touched."""
    if x.shape[0] != 1:
        raise ConfigError(f"module_statistics takes one input at a time (batch 1), got batch {x.shape[0]}")
    modules = _attention_modules(model)
    captured: dict[str, dict[str, Any]] = {}
    handles = _capture_hooks(modules, captured)
    try:
        with torch.enable_grad():
            # an input that requires grad makes A and the energies part of the graph even where nothing upstream
            # of them is trainable (a frozen backbone)
            logits = model(x.detach().requires_grad_(target is not None))
            grads = _gradient_norms(logits, target, loss_fn, captured) if target is not None else {}
    finally:
        for h in handles:
            h.remove()

    out: dict[str, dict[str, float]] = {}
    for label, module in modules:
        if label not in captured:
            continue  # a module the forward pass did not use
        if isinstance(module, SpatialAttention):
            z = captured[label]["z"]
            # the model's target is at the input's size, as is Z (it is applied to the full-resolution LL)
            infocus = target if target is not None and target.shape[-2:] == z.shape[-2:] else None
            out[label] = spatial_attention_stats(z, infocus)
            continue
        stats = channel_attention_stats(captured[label]["attention"][0], one_hot_threshold)
        stats["positions"] = float(captured[label]["positions"])
        stats["alpha"] = float(module.alpha.detach().float())
        temperature = module.temperature()
        if temperature is not None:
            stats["temperature"] = float(temperature.detach())
        stats["grad_attention_norm"] = grads.get((label, "attention"), math.nan)
        stats["grad_energy_norm"] = grads.get((label, "energy"), math.nan)
        # how much of dL/dA the softmax passes on to the energies: independent of alpha and of the loss's scale
        gain = stats["grad_energy_norm"] / stats["grad_attention_norm"] if stats["grad_attention_norm"] else math.nan
        stats["softmax_gradient_ratio"] = gain
        out[label] = stats
    return out


def with_attention_scale(model: nn.Module, scale: str) -> nn.Module:
    """A MultiANet like `model` (same preset, widths and weights) whose channel attention scales its energies as
    `scale` says: what A would be at that scale's initialisation, on the trained features. The cosine temperature
    starts at its initial value when `model` has none; alpha (which does not change A) is kept."""
    import copy

    check_attention_scale(scale)
    if getattr(model, "attention_scale", None) == scale:
        return model
    clone = copy.deepcopy(model)
    clone.attention_scale = scale
    for name, module in list(clone.named_modules()):
        if isinstance(module, ChannelAttention):
            fresh = ChannelAttention(scale).to(module.alpha.device)
            with torch.no_grad():
                fresh.alpha.copy_(module.alpha)
            parent = clone.get_submodule(name.rpartition(".")[0]) if "." in name else clone
            setattr(parent, name.rpartition(".")[2], fresh)
    return clone


def _image_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """(1, 3, size, size) float in [0, 1], resized as mdbd.runs.predict does (bilinear, antialiased)."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div_(255.0)  # a copy: inputs may be read-only
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def _mask_tensor(mask: np.ndarray, size: int) -> torch.Tensor:
    """(1, 1, size, size) in {0, 1} (1 = in focus), resized and binarised at 0.5 as the training data is."""
    m = torch.from_numpy(np.array(mask)).float()[None, None]
    m = F.interpolate(m, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (m >= 0.5).float()


def attention_statistics(model: nn.Module, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None,
                         ids: Sequence[str] | None = None, size: int = 320, device: str | torch.device = "cpu",
                         one_hot_threshold: float = ONE_HOT_THRESHOLD, **provenance: Any) -> pd.DataFrame:
    """Tidy statistics of every attention module of `model` on each image: columns image, module, kind (channel or
    spatial), statistic, value, then size, preset, attention_scale, spatial_gate and the `provenance` keywords (e.g.
    checkpoint, dataset, split, device) as constant columns.

    `images`: RGB uint8 (H, W, 3), each resized to `size` x `size` as for prediction. `masks` (1 = in focus, each
    of its image's size): the BCE targets of the gradient statistics; None leaves those out."""
    if size < 16 or size % 2:
        raise ConfigError(f"size must be an even number >= 16, got {size}")
    if not len(images):
        raise DataError("no images given for the attention statistics")
    ids = [str(i) for i in (ids if ids is not None else range(len(images)))]
    if len(ids) != len(images) or (masks is not None and len(masks) != len(images)):
        raise ConfigError(f"{len(images)} images, {len(ids)} ids and "
                          f"{'no' if masks is None else len(masks)} masks: they must correspond one to one")
    device = torch.device(device)
    model.to(device)
    rows = []
    for k, (image_id, image) in enumerate(zip(ids, images)):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"image {image_id}: expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        target = None
        if masks is not None:
            mask = np.asarray(masks[k])
            if mask.shape != image.shape[:2]:
                raise DataError(f"mask of {image_id} is {mask.shape[1]}x{mask.shape[0]}, its image "
                                f"{image.shape[1]}x{image.shape[0]}")
            target = _mask_tensor(mask, size).to(device)
        stats = module_statistics(model, _image_tensor(image, size).to(device), target,
                                  one_hot_threshold=one_hot_threshold)
        for label, values in stats.items():
            kind = "spatial" if "z_mean" in values else "channel"
            rows += [{"image": image_id, "module": label, "kind": kind, "statistic": name, "value": value}
                     for name, value in values.items()]
    table = pd.DataFrame(rows)
    table["size"] = size
    table["preset"] = getattr(model, "preset", type(model).__name__)
    table["attention_scale"] = getattr(model, "attention_scale", None)
    table["spatial_gate"] = getattr(model, "spatial_gate", None)
    table["one_hot_threshold"] = one_hot_threshold
    for key, value in provenance.items():
        table[key] = value
    return table


def attention_table(stats: pd.DataFrame, by: Sequence[str] = ("module", "statistic")) -> pd.DataFrame:
    """Wide view for reading: one row per `by` (default module x statistic), one column per image and their mean."""
    by = list(by)
    order = {name: i for i, name in enumerate(dict.fromkeys(stats["statistic"]))}  # first-seen order
    wide = stats.pivot_table(index=by, columns="image", values="value", aggfunc="first", sort=False)
    wide = wide[list(dict.fromkeys(stats["image"]))]
    wide["mean"] = wide.mean(axis=1)
    wide = wide.reset_index()
    wide = wide.sort_values(by, key=lambda s: s.map(order) if s.name == "statistic" else s, kind="stable")
    wide.columns.name = None
    return wide.reset_index(drop=True)
