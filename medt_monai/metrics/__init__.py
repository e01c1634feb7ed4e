"""Object-level metrics of the GlaS and MoNuSeg challenges (object F1, object Dice, object Hausdorff, AJI, PQ)."""

from __future__ import annotations

from medt_monai.metrics.instances import ObjectOverlap
from medt_monai.metrics.object_metrics import (
    AggregatedJaccardIndexMetric,
    ObjectDiceMetric,
    ObjectF1Metric,
    ObjectHausdorffDistanceMetric,
    ObjectMetric,
    ObjectPanopticQualityMetric,
    PooledObjectF1Metric,
    compute_aggregated_jaccard_index,
    compute_object_detection_counts,
    compute_object_dice,
    compute_object_f1,
    compute_object_hausdorff_distance,
    compute_object_panoptic_quality,
    pooled_object_f1,
)
from medt_monai.utils.objects import label_objects

__all__ = [
    "AggregatedJaccardIndexMetric",
    "ObjectDiceMetric",
    "ObjectF1Metric",
    "ObjectHausdorffDistanceMetric",
    "ObjectMetric",
    "ObjectOverlap",
    "ObjectPanopticQualityMetric",
    "PooledObjectF1Metric",
    "compute_object_detection_counts",
    "pooled_object_f1",
    "compute_aggregated_jaccard_index",
    "compute_object_dice",
    "compute_object_f1",
    "compute_object_hausdorff_distance",
    "compute_object_panoptic_quality",
    "label_objects",
]
