"""Run-time switches for speed and memory that do not change the networks' mathematics or parameters."""

from __future__ import annotations

import torch.nn as nn

from medt_monai.networks.blocks.axial_attention import AxialAttention

__all__ = ["set_memory_lean"]


def set_memory_lean(network: nn.Module, max_lines: int | None = 256) -> int:
    """Let every :class:`~medt_monai.networks.blocks.AxialAttention` in ``network`` attend at most ``max_lines`` rows
    or columns at a time, so the ``(lines, heads, L, L)`` logits of large images never exist all at once (useful on
    GPUs, which otherwise attend all lines together); ``None`` restores the default (cache-sized chunks on CPU).
    Outputs, gradients and BatchNorm statistics are unchanged: the lines are independent once the logits' BatchNorm
    statistics are known, and those are computed in closed form before the chunks.

    Returns:
        the number of attention layers set.
    """
    count = 0
    for module in network.modules():
        if isinstance(module, AxialAttention):
            module.max_lines = max_lines
            count += 1
    return count
