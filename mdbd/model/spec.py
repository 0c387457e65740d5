"""What a model is, without torch: the option names and their defaults, and the Table III presets. `mdbd.runs.config`
checks a run's configuration against these and `mdbd.model` builds from them, so a configuration is checked, and a
run's identity computed, without importing the model (or torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdbd.core.errors import ConfigError

# Scales of the channel-attention energies (their forms: mdbd.model.attention)
ATTENTION_SCALES = ("none", "n", "sqrt_n", "cosine")
# The default, chosen from evidence (the measured numbers: docs/model.md, row "attention_scale", and the tables it
# names): cosine is the only form whose attention rows are neither one-hot nor uniform on real CUHK features, it
# passes more gradient through the softmax than the literal eq. 1, and it scores as well as every other form on
# held-out real images. "none" stays available as the paper's eq. 1.
DEFAULT_ATTENTION_SCALE = "cosine"
# How spatial attention (eq. 3) turns its logits into the gate Z (the forms: mdbd.model.attention.SpatialAttention).
# "sigmoid" is eq. 3 literally; "centred" subtracts each image's spatial mean from the logits first.
SPATIAL_GATES = ("sigmoid", "centred")
# The default, chosen from evidence (the measured numbers: docs/model.md, row "spatial_gate", and the tables it
# names): with "sigmoid" the chain's trained models saturate the gate open (Z near 1 on nearly every pixel: the
# logits' uniform part comes from conv2's weights on post-ReLU inputs), so SA passes the low-level features through;
# "centred" cannot move its uniform level, can separate in-focus from blurred regions on held-out CUHK, and scores as
# well on held-out real images.
DEFAULT_SPATIAL_GATE = "centred"
# The values older checkpoints (and runs) were trained with, before an option existed, are declared on the option's
# RunConfig field (mdbd.runs.config: `legacy=`), with its section and how it enters a run's identity
# (mdbd.runs.sections).
# What the paper's own form of each option is called, for the error that names the choices
PAPER_FORMS = {"attention_scale": "none = eq. 1 as the paper writes it",
               "spatial_gate": "sigmoid = eq. 3 as the paper writes it"}


@dataclass(frozen=True)
class ModelSpec:
    """One row of Table III: our preset name, the paper's label, its modules and the constructor switches."""

    name: str
    table_label: str
    modules: tuple[str, ...]
    switches: dict[str, bool] = field(default_factory=dict)


def _spec(name: str, label: str, modules: tuple[str, ...]) -> ModelSpec:
    switches = {
        "low_level": "LL" in modules,
        "hca": "HCA" in modules,
        "lca": "LCA" in modules,
        "spatial_attention": "SA" in modules,
    }
    return ModelSpec(name, label, modules, switches)


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("hl", "VGG HL (Baseline)", ("HL",)),
        _spec("hl_ll", "VGG HL+LL", ("HL", "LL")),
        _spec("hl_ll_hca", "VGG+HL+LL+HCA", ("HL", "LL", "HCA")),
        _spec("hl_ll_hca_sa", "VGG+HL+LL+HCA+SA", ("HL", "LL", "HCA", "SA")),
        _spec("hl_ll_hca_lca", "VGG+HL+LL+HCA+LCA", ("HL", "LL", "HCA", "LCA")),
        _spec("hl_ll_lca_sa", "VGG+HL+LL+LCA+SA", ("HL", "LL", "LCA", "SA")),
        _spec("multianet", "VGG+HL+LL+HCA+LCA+SA", ("HL", "LL", "HCA", "LCA", "SA")),
    )
}
SWITCHES = ("low_level", "hca", "lca", "spatial_attention")


def get_spec(preset: str) -> ModelSpec:
    """The preset's spec; an unknown name is a ConfigError listing the valid ones."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def spec_for_switches(switches: dict[str, bool]) -> ModelSpec:
    """The preset whose switches match exactly, else a spec named "custom"."""
    for spec in PRESETS.values():
        if spec.switches == switches:
            return spec
    modules = ("HL",) + tuple(tag for tag, key in (("LL", "low_level"), ("HCA", "hca"), ("LCA", "lca"),
                                                   ("SA", "spatial_attention")) if switches[key])
    return ModelSpec("custom", "custom: " + "+".join(modules), modules, dict(switches))


def has_module(preset: str, tags: set[str]) -> bool:
    """Whether the preset holds any of the Table III modules `tags` (an unknown preset: assume it does)."""
    spec = PRESETS.get(preset)
    return spec is None or bool(tags & set(spec.modules))


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    """`value` when it is one of `choices`, else a ConfigError naming the option, the value, the choices and, for a
    model option, which one is the paper's form (PAPER_FORMS)."""
    if value not in choices:
        note = f" ({PAPER_FORMS[option]})" if option in PAPER_FORMS else ""
        raise ConfigError(f"unknown {option} {value!r}; choose one of {', '.join(choices)}{note}")
    return value
