"""One log line at the end of an evaluation or inference run: how many images, how long, and the metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from numbers import Number
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["RunSummaryHandler"]


def _batch_size(output: Any) -> int:
    """Images in one iteration's output: MONAI engines decollate it into a list of per-image dicts; without
    decollation it is a dict of batched tensors."""
    if isinstance(output, Sequence) and not isinstance(output, str):
        return len(output)
    if isinstance(output, Mapping):
        for value in output.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                return value.shape[0]
    return 1


class RunSummaryHandler:
    """Log ``"<n> images in <t> s (<t/n> s per image); <metric> <value>, ..."`` when the engine's run completes.

    The count is that of the images the engine processed (its per-iteration outputs), the time is ignite's run time
    (``engine.state.times["COMPLETED"]``), and the metrics are the engine's scalar ``state.metrics`` (none for
    inference).

    Args:
        name: identifier of the logger ``logging.getLogger(name)``; ``None`` uses the engine's logger.
    """

    def __init__(self, name: str | None = None) -> None:
        self.logger = logging.getLogger(name) if name is not None else None
        self.images = 0

    def attach(self, engine: Engine) -> None:
        """Count images on ``Events.ITERATION_COMPLETED`` and log the summary on ``Events.COMPLETED`` of ``engine``."""
        from ignite.engine import Events

        if self.logger is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._count)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.images = 0

    def _count(self, engine: Engine) -> None:
        self.images += _batch_size(engine.state.output)

    def __call__(self, engine: Engine) -> None:
        """Log the summary line of the run that just completed."""
        seconds = engine.state.times["COMPLETED"] or 0.0
        line = f"{self.images} images in {seconds:.1f} s ({seconds / max(self.images, 1):.2f} s per image)"
        metrics = [f"{k} {float(v):.4f}" for k, v in engine.state.metrics.items() if isinstance(v, Number)]
        self.logger.info(line + ("; " + ", ".join(metrics) if metrics else ""))
