"""Recompute the BatchNorm running statistics from the current weights before a validation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["BatchNormRecalibration"]


class BatchNormRecalibration:
    """Before each validation, recompute every BatchNorm's running statistics with the weights as they are now.

    Eval mode normalises with running averages collected over the last few hundred steps (momentum 0.1), i.e. with
    statistics of earlier weights. For a network whose activations move fast under training, such as MedT's
    batch-normalised attention logits at a high learning rate, eval-mode scores then swing from epoch to epoch while the
    training loss falls smoothly (``docs/recipes.md``, "Diagnosis"). This handler replaces the running statistics by
    the exact averages over one pass of ``loader`` in training mode, without gradients
    (:func:`torch.optim.swa_utils.update_bn`, which restores the momenta and the network's mode afterwards), so the
    validation and the checkpoint it selects use statistics of the weights being scored.

    Attach it to the trainer before the ``ValidationHandler`` (both run on ``EPOCH_COMPLETED``, in the order attached).
    It costs one forward pass over ``loader`` per validation.

    Args:
        network: the network being trained (a ``DistributedDataParallel`` wrapper is unwrapped).
        loader: batches (dicts) to compute the statistics on, e.g. the training data loader.
        image_key: key of the network input in a batch. Defaults to ``"image"``.
        interval: recalibrate every ``interval`` epochs; give the ``ValidationHandler``'s interval. Defaults to 1.
        device: where the network runs; the batches are moved there. Defaults to the network's first parameter's device.
        enabled: ``False`` makes :meth:`attach` do nothing (the bundle's ``--bn_recalibration`` switch).

    Raises:
        ValueError: when ``interval < 1``.
    """

    def __init__(
        self,
        network: nn.Module,
        loader: Iterable,
        image_key: str = "image",
        interval: int = 1,
        device: torch.device | str | None = None,
        enabled: bool = True,
    ) -> None:
        if int(interval) < 1:
            raise ValueError(f"BatchNormRecalibration: interval must be >= 1, got {interval}.")
        self.network = network.module if hasattr(network, "module") else network
        self.loader = loader
        self.image_key = image_key
        self.interval = int(interval)
        self.device = device
        self.enabled = enabled

    def attach(self, engine: Engine) -> None:
        """Register the handler on every ``interval``-th ``Events.EPOCH_COMPLETED`` of ``engine`` (the trainer)."""
        from ignite.engine import Events

        if self.enabled:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def _images(self) -> Iterator[torch.Tensor]:
        for batch in self.loader:
            yield batch[self.image_key]

    def __call__(self, engine: Engine | None = None) -> None:
        """Recompute the running statistics over one pass of the loader."""
        device = self.device
        if device is None:
            device = next(self.network.parameters()).device
        with torch.no_grad():
            update_bn(self._images(), self.network, device=device)
