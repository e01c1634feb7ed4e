"""Ignite handlers of the object-level metrics of :mod:`medt_monai.metrics`, used like MONAI's ``MeanDice``."""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from medt_monai.metrics import (
    AggregatedJaccardIndexMetric,
    ObjectDiceMetric,
    ObjectF1Metric,
    ObjectHausdorffDistanceMetric,
    ObjectMetric,
    ObjectPanopticQualityMetric,
    PooledObjectF1Metric,
)

__all__ = [
    "ObjectF1",
    "PooledObjectF1",
    "ObjectDice",
    "ObjectHausdorffDistance",
    "AggregatedJaccardIndex",
    "ObjectPanopticQuality",
]


class _ObjectMetricHandler(IgniteMetricHandler):
    """An :class:`~medt_monai.metrics.ObjectMetric` as an ignite metric (mean over images, per-image details kept).

    Args:
        connectivity: neighbourhood of a predicted object (connected component of the prediction's foreground):
            1 = faces only (4-neighbourhood in 2D) up to the number of spatial dims (8-neighbourhood in 2D, the
            default None).
        min_size: predicted components smaller than this many pixels are dropped; 0 (default) keeps all.
        reduction: MONAI reduction of the per-image scores (NaN skipped), default ``"mean"``.
        pred_instances: the prediction is an instance map whose ids are the objects (see
            :class:`~medt_monai.metrics.ObjectMetric`).
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``: the binarised prediction
            (batch-first ``(B, C, *spatial)`` or a list of ``(C, *spatial)``) and the ground-truth instance maps
            (``(B, 1, *spatial)`` or a list of ``(1, *spatial)``), e.g. ``from_engine(["pred", "instance"])``.
        save_details: keep the per-image scores in ``engine.state.metric_details[name]`` (for ``MetricsSaver``).
    """

    metric_class: type[ObjectMetric]

    def __init__(
        self,
        connectivity: int | None = None,
        min_size: int = 0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        pred_instances: bool = False,
    ) -> None:
        metric_fn = self.metric_class(
            connectivity=connectivity, min_size=min_size, reduction=reduction, pred_instances=pred_instances
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class ObjectF1(_ObjectMetricHandler):
    """GlaS object-level F1 (:class:`medt_monai.metrics.ObjectF1Metric`), averaged over images.

    Arguments as the base class: ``connectivity``, ``min_size``, ``reduction``, ``output_transform``,
    ``save_details``.
    """

    metric_class = ObjectF1Metric


class ObjectDice(_ObjectMetricHandler):
    """GlaS object-level Dice (:class:`medt_monai.metrics.ObjectDiceMetric`), averaged over images.

    Arguments as :class:`ObjectF1`.
    """

    metric_class = ObjectDiceMetric


class ObjectHausdorffDistance(_ObjectMetricHandler):
    """GlaS object-level Hausdorff distance in pixels (:class:`medt_monai.metrics.ObjectHausdorffDistanceMetric`),
    averaged over the images that have one (NaN where only one of prediction and ground truth has objects).

    Arguments as :class:`ObjectF1`.
    """

    metric_class = ObjectHausdorffDistanceMetric


class AggregatedJaccardIndex(_ObjectMetricHandler):
    """Aggregated Jaccard index (:class:`medt_monai.metrics.AggregatedJaccardIndexMetric`), averaged over images.

    Arguments as :class:`ObjectF1`.
    """

    metric_class = AggregatedJaccardIndexMetric


class ObjectPanopticQuality(_ObjectMetricHandler):
    """Panoptic quality of the objects (:class:`medt_monai.metrics.ObjectPanopticQualityMetric`), averaged over images.

    Arguments as :class:`ObjectF1`.
    """

    metric_class = ObjectPanopticQualityMetric


class PooledObjectF1(_ObjectMetricHandler):
    """GlaS object F1 pooled over the images (:class:`medt_monai.metrics.PooledObjectF1Metric`): the challenge's score
    of a test part. Its per-image details are the detection counts ``(TP, FP, FN)``;
    :class:`~medt_monai.handlers.GroupedMetricsSaver` pools them per group with
    :func:`medt_monai.metrics.pooled_object_f1`. Arguments as the base class.
    """

    metric_class = PooledObjectF1Metric
