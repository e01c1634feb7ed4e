"""Ignite/MONAI handlers used by the bundle: gate freezing (paper recipe), atomic checkpoints, resumption, and the lock
and backup of a training run's folders."""

from __future__ import annotations

from medt_monai.handlers.checkpoint import AtomicCheckpointSaver, CheckpointLoader, ResumeCheckpointLoader
from medt_monai.handlers.checkpoint_guard import CheckpointGuard
from medt_monai.handlers.gate_freeze import GateFreezeHandler

__all__ = ["AtomicCheckpointSaver", "CheckpointGuard", "CheckpointLoader", "GateFreezeHandler", "ResumeCheckpointLoader"]
