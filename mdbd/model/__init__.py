"""MultiANet and its Table III ablation presets.

    from mdbd.model import build_model, to_probability
    model = build_model("multianet", backbone_weights="oxford")
    prob = to_probability(model(images))  # images: float RGB in [0, 1], (B, 3, H, W)
"""

from mdbd.model.attention import ATTENTION_SCALES, SPATIAL_GATES, ChannelAttention, SpatialAttention
from mdbd.model.backbone import VGG16Backbone
from mdbd.model.multianet import (
    PRESETS,
    MultiANet,
    ModelSpec,
    UpsampleConcatConv,
    build_model,
    count_parameters,
    get_spec,
    to_probability,
)

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
