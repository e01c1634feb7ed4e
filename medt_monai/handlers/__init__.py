"""Ignite/MONAI handlers used by the bundle: gate freezing (paper recipe), BatchNorm recalibration before validation, atomic checkpoints, resumption, the lock
and backup of a training run's folders, the end-of-run summary of evaluation and inference, object-level metrics
(GlaS / MoNuSeg), a metrics saver with per-group means, and the GeoJSON writer of slide inference."""

from __future__ import annotations

from medt_monai.handlers.checkpoint import AtomicCheckpointSaver, CheckpointLoader, ResumeCheckpointLoader
from medt_monai.handlers.gate_freeze import GateFreezeHandler
from medt_monai.handlers.metrics_saver import GroupedMetricsSaver
from medt_monai.handlers.object_metrics import (
    AggregatedJaccardIndex,
    ObjectDice,
    ObjectF1,
    ObjectHausdorffDistance,
    ObjectPanopticQuality,
    PooledObjectF1,
)
from medt_monai.handlers.slide_objects import SlideObjectsWriter
from medt_monai.handlers.summary import RunSummaryHandler

__all__ = [
    "AggregatedJaccardIndex",
    "AtomicCheckpointSaver",
    "CheckpointLoader",
    "GateFreezeHandler",
    "GroupedMetricsSaver",
    "ObjectDice",
    "ObjectF1",
    "ObjectHausdorffDistance",
    "ObjectPanopticQuality",
    "PooledObjectF1",
    "ResumeCheckpointLoader",
    "RunSummaryHandler",
    "SlideObjectsWriter",
]
