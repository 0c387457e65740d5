"""In-focus probability maps for images of any size.

    maps = predict_arrays(model, [img_a, img_b], size=320)          # float32 (H, W) in [0, 1] per image
    paths = predict_files("results/runs/.../last.pt", ["a.jpg", "b.png"], "out/")   # 8-bit PNGs, 255 = in focus

Each image is resized to `size` x `size` (bilinear, antialiased: as the training data is made), run through the network
in batches, and its map resized back bilinearly to the image's own height and width. Images of one size are resized
together; batches mix sizes freely since the network sees only `size` x `size`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mdbd.runs.checkpoint import CHECKPOINT_NAME, inference_size, load_checkpoint
from mdbd.data import readers
from mdbd.data.readers import IMAGE_EXTS
from mdbd.core.errors import ConfigError, DataError
from mdbd.core.io import check_output_folder, save_map_png
from mdbd.model import MultiANet
from mdbd.core.provenance import resolve_device, usable_device


def _as_float_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    arr = np.stack([np.asarray(im) for im in images])
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return t.float().div_(255.0) if arr.dtype == np.uint8 else t.float()


def _check_image(i: int, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"image {i} has shape {image.shape}; expected (H, W, 3) RGB")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise DataError(f"image {i} has dtype {image.dtype}; expected uint8 0..255 or float 0..1")


def predict_arrays(model: torch.nn.Module, images: Sequence[np.ndarray], size: int, device: str | None = None,
                   batch_size: int = 8, bf16: bool = True) -> list[np.ndarray]:
    """In-focus probability maps, float32 (H, W) in [0, 1], one per image at that image's original size.

    `images`: RGB (H, W, 3), uint8 0..255 or float 0..1, sizes may differ. `size`: the network's square input side.
    `bf16`: autocast on CUDA (ignored on CPU, where everything stays fp32). The network runs channels-last (the
    model is converted in place): 23% faster on this machine's CPU at 448 px, and what CUDA prefers; the maps
    differ from NCHW's by about 1e-5, below an 8-bit level."""
    return predict_arrays_many([model], images, size, device=device, batch_size=batch_size, bf16=bf16)[0]


def shared_trunk_blocks(models: Sequence[torch.nn.Module]) -> int:
    """How many leading VGG blocks (0..5) hold the same weights in every one of `models`: those are computed once
    per batch by predict_arrays_many. 0 for a single model or any model that is not a MultiANet. Compared by value,
    so it holds for the frozen ImageNet blocks of runs that trained only the later ones, and never for a block
    that training changed."""
    if len(models) < 2 or not all(isinstance(m, MultiANet) for m in models):
        return 0
    shared = 0
    for blocks in zip(*(m.backbone.blocks for m in models)):
        first = list(blocks[0].parameters())
        if not all(all(torch.equal(a, b) for a, b in zip(first, other.parameters())) for other in blocks[1:]):
            break
        shared += 1
    return shared


