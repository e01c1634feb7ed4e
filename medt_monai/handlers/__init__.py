"""Ignite/MONAI handlers used by the bundle: gate freezing (paper recipe), atomic checkpoints and resumption."""

from __future__ import annotations

from medt_monai.handlers.checkpoint import AtomicCheckpointSaver, ResumeCheckpointLoader
from medt_monai.handlers.gate_freeze import GateFreezeHandler

__all__ = ["AtomicCheckpointSaver", "GateFreezeHandler", "ResumeCheckpointLoader"]
