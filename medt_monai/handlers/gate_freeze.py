"""Keep the gates of Eq. 3 frozen for the first epochs of training, as the paper does."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch.nn as nn

from medt_monai.networks.gates import set_gates_trainable

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["GateFreezeHandler"]


class GateFreezeHandler:
    """Freeze every gate (``G_Q, G_K, G_V1, G_V2``) for the first ``frozen_epochs`` epochs, then train them.

    The paper (Valanarasu et al., MICCAI 2021, Sec. 4) trains no gates during the first 10 epochs. The handler sets
    ``requires_grad`` of all gates at the start of every epoch from the trainer's epoch counter, so a run resumed from
    a checkpoint (which restores ``engine.state.epoch``) gets the right state without saving anything extra. A frozen
    gate gets no gradient, so Adam leaves it (and its weight decay) untouched.

    Networks without gates (U-Nets, ``LoGo``, ``AxialUNet``) are accepted; the handler then does nothing.

    Args:
        network: the network being trained (a ``DistributedDataParallel`` wrapper is unwrapped).
        frozen_epochs: number of epochs, counted from 1, during which the gates are frozen; gates train from epoch
            ``frozen_epochs + 1``. ``0`` trains the gates from the start.
        name: identifier of the logger ``logging.getLogger(name)``; ``None`` uses the trainer's logger.

    Raises:
        ValueError: when ``frozen_epochs`` is negative.
    """

    def __init__(self, network: nn.Module, frozen_epochs: int = 10, name: str | None = None) -> None:
        if int(frozen_epochs) < 0:
            raise ValueError(f"GateFreezeHandler: frozen_epochs must be >= 0, got {frozen_epochs}.")
        self.network = network.module if hasattr(network, "module") else network
        self.frozen_epochs = int(frozen_epochs)
        self.logger = logging.getLogger(name) if name is not None else None
        self._frozen: bool | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``Events.EPOCH_STARTED`` of ``engine``.

        Args:
            engine: the trainer.
        """
        from ignite.engine import Events

        if self.logger is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Set the gates' ``requires_grad`` for the epoch that is starting (``engine.state.epoch``, 1-based)."""
        frozen = engine.state.epoch <= self.frozen_epochs
        if frozen == self._frozen:
            return
        count = set_gates_trainable(self.network, not frozen)
        self._frozen = frozen
        if count and self.logger is not None:
            state = f"frozen until the end of epoch {self.frozen_epochs}" if frozen else "trainable"
            self.logger.info(f"GateFreezeHandler: epoch {engine.state.epoch}: {count} gates {state}.")
