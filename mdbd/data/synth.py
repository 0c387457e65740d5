"""A deterministic synthetic defocus-blur benchmark built from sharp photographs that ship with installed packages.

    root = generate_synthetic("data/synthetic/smoke-seed0", profile="smoke", seed=0)
    ds = open_dataset("synthetic", root, split="train")

Design (docs/data.md, "Synthetic benchmark"):
- sources: the bundled scikit-image photographs and scikit-learn's sample images, each checked to be sharp throughout
  (`sharpness_report`); the others are left out and logged. Train and test use DISJOINT source photographs
  (`TEST_SOURCES`).
- masks (1 = in focus): real CUHK mask shapes when CUHK ground truth is found (train masks 0001..0604 for the train
  split, 0605..0704 for test), procedural blobs/ellipses/polygons otherwise.
- blur: a disc (pillbox) PSF of radius drawn per image, applied in linear light with normalised masked convolution so
  no in-focus colour leaks across the boundary, then composited with the mask; then Poisson-Gaussian sensor noise
  over the whole frame and JPEG compression. Images .jpg, masks .png (white = in focus), manifest dataset.json.
- every random draw comes from numpy's Generator seeded by (seed, split, index): same seed, same bytes.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from mdbd.data import spec as data_spec
from mdbd.data.locate import find_cuhk_gt, synthetic_mask_origin
from mdbd.data.readers import CUHK_SPLITS, read_mask
from mdbd.data.spec import GENERATOR_VERSION, SynthConfig  # noqa: F401 (re-exported: defined without numpy there)
from mdbd.core.errors import DataError
from mdbd.core.io import atomic_folder

log = logging.getLogger(__name__)

# Photographs of scenes and objects bundled with the packages (no download). scikit-image's gallery images that
# need pooch downloads are not listed; graphics (logo, colorwheel, chessboard, phantom) are not photographs.
SKIMAGE_SOURCES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "brick", "grass", "gravel",
                   "moon", "page", "text", "clock", "hubble_deep_field", "immunohistochemistry", "retina")
SKLEARN_SOURCES = ("china", "flower")
# Fixed test photographs: the benchmark's test split never changes with the seed, and no crop of them is trained on.
TEST_SOURCES = ("coffee", "china", "camera", "gravel")

# Sharpness check: 64-px tiles with some texture (gray std >= 0.03) are scored with the Crete-Roffet blur metric
# (skimage.measure.blur_effect, 0 sharp .. 1 blurred); a photograph is "sharp throughout" when at most 10% of its
# textured tiles score above 0.6. This keeps astronaut (7%) and drops chelsea (25%, soft background), flower
# (34%, shallow depth of field), retina (12%) and clock (71%, motion-blurred).
SHARP_TILE = 64
SHARP_MIN_STD = 0.03
SHARP_TILE_MAX_BLUR = 0.6
SHARP_MAX_SOFT_FRACTION = 0.10

PSF_RADIUS_PX = (1.5, 6.0)  # disc radius in output pixels: 1.5 is subtle at any size, 6 is obvious
NOISE_READ_SIGMA = (0.5 / 255, 2.5 / 255)  # Gaussian read noise, linear light
NOISE_SHOT_GAIN = (0.5e-4, 4e-4)  # Poisson-ish: variance = gain * signal
JPEG_QUALITY = (75, 95)
MAX_UPSCALE = 1.25  # a crop is never enlarged more than this (enlarging softens the "sharp" region)
INFOCUS_FRACTION = (0.1, 0.9)  # masks outside this range are redrawn
_SPLIT_CODE = {"train": 0, "test": 1}


# -- sources --------------------------------------------------------------------------------------------

def _load_source(name: str) -> np.ndarray:
    if name in SKLEARN_SOURCES:
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"), dtype=np.uint8)
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3].astype(np.uint8)


def sharpness_report(image: np.ndarray) -> dict:
    """Fraction of textured tiles that look soft (see SHARP_* constants) and the verdict."""
    from skimage.measure import blur_effect

    gray = image.astype(np.float64).mean(axis=2) / 255.0
    scores = []
    for y in range(0, gray.shape[0] - SHARP_TILE + 1, SHARP_TILE):
        for x in range(0, gray.shape[1] - SHARP_TILE + 1, SHARP_TILE):
            tile = gray[y:y + SHARP_TILE, x:x + SHARP_TILE]
            if tile.std() >= SHARP_MIN_STD:
                scores.append(blur_effect(tile))
    soft = float(np.mean(np.array(scores) > SHARP_TILE_MAX_BLUR)) if scores else 1.0
    return {"textured_tiles": len(scores), "soft_fraction": round(soft, 4),
            "sharp": bool(scores) and soft <= SHARP_MAX_SOFT_FRACTION}


@lru_cache(maxsize=1)
def sharp_sources() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(kept photographs by name, reasons for those left out). Cached: the check is the same in every run."""
    kept, left_out = {}, {}
    for name in SKIMAGE_SOURCES + SKLEARN_SOURCES:
        try:
            img = _load_source(name)
        except Exception as exc:  # a newer package may move an image behind a download
            left_out[name] = f"not available offline ({type(exc).__name__})"
            continue
        rep = sharpness_report(img)
        if not rep["sharp"]:
            left_out[name] = (f"not sharp throughout: {rep['soft_fraction']:.0%} of {rep['textured_tiles']} textured "
                              f"tiles have blur_effect > {SHARP_TILE_MAX_BLUR}")
            continue
        kept[name] = img
    for name, why in left_out.items():
        log.info("synthetic benchmark: source %s left out: %s", name, why)
    return kept, left_out


