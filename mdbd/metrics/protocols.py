"""The scoring protocols as ready-made lists of metrics (docs/metrics.md)."""

from __future__ import annotations

from mdbd.core.errors import ConfigError
from mdbd.metrics.base import BETA2, Metric
from mdbd.metrics.fmeasure import AdaptiveFmeasure, DDFFNetFmeasure, FixedFmeasure, SODFmeasure, ZhaoFmeasure
from mdbd.metrics.inputs import check_positive
from mdbd.metrics.iou import PooledIoU
from mdbd.metrics.mae import MAE
from mdbd.metrics.structure import Emeasure, Smeasure, WeightedFmeasure

PROTOCOLS = ("sod", "adaptive1.5", "fixed0.5", "zhao", "ddffnet", "sod-blur")
#: the protocols whose rules differ (the four of the literature and D-DFFNet's); the others reuse one of them
RULES = ("sod", "adaptive1.5", "fixed0.5", "zhao", "ddffnet")
#: protocols applying another's rules with their own positive class: "sod-blur" is protocol 1 with blur positive,
#: the protocol the audit found behind the MultiANet paper's Table I (docs/metrics.md, "Protocol audit")
PROTOCOL_RULES = {"sod-blur": "sod"}
#: `mdbd evaluate`'s default: protocol 1, in-focus positive, maps at the GT's original size
DEFAULT_PROTOCOL = "sod"
#: protocols that fix the positive class (D-DFFNet's code scores blur); the `positive` argument does not apply to them
FIXED_POSITIVE = {"ddffnet": "blur", "sod-blur": "blur"}
#: protocols that bring predictions to the GT's size themselves (so a size mismatch is not an error for them)
RESIZING_PROTOCOLS = ("zhao", "ddffnet")
#: the rules under which the structure-aware metrics (S-measure, E-measure, weighted F: mdbd.metrics.structure)
#: apply: they are PySODMetrics' metrics, defined on its inputs (map min-max normalised, GT > 128), i.e. protocol 1's
#: rules; the other protocols come from DBD papers that never report them
EXTENDED_RULES = ("sod",)
#: the protocols that carry them when asked for (`extended=True`): "sod" (foreground: the positive class asked for,
#: in focus by default) and "sod-blur" (foreground: the blurred region)
EXTENDED_PROTOCOLS = tuple(p for p in PROTOCOLS if PROTOCOL_RULES.get(p, p) in EXTENDED_RULES)


def protocol_positive(protocol: str, positive: str = "infocus") -> str:
    """The positive class `protocol` is scored with when `positive` is asked for."""
    return FIXED_POSITIVE.get(protocol, check_positive(positive))


def rule_of(protocol: str) -> str:
    """The protocol whose rules `protocol` applies (itself for the five in RULES)."""
    return PROTOCOL_RULES.get(protocol, protocol)


def rule_metrics(protocol: str, positive: str = "infocus", strict_gt: bool = True,
                 beta2: float = BETA2, extended: bool = False) -> list[Metric]:
    """Fresh metric objects applying one protocol's rules with ANY positive class (the protocol audit varies it
    for every protocol, D-DFFNet's included); `protocol_metrics` is what tables use. `extended`: also the
    S-measure, E-measure and weighted F where they apply (EXTENDED_RULES; nothing more under the other rules)."""
    common = {"positive": check_positive(positive), "strict_gt": strict_gt}
    protocol = rule_of(protocol)
    if protocol == "sod":
        extra = [Smeasure(**common), Emeasure(**common), WeightedFmeasure(**common)] if extended else []
        return [SODFmeasure(beta2=beta2, **common), MAE(normalize="minmax", gt_rule="sod", **common), *extra]
    if protocol == "adaptive1.5":
        return [AdaptiveFmeasure(factor=1.5, beta2=beta2, **common), MAE(normalize="none", **common)]
    if protocol == "fixed0.5":
        return [FixedFmeasure(threshold=0.5, beta2=beta2, **common), MAE(normalize="none", **common)]
    if protocol == "zhao":
        return [ZhaoFmeasure(beta2=beta2, **common), MAE(normalize="max", gt_rule="zhao", resize=True, **common)]
    if protocol == "ddffnet":
        return [DDFFNetFmeasure(beta2=beta2, **common), PooledIoU(**common),
                MAE(normalize="none", resize="nearest", **common)]
    raise ConfigError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")


def protocol_metrics(protocol: str, positive: str = "infocus", strict_gt: bool = True,
                     beta2: float = BETA2, extended: bool = False) -> list[Metric]:
    """Fresh metric objects implementing one protocol; step each of them with every image. A protocol in
    FIXED_POSITIVE ("ddffnet", "sod-blur": blur) keeps its own positive class whatever `positive` says.
    `extended`: add the S-measure, E-measure (max, mean, adaptive) and weighted F under EXTENDED_PROTOCOLS
    (opt-in, so that the tables written without it keep their rows)."""
    return rule_metrics(protocol, protocol_positive(protocol, positive), strict_gt, beta2, extended)
