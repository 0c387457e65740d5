"""A run's identity: everything that changes the model a training run produces, and the reuse rule built on it.

    identity = run_identity(cfg)               # the identity sections of the config, data folder, versions
    cfg.resolved_run_dir()                     # results/runs/<profile>/<preset>-<dataset>-seed<N>-<hash of identity>
    differences(saved_identity, identity)      # ["epochs: run 60, now 20", ...]: why a run may not be reused

The rule (docs/training.md, "Which run is reused"): a run folder holds one identity. A finished run of the same
identity is reused, an interrupted one resumed; any other identity is a new folder (the default folder's name
carries the identity's hash) or, in a folder given explicitly, an error naming every differing field.

What enters:
- every field of every configuration section but `runtime` and `ablation` (mdbd.runs.sections: run, data, model,
  optimisation, augmentation), each as its declaration on RunConfig says, so a field added later counts unless it is
  declared in one of those two: attention_scale only for presets with channel attention (HCA or LCA: HL and HL+LL runs
  are shared by every scale); spatial_gate only for presets with SA and a gate other than "sigmoid" (the only gate
  before the option existed: every earlier run keeps its hash, and runs without SA are shared by both gates); bf16
  and channels_last on CUDA only, cpu_bf16 on the CPU only and only when on (bf16 training steps); the synthetic
  benchmark's sizes for synthetic runs only; data_root and polarity as what they stand for (below);
- the device type (cpu or cuda; the runtime's device field itself does not enter: cuda:0 and cuda:1 train alike);
- the data folder as display_path shows it (relative to the repository or $MDBD_SHARED_DATA: the same on every
  checkout), and the files training reads: names and byte sizes of every image and mask of the training and
  validation splits (`data_fingerprint`; a stat per file, no decoding: cheap even for Shi's 704 pairs);
- TRAINING_VERSION, and for the synthetic benchmark the generator's version and mask origin.
The git commit does not enter (it would retrain after every commit, also for a typo in a docstring); it is recorded
in every checkpoint and reported when a run is reused. TRAINING_VERSION is the promise instead: bump it in any change
that alters what a given configuration trains to (model, loss, data pipeline, optimiser, schedule).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdbd.data import spec as data_spec
from mdbd.data.locate import synthetic_mask_origin
from mdbd.core.hashing import stable_key
from mdbd.model.spec import has_module
from mdbd.core.paths import display_path, results_dir
from mdbd.core.provenance import resolve_device
from mdbd.runs.sections import DERIVED, IDENTITY_SECTIONS, UNLESS_LEGACY

if TYPE_CHECKING:
    from mdbd.runs.config import RunConfig
    from mdbd.data.readers import PairDataset

#: Bump when a code change alters the model a given configuration trains to (so old runs are not reused).
TRAINING_VERSION = 3  # 2: cosine attention energies from the Gram matrix; 3: fused decoder sums (last digits differ)
HASH_LENGTH = 8


def run_identity(cfg: RunConfig) -> dict[str, Any]:
    """The identity of `cfg`'s run without the data fingerprint (which needs the files: `with_fingerprint`)."""
    device_type = resolve_device(cfg.device).split(":")[0]
    identity: dict[str, Any] = {"training_version": TRAINING_VERSION}
    identity.update(_section_entries(cfg, device_type))
    # what the DERIVED fields and the runtime's device stand for
    identity["polarity"] = cfg.mask_polarity()  # the field is read for folder datasets only
    identity["data"] = display_path(cfg.resolved_data_root())  # data_root resolved
    if cfg.dataset == "synthetic":
        identity["generator_version"] = data_spec.GENERATOR_VERSION  # read when called: a test bumps it
        identity["mask_origin"] = synthetic_mask_origin()
    identity["device_type"] = device_type
    return identity


def _section_entries(cfg: RunConfig, device_type: str) -> dict[str, Any]:
    """Every field of the identity sections (mdbd.runs.sections.IDENTITY_SECTIONS) that enters by its declaration: not
    DERIVED, acting on this preset, device type and dataset, and for UNLESS_LEGACY not at its legacy value."""
    values = cfg.to_dict()
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        meta = f.metadata
        if meta["section"] not in IDENTITY_SECTIONS or meta["identity"] == DERIVED:
            continue
        if "modules" in meta and not has_module(cfg.preset, set(meta["modules"])):
            continue  # e.g. no HCA or LCA: the attention energies' scale changes nothing in this model
        if meta.get("device", device_type) != device_type or meta.get("dataset", cfg.dataset) != cfg.dataset:
            continue  # e.g. bf16 on the CPU, the synthetic generator's sizes for real data
        if meta["identity"] == UNLESS_LEGACY and getattr(cfg, f.name) == meta["legacy"][0]:
            continue  # the value every run had before the field existed: their hashes stay
        out[f.name] = values[f.name]
    return out


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
