"""Ignite/MONAI handlers used by the bundle: gate freezing (paper recipe), atomic checkpoints and resumption,
object-level metrics (GlaS / MoNuSeg) and a metrics saver with per-group means."""

from __future__ import annotations

from medt_monai.handlers.checkpoint import AtomicCheckpointSaver, ResumeCheckpointLoader
from medt_monai.handlers.gate_freeze import GateFreezeHandler
from medt_monai.handlers.metrics_saver import GroupedMetricsSaver
from medt_monai.handlers.object_metrics import (
    AggregatedJaccardIndex,
    ObjectDice,
    ObjectF1,
    ObjectHausdorffDistance,
    ObjectPanopticQuality,
)

__all__ = [
    "AggregatedJaccardIndex",
    "AtomicCheckpointSaver",
    "GateFreezeHandler",
    "GroupedMetricsSaver",
    "ObjectDice",
    "ObjectF1",
    "ObjectHausdorffDistance",
    "ObjectPanopticQuality",
    "ResumeCheckpointLoader",
]
