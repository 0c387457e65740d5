"""A run's identity: everything that changes the model a training run produces, and the reuse rule built on it.

    identity = run_identity(cfg)               # resolved config minus bookkeeping, data folder, versions
    cfg.resolved_run_dir()                     # results/runs/<profile>/<preset>-<dataset>-seed<N>-<hash of identity>
    differences(saved_identity, identity)      # ["epochs: run 60, now 20", ...]: why a run may not be reused

The rule (docs/training.md, "Which run is reused"): a run folder holds one identity. A finished run of the same
identity is reused, an interrupted one resumed; any other identity is a new folder (the default folder's name
carries the identity's hash) or, in a folder given explicitly, an error naming every differing field.

What enters:
- every RunConfig field except BOOKKEEPING (so a field added later counts until it is declared bookkeeping),
  attention_scale only for presets with channel attention (HL and HL+LL runs are shared by every scale), and
  spatial_gate only for presets with SA and a gate other than "sigmoid" (the only gate before the option existed:
  every earlier run keeps its hash, and runs without SA are shared by both gates);
- the device type (cpu or cuda) and, on CUDA only, bf16 and channels_last, which change the numbers there; on the
  CPU, cpu_bf16 when it is on (bf16 training steps);
- the data folder as display_path shows it (relative to the repository or $MDBD_SHARED_DATA: the same on every
  checkout), and the files training reads: names and byte sizes of every image and mask of the training and
  validation splits (`data_fingerprint`; a stat per file, no decoding: cheap even for Shi's 704 pairs);
- TRAINING_VERSION, and for the synthetic benchmark the generator's version and mask origin.
The git commit does not enter (it would retrain after every commit, also for a typo in a docstring); it is recorded
in every checkpoint and reported when a run is reused. TRAINING_VERSION is the promise instead: bump it in any change
that alters what a given configuration trains to (model, loss, data pipeline, optimiser, schedule).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdbd.data import spec as data_spec
from mdbd.data.locate import synthetic_mask_origin
from mdbd.hashing import stable_key
from mdbd.model.spec import LEGACY_CONFIG_DEFAULTS, has_module
from mdbd.paths import display_path, results_dir
from mdbd.provenance import resolve_device

if TYPE_CHECKING:
    from mdbd.config import RunConfig
    from mdbd.data.readers import PairDataset

#: Bump when a code change alters the model a given configuration trains to (so old runs are not reused).
TRAINING_VERSION = 3  # 2: cosine attention energies from the Gram matrix; 3: fused decoder sums (last digits differ)
#: RunConfig fields that cannot change the trained model: where and how often things are written, the loader's
#: worker count (tested: the same augmentation), the device (replaced by its type: cpu and cuda:1 differ, cuda:0 and
#: cuda:1 do not), data_root (replaced by the resolved folder), the ablation stage's settings (which runs exist,
#: not what one run is) and the frozen-feature cache (it feeds the same tensors: tests/test_train.py).
BOOKKEEPING = ("device", "bf16", "channels_last", "num_workers", "val_every", "checkpoint_every", "run_dir",
               "data_root", "ablation", "concurrent_runs", "cache_frozen_features")
HASH_LENGTH = 8


def run_identity(cfg: RunConfig) -> dict[str, Any]:
    """The identity of `cfg`'s run without the data fingerprint (which needs the files: `with_fingerprint`)."""
    identity: dict[str, Any] = {"training_version": TRAINING_VERSION}
    identity.update({k: v for k, v in cfg.to_dict().items() if k not in BOOKKEEPING})
    if not has_module(cfg.preset, {"HCA", "LCA"}):
        identity.pop("attention_scale", None)  # no HCA or LCA: the energies' scale changes nothing in this model
    eq3_gate = LEGACY_CONFIG_DEFAULTS["spatial_gate"][0]
    if not has_module(cfg.preset, {"SA"}) or cfg.spatial_gate == eq3_gate:
        identity.pop("spatial_gate", None)  # no SA, or eq. 3's gate, which every run had before the field existed
    identity["polarity"] = cfg.mask_polarity()  # the field is read for folder datasets only
    identity["data"] = display_path(cfg.resolved_data_root())
    if cfg.dataset == "synthetic":
        identity["generator_version"] = data_spec.GENERATOR_VERSION  # read when called: a test bumps it
        identity["mask_origin"] = synthetic_mask_origin()
    else:
        identity.pop("synth")  # the generator's sizes mean nothing for real data
    device_type = resolve_device(cfg.device).split(":")[0]
    identity["device_type"] = device_type
    if device_type == "cuda":
        identity["bf16"], identity["channels_last"] = cfg.bf16, cfg.channels_last
    if device_type != "cpu" or not cfg.cpu_bf16:
        identity.pop("cpu_bf16", None)  # fp32 on the CPU, as every run before the field: their hashes stay
    return identity


def identity_hash(identity: dict[str, Any]) -> str:
    """A short, stable hash of an identity (key order does not matter)."""
    return stable_key(identity, HASH_LENGTH)


def default_run_dir(cfg: RunConfig) -> Path:
    """results/runs/<profile>/<preset>-<dataset>-seed<seed>-<hash>: readable, and one folder per identity."""
    name = f"{cfg.preset}-{cfg.results_label()}-seed{cfg.seed}-{identity_hash(run_identity(cfg))}"
    return results_dir() / "runs" / cfg.profile / name


def split_fingerprint(pairs: PairDataset) -> str:
    """`N pairs, sha256 X` of the names (relative to the dataset folder) and byte sizes of a split's files."""
    digest = hashlib.sha256()
    root = Path(pairs.root)
    for image, mask in zip(pairs.image_paths, pairs.mask_paths):
        for path in (image, mask):
            if path is None:
                digest.update(b"-\n")
                continue
            name = path.relative_to(root) if path.is_relative_to(root) else path.name
            digest.update(f"{name}\t{path.stat().st_size}\n".encode())
    return f"{len(pairs)} pairs, sha256 {digest.hexdigest()[:16]}"


def with_fingerprint(identity: dict[str, Any], splits: dict[str, PairDataset]) -> dict[str, Any]:
    """`identity` plus `data_fingerprint`: {split: split_fingerprint} of the splits training reads."""
    return {**identity, "data_fingerprint": {name: split_fingerprint(p) for name, p in splits.items()}}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def differences(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """One `field: run X, now Y` line per differing field (nested fields dotted); [] when the identities agree."""
    if saved is None:
        return ["identity: the run has none (written by an older mdbd, before run identities)"]
    a, b = _flatten(saved), _flatten(now)
    missing = object()
    return [f"{k}: run {a.get(k, '(absent)')!r}, now {b.get(k, '(absent)')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]
