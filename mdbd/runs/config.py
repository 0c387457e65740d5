"""A run is one declared configuration: a profile (YAML under mdbd/profiles/) plus per-field overrides.

    cfg = load_config("laptop", preset="hl", epochs=3)
    cfg.to_dict()  # recorded next to every checkpoint and result

Profiles:
- smoke:  tiny sizes for tests; a training finishes in well under a minute on CPU.
- laptop: a 2-core CPU in minutes, where learning is clearly visible; the README's main job.
- paper:  the paper's settings (320x320, batch 6, Adam 4e-4), for a GPU.
- long:   Table III's central contrast (HL against the full model) with three seeds each, on a 2-core CPU in at most
          100 minutes on Shi's data (notebook 03 alone: `mdbd reproduce --profile long --only 03_ablation`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from mdbd.data.cache import cache_side
from mdbd.data.locate import synthetic_mask_origin
from mdbd.data.spec import SynthConfig
from mdbd.core.errors import ConfigError
from mdbd.runs.identity import default_run_dir
from mdbd.model.spec import ATTENTION_SCALES, DEFAULT_ATTENTION_SCALE, DEFAULT_SPATIAL_GATE, SPATIAL_GATES
from mdbd.core.names import DATASETS, POLARITIES
from mdbd.core.paths import data_dir, resolve
from mdbd.runs.sections import DERIVED, SECTIONS, UNLESS_LEGACY, fields_by_section, legacy_defaults, option

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PROFILES = ("smoke", "laptop", "paper", "long")
# The model's option names and defaults, and the synthetic benchmark's sizes, live below this module (mdbd.model.spec,
# mdbd.data.spec: torch-free) so that the model and the data layer never import the configuration; re-exported here,
# where they were first defined. Their legacy values are declared on their RunConfig fields (LEGACY_CONFIG_DEFAULTS).
COMPILE_CHOICES = ("off", "on", "auto")


@dataclass
class AblationConfig:
    """Table III: each of its presets (None: all seven) trained `epochs` epochs (None: the profile's) for every
    seed."""

    epochs: int | None = None
    seeds: tuple[int, ...] = (0,)
    presets: tuple[str, ...] | None = None


@dataclass
class RunConfig:
    """One run's settings, flat (cfg.epochs) and each field in one section (mdbd.runs.sections: run, data, model,
    optimisation, augmentation, ablation, runtime; `cfg.section("model")`). Every section but ablation and runtime
    enters the run's identity (mdbd.runs.identity), each field as its declaration says."""

    profile: str = option("run", "smoke")
    # data
    dataset: str = option("data", "synthetic")  # synthetic | cuhk | dut | folder
    # None: the dataset's default folder under data/ (the identity holds the resolved folder instead)
    data_root: str | None = option("data", None, identity=DERIVED)
    # folder datasets only: infocus_white | blur_white (the identity holds the polarity masks are read with)
    polarity: str = option("data", "infocus_white", identity=DERIVED)
    image_size: int = option("data", 320)  # training input size, square
    # Training crops are cut from a square copy of each image of side `source_size` (None: 1.25 x image_size, so a
    # crop covers 60-100% of the image, crop_scale). A larger source with a small crop_scale trains on patches at a
    # finer scale than the whole image resized to image_size: the same cost per step, more of the image's detail.
    source_size: int | None = option("data", None)
    # network input side for validation, prediction and scoring (None: image_size)
    eval_size: int | None = option("data", None)
    # the generator's sizes mean nothing for real data: in the identity of synthetic runs only
    synth: SynthConfig = option("data", default_factory=SynthConfig, dataset="synthetic")
    ablation: AblationConfig = option("ablation", default_factory=AblationConfig)
    # model: the constructor options of build_model (build_model(**cfg.section("model")))
    preset: str = option("model", "multianet")
    backbone_weights: str = option("model", "oxford")  # oxford | torchvision | none | path to a .pth state dict
    # channel-attention energies: none (eq. 1 literally) | n | sqrt_n | cosine; acts on presets with HCA or LCA only
    attention_scale: str = option("model", DEFAULT_ATTENTION_SCALE, modules={"HCA", "LCA"},
                                  legacy=("none", "the paper's eq. 1, the only channel attention then"))
    # SA's gate: sigmoid (eq. 3 literally) | centred; out of the identity at eq. 3's gate, which every run had before
    # the field existed (their hashes stay), and for presets without SA
    spatial_gate: str = option("model", DEFAULT_SPATIAL_GATE, modules={"SA"}, identity=UNLESS_LEGACY,
                               legacy=("sigmoid", "the paper's eq. 3, the only spatial gate then"))
    # optimisation (the paper: cross-entropy, Adam, lr 4e-4, batch 6)
    epochs: int = option("optimisation", 2)
    batch_size: int = option("optimisation", 6)
    lr: float = option("optimisation", 4e-4)
    weight_decay: float = option("optimisation", 0.0)
    lr_schedule: str = option("optimisation", "poly")  # poly | constant
    poly_power: float = option("optimisation", 0.9)
    freeze_backbone_blocks: int = option("optimisation", 0)  # VGG blocks (1..5) kept frozen; 0 = train everything
    # augmentation (the paper: random flip, crop, resize, rotation)
    augment: bool = option("augmentation", True)
    max_rotation_deg: float = option("augmentation", 10.0)
    crop_scale: tuple[float, float] = option("augmentation", (0.6, 1.0))
    # runtime: epochs between validations (and always after the last epoch); 0 = never validate during training:
    # the study scores every run right after training anyway, and a CPU profile should not predict the test set twice
    val_every: int = option("runtime", 1)
    checkpoint_every: int = option("runtime", 1)  # epochs between writes of run_dir/last.pt (and after the last)
    seed: int = option("run", 0)
    num_workers: int = option("runtime", 0)  # data-loader workers: the same augmentation whatever the count (tested)
    # None: cuda when available, else cpu (the identity holds the device type: cpu and cuda:1 differ, cuda:0 and
    # cuda:1 do not)
    device: str | None = option("runtime", None)
    # how the training steps compute (optimisation: they change the trained numbers on the device they act on):
    # autocast to bf16 on CUDA only (cpu_bf16 is the CPU's own switch)
    bf16: bool = option("optimisation", True, device="cuda")
    # autocast the CPU training steps to bf16. It pays only on CPUs with native bf16 arithmetic (AVX512_BF16, AMX);
    # elsewhere PyTorch emulates it, many times slower (`mdbd bench --cpu-training` measures both on this CPU). Off
    # by default: scoring always runs in fp32 (mdbd.runs.scoring), and a run's precision enters its identity (when on:
    # fp32 runs keep the hash they had before the field existed).
    cpu_bf16: bool = option("optimisation", False, device="cpu", identity=UNLESS_LEGACY,
                            legacy=(False, "fp32 training steps, the only CPU precision then"))
    channels_last: bool = option("optimisation", True, device="cuda")  # CUDA only
    # torch.compile of the training forward/backward: off | on | auto (on for CUDA, off on CPU, where compiling a
    # run of minutes costs more than it saves and needs a C++ toolchain); validation and checkpoints use the plain model
    compile: str = option("optimisation", "off")
    # None: results/runs/<profile>/<preset>-<dataset>-seed<seed>-<identity hash>
    run_dir: str | None = option("runtime", None)
    # runs trained at once where a stage trains several (03's Table III, 02's reference presets beside its own
    # run): one process each, the CPU threads shared out (on the 2-core development CPU two 1-thread runs did
    # 1.1-1.5x the work of one 2-thread run: docs/training.md). Changes no result beyond the last digits another
    # thread count gives.
    concurrent_runs: int = option("runtime", 1)
    # keep the frozen VGG blocks' outputs for every training batch on disk (data/cache/frozen/) so that the other
    # runs of the same data, seed and settings (the Table III presets) read them instead of computing them again
    # (mdbd.runs.frozen_features). Changes no result: the same tensors (tests/test_train.py).
    cache_frozen_features: bool = option("runtime", False)

    def __post_init__(self) -> None:
        if isinstance(self.synth, dict):
            self.synth = SynthConfig(**self.synth)
        if isinstance(self.ablation, dict):
            self.ablation = AblationConfig(**self.ablation)
        self.ablation.seeds = tuple(self.ablation.seeds)
        if self.ablation.presets is not None:
            self.ablation.presets = tuple(self.ablation.presets)
        if isinstance(self.crop_scale, list):
            self.crop_scale = tuple(self.crop_scale)
        if isinstance(self.compile, bool):  # YAML 1.1 reads a bare on/off as a boolean
            self.compile = "on" if self.compile else "off"
        self.validate()

    def validate(self) -> None:
        """ConfigError for the first setting out of range, checked by kind in this order."""
        self._validate_names()
        self._validate_sizes()
        self._validate_training()
        self._validate_runtime()

    def _validate_names(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose {', '.join(DATASETS[:-1])} or {DATASETS[-1]}")
        if self.polarity not in POLARITIES:
            raise ConfigError(f"polarity must be {' or '.join(POLARITIES)}, got {self.polarity!r}")

    def _validate_sizes(self) -> None:
        for name in ("image_size", "epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must be >= 0 (0: no validation during training), got {self.val_every!r}")
        if self.image_size % 2:
            raise ConfigError(f"image_size must be even, got {self.image_size}")
        for name in ("source_size", "eval_size"):
            value = getattr(self, name)
            if value is not None and (value < 16 or value % 2):
                raise ConfigError(f"{name} must be an even number >= 16 (or null), got {value!r}")

    def _validate_training(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in ("poly", "constant"):
            raise ConfigError(f"lr_schedule must be poly or constant, got {self.lr_schedule!r}")
        if self.attention_scale not in ATTENTION_SCALES:
            raise ConfigError(f"attention_scale must be one of {', '.join(ATTENTION_SCALES)} "
                              f"(none = the paper's eq. 1), got {self.attention_scale!r}")
        if self.spatial_gate not in SPATIAL_GATES:
            raise ConfigError(f"spatial_gate must be one of {', '.join(SPATIAL_GATES)} (sigmoid = the paper's eq. 3), "
                              f"got {self.spatial_gate!r}")
        if not 0 <= self.freeze_backbone_blocks <= 5:
            raise ConfigError(f"freeze_backbone_blocks must be within 0..5, got {self.freeze_backbone_blocks}")

    def _validate_runtime(self) -> None:
        if not isinstance(self.concurrent_runs, int) or self.concurrent_runs < 1:
            raise ConfigError(f"concurrent_runs must be an integer >= 1, got {self.concurrent_runs!r}")
        for name in ("cpu_bf16", "bf16", "channels_last", "augment"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.source_size is not None and self.image_size > self.source_size:
            raise ConfigError(f"image_size {self.image_size} is larger than source_size {self.source_size}: a training "
                              "patch is cut from the source copy, so it cannot be larger than it")
        if not isinstance(self.cache_frozen_features, bool):
            raise ConfigError(f"cache_frozen_features must be true or false, got {self.cache_frozen_features!r}")
        if self.compile not in COMPILE_CHOICES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {self.compile!r}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")

    # -- derived values -------------------------------------------------------------------------
    def resolved_data_root(self) -> Path:
        if self.data_root:
            return resolve(self.data_root)
        if self.dataset == "synthetic":
            return data_dir() / "synthetic" / f"{self.profile}-seed{self.seed}-{synthetic_mask_origin()}masks"
        return data_dir() / self.dataset

    def resolved_source_size(self) -> int:
        return self.source_size or cache_side(self.image_size)

    def resolved_eval_size(self) -> int:
        return self.eval_size or self.image_size

    def resolved_run_dir(self) -> Path:
        """`run_dir`, or the default folder named after the run's identity (mdbd.runs.identity): a configuration that
        trains another model never finds this one's checkpoint there."""
        if self.run_dir:
            return resolve(self.run_dir)
        return default_run_dir(self)

    def compile_enabled(self, device_type: str) -> bool:
        """Whether training compiles its model on a device of this type ("cuda", "cpu"): `compile` resolved."""
        return self.compile == "on" or (self.compile == "auto" and device_type == "cuda")

    def mask_polarity(self) -> str | None:
        """The polarity masks are read with: `polarity` for folder datasets; None (the reader's own convention) for
        synthetic, cuhk and dut, whose polarity is fixed."""
        return self.polarity if self.dataset == "folder" else None

    def dataset_label(self) -> str:
        """The dataset as runs are named: the synthetic benchmark carries its mask origin, since a model trained
        on one variant must never be reused or resumed on the other."""
        if self.dataset == "synthetic" and not self.data_root:
            return f"synthetic-{synthetic_mask_origin()}masks"
        return self.dataset

    def results_label(self) -> str:
        """The folder under results/<profile>/ that this run's tables and figures go to: the dataset label, and for
        a generic folder dataset also the folder's name, so that two datasets never write into one folder."""
        if self.dataset == "folder":
            return f"folder-{self.resolved_data_root().name}"
        return self.dataset_label()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        d["ablation"]["seeds"] = list(self.ablation.seeds)
        if self.ablation.presets is not None:
            d["ablation"]["presets"] = list(self.ablation.presets)
        return d

    def replace(self, **overrides: Any) -> "RunConfig":
        return _apply(self.to_dict(), overrides)

    def section(self, name: str) -> dict[str, Any]:
        """The fields of one section (mdbd.runs.sections.SECTIONS) as `to_dict` writes them, e.g. the model's
        constructor options: `build_model(**cfg.section("model"))`."""
        if name not in SECTIONS:
            raise ConfigError(f"unknown configuration section {name!r}; sections: {', '.join(SECTIONS)}")
        d = self.to_dict()
        return {key: d[key] for key in fields_by_section(self)[name]}


#: Model fields added to RunConfig after checkpoints were first written: the value that reproduces the model those older
#: checkpoints hold, and what it means (declared on each field; mdbd.runs.checkpoint fills them in).
LEGACY_CONFIG_DEFAULTS: dict[str, tuple[Any, str]] = legacy_defaults(RunConfig, "model")


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    merged = dict(base)
    for key, value in overrides.items():
        if value is None and key not in ("device", "data_root", "run_dir"):
            continue
        section, _, sub = key.partition(".")
        if sub and section in ("synth", "ablation"):
            cls = SynthConfig if section == "synth" else AblationConfig
            if sub not in {f.name for f in fields(cls)}:
                raise ConfigError(f"unknown field {key!r}")
            current = merged.get(section, {})
            current = dataclasses.asdict(current) if dataclasses.is_dataclass(current) else dict(current)
            merged[section] = {**current, sub: value}
            continue
        if key not in known:
            raise ConfigError(f"unknown configuration field {key!r}; known fields: {', '.join(sorted(known))}")
        merged[key] = value
    return RunConfig(**merged)


def load_config(profile: str = "smoke", **overrides: Any) -> RunConfig:
    """The profile's YAML, then its `datasets: {<dataset>: {...}}` section for the run's dataset, then `overrides`
    field by field (None leaves a field as the profile has it).

    The per-dataset section is how one profile declares settings that differ between the synthetic benchmark and
    real photographs (e.g. the laptop profile's input size and which VGG blocks train on real CUHK); the resolved
    configuration, not the section, is what runs and what every checkpoint and result records."""
    path = PROFILES_DIR / f"{profile}.yaml"
    if profile not in PROFILES or not path.is_file():
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    base = yaml.safe_load(path.read_text()) or {}
    base["profile"] = profile
    per_dataset = base.pop("datasets", None) or {}
    unknown = sorted(set(per_dataset) - set(DATASETS))
    if unknown:
        raise ConfigError(f"{path}: datasets section names unknown dataset(s) {unknown}; known: {', '.join(DATASETS)}")
    dataset = overrides.get("dataset") or base.get("dataset", "synthetic")
    section = per_dataset.get(dataset) or {}
    if "dataset" in section:
        raise ConfigError(f"{path}: the datasets.{dataset} section cannot set the dataset itself")
    base = _apply(base, section).to_dict() if section else base
    return _apply(base, overrides)


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a value parsed from the command line fits a field's annotation (int for float allowed)."""
    if hint is Any:
        return True
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_override_types(overrides: dict[str, Any]) -> None:
    """ConfigError naming the field, the value and the expected type for any command-line override (`--set`) whose
    value does not fit its RunConfig field (e.g. `epochs=abc`, `lr=abc`); unknown fields are left to load_config."""
    hints = {"": _field_types(RunConfig), "synth": _field_types(SynthConfig), "ablation": _field_types(AblationConfig)}
    for key, value in overrides.items():
        section, _, sub = key.partition(".")
        hint = hints[section].get(sub) if sub and section in hints else hints[""].get(key)
        if hint is None or value is None and key in ("device", "data_root", "run_dir"):
            continue
        if not _type_ok(value, hint):
            shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise ConfigError(f"--set {key}={value!r}: {key} takes a value of type {shown}")


def cli_overrides(items: list[str], named: dict[str, Any]) -> dict[str, Any]:
    """The overrides of a command: its `--set key=value` items (parsed, type-checked) and its named options (`named`,
    field -> value, None when not given). A field given both ways is a ConfigError, even with the same value."""
    overrides = parse_overrides(items)
    check_override_types(overrides)
    twice = sorted(k for k, v in named.items() if v is not None and k in overrides)
    if twice:
        raise ConfigError(f"{twice[0]} given twice (by its own option and by --set {twice[0]}="
                          f"{overrides[twice[0]]}); give each field once")
    return {**overrides, **{k: v for k, v in named.items() if v is not None}}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings from the command line, values parsed as YAML scalars (`epochs=3`, `bf16=false`)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out
