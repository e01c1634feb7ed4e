"""Ignite/MONAI handlers used by the bundle: gate freezing (paper recipe), atomic checkpoints and resumption, and the
end-of-run summary of evaluation and inference."""

from __future__ import annotations

from medt_monai.handlers.checkpoint import AtomicCheckpointSaver, ResumeCheckpointLoader
from medt_monai.handlers.gate_freeze import GateFreezeHandler
from medt_monai.handlers.summary import RunSummaryHandler

__all__ = ["AtomicCheckpointSaver", "GateFreezeHandler", "ResumeCheckpointLoader", "RunSummaryHandler"]
