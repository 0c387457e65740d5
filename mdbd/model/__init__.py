"""MultiANet and its Table III ablation presets.

    from mdbd.model import build_model, to_probability
    model = build_model("multianet", backbone_weights="oxford")
    prob = to_probability(model(images))  # images: float RGB in [0, 1], (B, 3, H, W)

Importing the package stays torch-free: the option names and presets come from mdbd.model.spec, the torch modules
are loaded on first use of one of their names (as mdbd.data does), so that mdbd.runs.config can import mdbd.model.spec.
"""

from mdbd.model.spec import ATTENTION_SCALES, PRESETS, SPATIAL_GATES, ModelSpec, get_spec

__all__ = [
    "ATTENTION_SCALES",
    "SPATIAL_GATES",
    "PRESETS",
    "ChannelAttention",
    "ModelSpec",
    "MultiANet",
    "SpatialAttention",
    "UpsampleConcatConv",
    "VGG16Backbone",
    "build_model",
    "count_parameters",
    "get_spec",
    "to_probability",
]


def __getattr__(name: str):
    if name in ("ChannelAttention", "SpatialAttention"):
        from mdbd.model import attention  # lazy: torch, only once a model name is asked for

        return getattr(attention, name)
    if name == "VGG16Backbone":
        from mdbd.model import backbone  # lazy: torch

        return backbone.VGG16Backbone
    if name in ("MultiANet", "UpsampleConcatConv", "build_model", "count_parameters", "to_probability"):
        from mdbd.model import multianet  # lazy: torch

        return getattr(multianet, name)
    raise AttributeError(f"module 'mdbd.model' has no attribute {name!r}")
