"""Freeze, unfreeze and read the gates of Eq. 3 in any network of the family.

The paper trains no gates during the first 10 epochs; :func:`set_gates_trainable` (or the bundle's
``medt_monai.handlers.GateFreezeHandler``) does that. A frozen gate has ``requires_grad=False``, so it receives no
gradient and optimizers such as Adam leave it (and its weight decay) alone.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from medt_monai.networks.blocks.axial_attention import AxialAttention

__all__ = ["set_gates_trainable", "gate_values"]


def set_gates_trainable(network: nn.Module, trainable: bool) -> int:
    """Set ``requires_grad`` of every gate ``G_Q, G_K, G_V1, G_V2`` in ``network``; returns how many gates were set."""
    count = 0
    for module in network.modules():
        if isinstance(module, AxialAttention):
            for gate in module.gates():
                gate.requires_grad_(trainable)
                count += 1
    return count


def gate_values(network: nn.Module) -> dict[str, torch.Tensor]:
    """Map each gated attention layer's qualified name to its gates ``[G_Q, G_K, G_V1, G_V2]`` (a detached tensor)."""
    return {
        name: torch.stack([gate.detach() for gate in module.gates()])
        for name, module in network.named_modules()
        if isinstance(module, AxialAttention) and module.gated
    }