# -- masks ---------------------------------------------------------------------------------------------

def _cuhk_mask_paths(gt_root: Path, split: str) -> list[Path]:
    paths = [gt_root / f"out_of_focus{n:04d}.png" for n in CUHK_SPLITS[split]]
    return [p for p in paths if p.is_file()]


def _crop_resize_mask(level: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = level.shape
    side = int(min(h, w) * rng.uniform(0.7, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray((level[y:y + side, x:x + side] * 255).astype(np.uint8))
    out = np.asarray(crop.resize((size, size), Image.BILINEAR)) >= 128
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _cuhk_mask(path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    return _crop_resize_mask(read_mask(path, white_is_infocus=False).astype(np.float32), size, rng)


def procedural_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Union of 1-3 shapes (smooth blob, ellipse, polygon), bool (size, size), True = in focus."""
    from skimage.draw import ellipse, polygon

    mask = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["blob", "ellipse", "polygon"])
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        if kind == "blob":
            # smooth noise made at 1/8 resolution and upsampled: same look, ~60x cheaper than filtering at full size
            small = max(8, size // 8)
            noise = gaussian_filter(rng.standard_normal((small, small)), sigma=small * rng.uniform(0.06, 0.15))
            noise = np.asarray(Image.fromarray(noise.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))
            shape = noise > np.quantile(noise, rng.uniform(0.55, 0.85))
        elif kind == "ellipse":
            r = rng.uniform(0.12, 0.35, 2) * size
            shape = np.zeros_like(mask)
            shape[ellipse(cy, cx, r[0], r[1], shape=mask.shape, rotation=rng.uniform(-np.pi, np.pi))] = True
        else:
            k = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            radii = rng.uniform(0.12, 0.4, k) * size
            shape = np.zeros_like(mask)
            shape[polygon(cy + radii * np.sin(angles), cx + radii * np.cos(angles), shape=mask.shape)] = True
        mask |= shape
    return mask


# -- image formation --------------------------------------------------------------------------------------

def pillbox_psf(radius: float, oversample: int = 8) -> np.ndarray:
    """A disc of the given radius (pixels) with exact-ish edge coverage (oversampled), summing to 1."""
    half = int(np.ceil(radius))
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    grid = np.arange(-half, half + 1)
    fine = (grid[:, None] + offsets[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius ** 2
    n = 2 * half + 1
    kernel = inside.reshape(n, oversample, n, oversample).mean(axis=(1, 3))
    return kernel / kernel.sum()


def _to_linear(img_u8: np.ndarray) -> np.ndarray:
    return (img_u8.astype(np.float32) / 255.0) ** 2.2  # gamma-2.2 approximation of sRGB: blur adds light linearly


def _to_srgb_u8(lin: np.ndarray) -> np.ndarray:
    return (np.clip(lin, 0, 1) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def defocus_composite(sharp_u8: np.ndarray, infocus: np.ndarray, radius: float) -> np.ndarray:
    """Blur the out-of-focus layer with a pillbox PSF and composite: linear float32 (H, W, 3).

    Normalised masked convolution (blur(I*B) / blur(B), B = out-of-focus region) averages only out-of-focus pixels,
    so in-focus colours never bleed into the blurred region (no halo) and image borders need no padding rule."""
    lin = _to_linear(sharp_u8)
    background = (~infocus).astype(np.float32)
    psf = pillbox_psf(radius)[:, :, None]
    stack = np.concatenate([lin * background[..., None], background[..., None]], axis=2)
    blurred = fftconvolve(stack, psf, mode="same", axes=(0, 1))
    weight = np.maximum(blurred[..., 3:], 1e-6)
    blurred_bg = blurred[..., :3] / weight
    return np.where(infocus[..., None], lin, blurred_bg)


def _sensor_noise(lin: np.ndarray, rng: np.random.Generator, read_sigma: float, shot_gain: float) -> np.ndarray:
    variance = shot_gain * np.clip(lin, 0, 1) + read_sigma ** 2
    return lin + rng.standard_normal(lin.shape).astype(np.float32) * np.sqrt(variance).astype(np.float32)


def _random_crop(src: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = src.shape[:2]
    short = min(h, w)
    lo = max(0.6 * short, size / MAX_UPSCALE)
    side = int(round(rng.uniform(lo, short))) if lo < short else short
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(src[y:y + side, x:x + side]).resize((size, size), Image.LANCZOS)
    out = np.asarray(crop)
    out = np.rot90(out, k=int(rng.integers(0, 4))) if rng.random() < 0.25 else out
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def _make_sample(source: np.ndarray, size: int, rng: np.random.Generator, mask_paths: list[Path]):
    image = _random_crop(source, size, rng)
    for attempt in range(20):
        if mask_paths:
            path = mask_paths[int(rng.integers(len(mask_paths)))]
            mask, origin = _cuhk_mask(path, size, rng), path.stem
        else:
            mask, origin = procedural_mask(size, rng), "procedural"
        if INFOCUS_FRACTION[0] <= mask.mean() <= INFOCUS_FRACTION[1]:
            break
    radius = float(rng.uniform(*PSF_RADIUS_PX))
    lin = defocus_composite(image, mask, radius)
    lin = _sensor_noise(lin, rng, float(rng.uniform(*NOISE_READ_SIGMA)), float(rng.uniform(*NOISE_SHOT_GAIN)))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    buf = io.BytesIO()
    Image.fromarray(_to_srgb_u8(lin)).save(buf, format="JPEG", quality=quality)
    png = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(png, format="PNG")
    info = {"psf_radius_px": round(radius, 4), "jpeg_quality": quality, "mask": origin,
            "infocus_fraction": round(float(mask.mean()), 4)}
    return buf.getvalue(), png.getvalue(), info


# -- the benchmark -------------------------------------------------------------------------------------------

def _settings(synth: SynthConfig, profile: str, seed: int, mask_origin: str) -> dict:
    return {"generator_version": data_spec.GENERATOR_VERSION, "profile": profile, "seed": seed, **asdict(synth),
            "mask_origin": mask_origin, "polarity": "infocus_white"}


def _split_sources(kept: dict[str, np.ndarray], size: int) -> dict[str, list[str]]:
    usable = [n for n in kept if min(kept[n].shape[:2]) * MAX_UPSCALE >= size]
    for name in sorted(set(kept) - set(usable)):
        log.info("synthetic benchmark: source %s left out at %d px: shorter side %d < %d / %.2f", name, size,
                 min(kept[name].shape[:2]), size, MAX_UPSCALE)
    splits = {"train": [n for n in usable if n not in TEST_SOURCES], "test": [n for n in usable if n in TEST_SOURCES]}
    for split, names in splits.items():
        if not names:
            raise DataError(f"no sharp source photograph left for the synthetic {split} split at {size} px")
    return splits


def generate_synthetic(out_dir: str | Path, profile: str = "smoke", seed: int = 0,
                       cuhk_gt_root: str | Path | None = None, progress: bool = True, *,
                       synth: SynthConfig | None = None, masks: str = "auto") -> Path:
    """Write the benchmark to `out_dir` (`<out>/{train,test}/{images,masks}` + dataset.json), atomically.

    `synth`: the sizes (None: SynthConfig's defaults, the smoke profile's; a profile's own: load_config(profile).synth);
    `profile` and `seed` are recorded in the manifest, `seed` also draws every sample. `masks` is auto (CUHK shapes
    when found, else procedural), cuhk or procedural."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "dataset.json").is_file():
        raise DataError(f"refusing to overwrite {out_dir}: it is not empty and has no dataset.json "
                        f"(not a synthetic benchmark); choose another folder")
    synth = synth or SynthConfig()
    if masks not in ("auto", "cuhk", "procedural"):
        raise DataError(f"masks must be auto, cuhk or procedural, got {masks!r}")
    gt_root = None if masks == "procedural" else find_cuhk_gt(cuhk_gt_root)
    if masks == "cuhk" and gt_root is None:
        raise DataError("masks='cuhk' but no CUHK ground truth found ($MDBD_SHARED_DATA/cuhk/gt or data/cuhk/gt)")
    mask_origin = "cuhk" if gt_root is not None else "procedural"
    kept, left_out = sharp_sources()
    sources = _split_sources(kept, synth.image_size)
    counts = {"train": synth.train_images, "test": synth.test_images}
    started = time.perf_counter()
    with atomic_folder(out_dir) as tmp:
        samples: dict[str, list[dict]] = {}
        bar = _progress(sum(counts.values()), progress)
        for split, n in counts.items():
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir(parents=True)
            mask_paths = _cuhk_mask_paths(gt_root, split) if gt_root is not None else []
            names = sources[split]
            samples[split] = []
            for i in range(n):
                rng = np.random.default_rng([seed, _SPLIT_CODE[split], i])
                src = names[i % len(names)]  # round robin: every source is used about equally
                jpg, png, info = _make_sample(kept[src], synth.image_size, rng, mask_paths)
                stem = f"{split}_{i:05d}"
                (tmp / split / "images" / f"{stem}.jpg").write_bytes(jpg)
                (tmp / split / "masks" / f"{stem}.png").write_bytes(png)
                samples[split].append({"id": stem, "source": src, **info})
                bar.update(1)
        bar.close()
        manifest = {**_settings(synth, profile, seed, mask_origin),
                    "cuhk_gt": "CUHK ground truth (Shi et al., CVPR 2014), inverted" if gt_root else None,
                    "sources": sources, "sources_left_out": left_out,
                    "psf": {"kind": "pillbox", "radius_px": list(PSF_RADIUS_PX)},
                    "noise": {"read_sigma": list(NOISE_READ_SIGMA), "shot_gain": list(NOISE_SHOT_GAIN)},
                    "jpeg_quality": list(JPEG_QUALITY), "samples": samples}
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("synthetic benchmark %s: %d images in %.1f s", out_dir, sum(counts.values()),
             time.perf_counter() - started)
    return out_dir


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="synthetic benchmark", unit="img", disable=not enabled)


def manifest_matches(root: str | Path, synth: SynthConfig, profile: str, seed: int, mask_origin: str) -> bool:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    wanted = _settings(synth, profile, seed, mask_origin)
    return all(manifest.get(k) == v for k, v in wanted.items())


class SyntheticRun(Protocol):
    """What ensure_synthetic reads of a run's configuration (mdbd.runs.config.RunConfig is one)."""

    profile: str
    seed: int
    synth: SynthConfig

    def resolved_data_root(self) -> Path: ...


def ensure_synthetic(cfg: SyntheticRun, progress: bool = True) -> Path:
    """The benchmark for `cfg` in cfg.resolved_data_root(), generated if missing or made with other settings."""
    root = cfg.resolved_data_root()
    # the same helper names the folder (resolved_data_root), so folder and manifest always agree
    mask_origin = synthetic_mask_origin()
    if not manifest_matches(root, cfg.synth, cfg.profile, cfg.seed, mask_origin):
        generate_synthetic(root, profile=cfg.profile, seed=cfg.seed, synth=cfg.synth, progress=progress)
    return root