def _resized_batches(images: Sequence[np.ndarray], size: int, batch_size: int) -> tuple[list[int], torch.Tensor]:
    """(image order, network inputs in that order): same-size images resized together, in batches."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(tuple(np.asarray(image).shape[:2]), []).append(i)
    order: list[int] = []
    inputs: list[torch.Tensor] = []
    for shape, idx in by_shape.items():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            x = _as_float_batch([images[i] for i in chunk])
            if shape != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            inputs.append(x.clamp_(0, 1))
            order += chunk
    return order, torch.cat(inputs)


def _forward_all(models: Sequence[torch.nn.Module], batch: torch.Tensor, shared: int) -> list[torch.Tensor]:
    """Each model's logits for `batch`; the first `shared` backbone blocks run once (shared_trunk_blocks). The
    same operations on the same input as model(batch), so the same numbers."""
    if not shared:
        return [model(batch) for model in models]
    trunk = models[0].trunk(batch, shared)
    return [model.forward_from_trunk(trunk, batch.shape[-2:]) for model in models]


@torch.inference_mode()
def predict_arrays_many(models: Sequence[torch.nn.Module], images: Sequence[np.ndarray], size: int,
                        device: str | None = None, batch_size: int = 8, bf16: bool = True) -> list[list[np.ndarray]]:
    """predict_arrays for several models at once: one list of maps per model, each the same as predict_arrays
    gives for that model alone. The images are resized once, and the leading backbone blocks that every model
    shares unchanged (frozen during training: shared_trunk_blocks) run once per batch: with VGG blocks 1-4 frozen,
    five real-CUHK runs at 448 px took 1.78x less time together than one after another (docs/training.md)."""
    if not models:
        raise ConfigError("predict_arrays_many: no models given")
    if size < 16 or size % 2:
        raise ConfigError(f"size must be an even number >= 16, got {size}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    for i, image in enumerate(images):
        _check_image(i, image)
    dev = torch.device(resolve_device(device))
    for model in models:
        model.eval()
        if next(model.parameters()).device != dev:
            model.to(dev)
        model.to(memory_format=torch.channels_last)
    shared = shared_trunk_blocks(models)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" and bf16 \
        else contextlib.nullcontext()

    order, resized = _resized_batches(images, size, batch_size)
    out: list[list[np.ndarray | None]] = [[None] * len(images) for _ in models]
    for start in range(0, len(order), batch_size):
        with autocast:
            batch = resized[start:start + batch_size].to(dev).contiguous(memory_format=torch.channels_last)
            all_logits = [logits.float() for logits in _forward_all(models, batch, shared)]
        for maps, logits in zip(out, all_logits):
            probs = torch.sigmoid(logits)
            for k, i in enumerate(order[start:start + batch_size]):
                h, w = np.asarray(images[i]).shape[:2]
                p = probs[k:k + 1]
                if (h, w) != tuple(p.shape[-2:]):
                    p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
                maps[i] = p[0, 0].clamp_(0, 1).cpu().numpy().astype(np.float32)
    return out  # type: ignore[return-value]


@torch.inference_mode()
def _predict_resized(model: torch.nn.Module, batch: torch.Tensor, shapes: Sequence[tuple[int, int]],
                     device: str | None, bf16: bool):
    """Maps of network inputs already resized (B, 3, size, size), each brought back to its original (h, w) and
    yielded one at a time: the same operations as predict_arrays, one full-size map in memory at once."""
    dev = torch.device(resolve_device(device))
    model.eval()
    if next(model.parameters()).device != dev:
        model.to(dev)
    model.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" and bf16 \
        else contextlib.nullcontext()
    with autocast:
        logits = model(batch.to(dev).contiguous(memory_format=torch.channels_last)).float()
    probs = torch.sigmoid(logits)
    for k, (h, w) in enumerate(shapes):
        p = probs[k:k + 1]
        if (h, w) != tuple(p.shape[-2:]):
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        yield p[0, 0].clamp_(0, 1).cpu().numpy().astype(np.float32)


def expand_image_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; folders replaced by their image files (sorted). Missing paths are a DataError."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"image not found: {p}")
    return out


def predict_files(checkpoint: str | os.PathLike, image_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  preset: str | None = None, device: str | None = None, batch_size: int = 8,
                  size: int | None = None, bf16: bool = False) -> list[Path]:
    """Maps for image files (or folders of them) written as out_dir/<stem>.png; returns the written paths.

    `bf16`: autocast on CUDA (faster; off by default so that the maps are those mdbd.runs.scoring scores, fp32).

    Streaming: `batch_size` images are decoded at a time (EXIF orientation applied: the map matches the photo as
    displayed), so memory does not grow with the number of inputs. All or nothing: maps are written to a hidden
    staging folder inside `out_dir` and moved into place only once every input has been read and predicted, so a
    corrupt input, a full disk or an interruption leaves `out_dir` as it was (DataError naming the file or the
    fault). The output folder and the device are checked before the checkpoint is loaded. `preset`:
    CheckpointError if the checkpoint holds another model. `size`: default the checkpoint's."""
    if size is not None and (size < 16 or size % 2):
        raise ConfigError(f"size must be an even number >= 16, got {size}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    files = expand_image_paths(image_paths)
    if not files:
        raise DataError("no images given")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"two inputs would write the same output {f.stem}.png: {stems[f.stem]} and {f}")
        stems[f.stem] = f
    if Path(checkpoint).is_dir():
        inside = Path(checkpoint) / CHECKPOINT_NAME
        example = f" ({inside})" if inside.is_file() else f", e.g. a run folder's {CHECKPOINT_NAME}"
        raise DataError(f"--checkpoint {checkpoint} is a folder; give the checkpoint file{example}")
    created = not Path(out_dir).exists()
    out_dir = check_output_folder(out_dir)
    usable_device(device)
    model, cfg, meta = load_checkpoint(checkpoint, expected_preset=preset, device=device)
    if not meta["finished"]:
        print(f"warning: {checkpoint} is an UNFINISHED run (epoch {meta.get('epoch')} of {cfg.get('epochs')}): these "
              "maps are not its finished model's; resume its training first (mdbd train --resume)", file=sys.stderr)
    size = int(size or inference_size(cfg))
    staging = Path(tempfile.mkdtemp(prefix=".mdbd-predict-", dir=out_dir))
    try:
        for start in range(0, len(files), batch_size):
            group = files[start:start + batch_size]
            # each photo is resized to the network's input as soon as it is decoded, so only one full-size photo is
            # in memory at a time whatever the batch size (a camera photo decodes to ~1 GB of floats)
            inputs, shapes = [], []
            for f in group:
                image = readers.read_image(f, apply_exif=True)  # read when called: a test counts the reads
                _check_image(0, image)
                shapes.append(image.shape[:2])
                inputs.append(_resized_batches([image], size, 1)[1])
                del image
            for m, f in zip(_predict_resized(model, torch.cat(inputs), shapes, device, bf16), group):
                save_map_png(m, staging / f"{f.stem}.png")
            del inputs
        written = []
        for f in files:  # renames within one folder: no data is written here
            os.replace(staging / f"{f.stem}.png", out_dir / f"{f.stem}.png")
            written.append(out_dir / f"{f.stem}.png")
    except OSError as exc:
        raise DataError(f"writing maps to {out_dir} failed ({exc.strerror or exc}); no map was written") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed call leaves no trace, not even the folder it made
    return written
