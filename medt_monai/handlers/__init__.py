"""Ignite/MONAI handlers used by the bundle: gate freezing (paper recipe), atomic checkpoints, resumption, the lock
and backup of a training run's folders, and the end-of-run summary of evaluation and inference."""

from __future__ import annotations

from medt_monai.handlers.checkpoint import AtomicCheckpointSaver, CheckpointLoader, ResumeCheckpointLoader
from medt_monai.handlers.checkpoint_guard import CheckpointGuard
from medt_monai.handlers.gate_freeze import GateFreezeHandler
from medt_monai.handlers.summary import RunSummaryHandler

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointGuard",
    "CheckpointLoader",
    "GateFreezeHandler",
    "ResumeCheckpointLoader",
    "RunSummaryHandler",
]
