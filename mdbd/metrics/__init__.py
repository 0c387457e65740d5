"""F-measure, MAE and IoU (and, on request, S-measure, E-measure and weighted F) for defocus blur detection under the
protocols of the literature (docs/metrics.md).

    from mdbd.metrics import protocol_metrics, bootstrap_ci
    metrics = protocol_metrics("sod")            # SODFmeasure + MAE, PySODMetrics-equal
    for pred, gt in pairs:                       # pred: in-focus probability, gt: 1 = in focus
        for m in metrics:
            m.step(pred, gt, id=name)
    metrics[0].get_results()["max_f"], bootstrap_ci(metrics)["max_f"]
"""

from mdbd.metrics.base import BETA2, Metric, fmeasure
from mdbd.metrics.benchmark import benchmark_against_pysodmetrics
from mdbd.metrics.bootstrap import bootstrap_ci, bootstrap_distribution, paired_difference, resample_weights
from mdbd.metrics.fmeasure import AdaptiveFmeasure, DDFFNetFmeasure, FixedFmeasure, SODFmeasure, ZhaoFmeasure
from mdbd.metrics.inputs import POSITIVE_CLASSES, MetricInputError, validate_pair
from mdbd.metrics.iou import PooledIoU
from mdbd.metrics.mae import MAE
from mdbd.metrics.protocols import (DEFAULT_PROTOCOL, EXTENDED_PROTOCOLS, FIXED_POSITIVE, PROTOCOLS,
                                    RESIZING_PROTOCOLS, RULES, protocol_metrics, protocol_positive, rule_metrics,
                                    rule_of)
from mdbd.metrics.structure import Emeasure, Smeasure, WeightedFmeasure

__all__ = [
    "BETA2", "DEFAULT_PROTOCOL", "EXTENDED_PROTOCOLS", "Emeasure", "FIXED_POSITIVE", "Smeasure", "WeightedFmeasure",
    "MAE", "POSITIVE_CLASSES", "PROTOCOLS", "RESIZING_PROTOCOLS", "RULES",
    "AdaptiveFmeasure", "DDFFNetFmeasure", "FixedFmeasure", "Metric", "MetricInputError", "PooledIoU", "SODFmeasure",
    "ZhaoFmeasure", "benchmark_against_pysodmetrics", "bootstrap_ci", "bootstrap_distribution", "fmeasure",
    "paired_difference", "protocol_metrics", "protocol_positive", "resample_weights", "rule_metrics", "rule_of",
    "validate_pair",
]
