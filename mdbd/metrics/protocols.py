"""The four scoring protocols as ready-made lists of metrics (docs/metrics.md)."""

from __future__ import annotations

from mdbd.errors import ConfigError
from mdbd.metrics.base import BETA2, Metric
from mdbd.metrics.fmeasure import AdaptiveFmeasure, FixedFmeasure, SODFmeasure, ZhaoFmeasure
from mdbd.metrics.mae import MAE

PROTOCOLS = ("sod", "adaptive1.5", "fixed0.5", "zhao")
#: what our tables use unless told otherwise: protocol 1, in-focus positive, maps at the GT's original size
DEFAULT_PROTOCOL = "sod"


def protocol_metrics(protocol: str, positive: str = "infocus", strict_gt: bool = True,
                     beta2: float = BETA2) -> list[Metric]:
    """Fresh metric objects implementing one protocol; step each of them with every image."""
    common = {"positive": positive, "strict_gt": strict_gt}
    if protocol == "sod":
        return [SODFmeasure(beta2=beta2, **common), MAE(normalize="minmax", gt_rule="sod", **common)]
    if protocol == "adaptive1.5":
        return [AdaptiveFmeasure(factor=1.5, beta2=beta2, **common), MAE(normalize="none", **common)]
    if protocol == "fixed0.5":
        return [FixedFmeasure(threshold=0.5, beta2=beta2, **common), MAE(normalize="none", **common)]
    if protocol == "zhao":
        return [ZhaoFmeasure(beta2=beta2, **common), MAE(normalize="max", gt_rule="zhao", resize=True, **common)]
    raise ConfigError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
