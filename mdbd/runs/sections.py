"""The sections of a run's configuration: each RunConfig field declares, on itself, which part of a run it belongs to
and how it enters the run's identity, in one declaration: adding a field (a model option: its name in mdbd.model.spec
and one field) touches no other module for its section, its identity rule or its legacy value.

    epochs: int = option("optimisation", 2)
    spatial_gate: str = option("model", "centred", legacy=("sigmoid", "..."), identity=UNLESS_LEGACY, modules={"SA"})

    cfg.section("model")         # {"preset": ..., "backbone_weights": ..., "attention_scale": ..., "spatial_gate": ...}
    build_model(**cfg.section("model"))

The sections (SECTIONS): run, data, model, optimisation, augmentation, ablation, runtime. A run's identity
(mdbd.runs.identity) is every field of the IDENTITY_SECTIONS, each as its declaration says, plus the entries derived
from the environment (device type, data folder, versions). `runtime` (where and how a run executes and writes) and
`ablation` (which runs the ablation stage trains, not what one run is) never enter it.

How a field of an identity section enters (`identity=`):
- VALUE (the default): its value;
- UNLESS_LEGACY: its value, except at its legacy value (`legacy=`), which every run had before the field existed,
  so that those runs keep their identity;
- DERIVED: not itself; mdbd.runs.identity enters what it stands for (data_root: the resolved data folder; polarity: the
  polarity masks are actually read with).
and only where it acts: `modules=` (a preset with none of these Table III modules leaves it out), `device=` (only on
runs of that device type), `dataset=` (only for that dataset).

`legacy=(value, meaning)`: the value a record written before the field existed implies; mdbd.runs.checkpoint gives it to
an older checkpoint's model-section fields (with a warning) so that it loads as the model it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

#: name -> what the section holds, in the order the documentation lists them
SECTIONS: dict[str, str] = {
    "run": "which run this is: the profile its settings come from and its seed",
    "data": "the dataset, its folder and polarity, the sizes images are trained and predicted at, the synthetic "
            "benchmark's sizes",
    "model": "the model's constructor options: build_model(**cfg.section('model'))",
    "optimisation": "the loss's optimisation: epochs, batch, Adam, the lr schedule, the frozen VGG blocks, and how the "
                    "training steps compute (precision, memory layout, compilation)",
    "augmentation": "the training images' random flip, crop, resize and rotation",
    "ablation": "the ablation stage's plan: which presets and seeds it trains, for how many epochs (which runs "
                "exist, not what one run is)",
    "runtime": "where and how a run executes and writes: device, workers, validation and checkpoint cadence, run "
               "folder, concurrency, the frozen-feature cache; never what it trains to",
}
#: the sections whose fields enter a run's identity
IDENTITY_SECTIONS = tuple(s for s in SECTIONS if s not in ("ablation", "runtime"))

VALUE, UNLESS_LEGACY, DERIVED = "value", "unless_legacy", "derived"
_IDENTITY_RULES = (VALUE, UNLESS_LEGACY, DERIVED)
_DEVICE_TYPES = ("cpu", "cuda")


def option(section: str, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           legacy: tuple[Any, str] | None = None, identity: str = VALUE, modules: Iterable[str] | None = None,
           device: str | None = None, dataset: str | None = None) -> Any:
    """A RunConfig field of `section`, with its identity rule in its metadata (the module docstring)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; sections: {', '.join(SECTIONS)}")
    if identity not in _IDENTITY_RULES:
        raise ValueError(f"identity must be one of {', '.join(_IDENTITY_RULES)}, got {identity!r}")
    if identity == UNLESS_LEGACY and legacy is None:
        raise ValueError("identity=UNLESS_LEGACY needs the legacy value (legacy=(value, meaning))")
    if device is not None and device not in _DEVICE_TYPES:
        raise ValueError(f"device must be one of {', '.join(_DEVICE_TYPES)}, got {device!r}")
    metadata: dict[str, Any] = {"section": section, "identity": identity}
    if legacy is not None:
        metadata["legacy"] = tuple(legacy)
    if modules is not None:
        metadata["modules"] = frozenset(modules)
    if device is not None:
        metadata["device"] = device
    if dataset is not None:
        metadata["dataset"] = dataset
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def section_of(f: dataclasses.Field) -> str:
    """The section a dataclass field declares (KeyError for a field declared without `option`)."""
    return f.metadata["section"]


def fields_by_section(cls_or_instance: Any) -> dict[str, tuple[str, ...]]:
    """section -> the names of its fields, in declaration order (every section, empty ones included)."""
    out: dict[str, list[str]] = {name: [] for name in SECTIONS}
    for f in dataclasses.fields(cls_or_instance):
        out[section_of(f)].append(f.name)
    return {name: tuple(names) for name, names in out.items()}


def legacy_defaults(cls_or_instance: Any, section: str | None = None) -> dict[str, tuple[Any, str]]:
    """field -> (legacy value, meaning) of the fields declaring one (of `section` only, when given)."""
    return {f.name: f.metadata["legacy"] for f in dataclasses.fields(cls_or_instance)
            if "legacy" in f.metadata and (section is None or section_of(f) == section)}
