"""Convolution + BatchNorm (+ ReLU) whose BatchNorm is folded into the convolution in eval mode."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medt_monai.networks.blocks.axial_attention import _norm_affine

__all__ = ["ConvNorm"]


class ConvNorm(nn.Sequential):
    """``Conv2d -> BatchNorm2d [-> ReLU]``, as an ``nn.Sequential`` (state-dict keys ``0.weight``, ``1.running_mean``...).

    In training mode it is exactly that sequence. In eval mode BatchNorm is the per-channel affine ``y = s x + t`` with
    its running statistics, so it is folded into the convolution: one ``conv2d`` with weight ``s W`` and bias
    ``s b + t`` and no separate pass over the activations (outputs equal to float round-off).

    Args:
        conv: the convolution.
        norm: the BatchNorm over the convolution's output channels.
        relu: append an in-place ReLU. Defaults to False.
    """

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d, relu: bool = False) -> None:
        super().__init__(conv, norm, *([nn.ReLU(inplace=True)] if relu else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``."""
        conv, norm = self[0], self[1]
        if norm.training:
            return super().forward(x)
        scale, shift = _norm_affine(norm)
        bias = shift if conv.bias is None else torch.addcmul(shift, conv.bias, scale)
        out = F.conv2d(x, conv.weight * scale[:, None, None, None], bias, conv.stride, conv.padding, conv.dilation,
                       conv.groups)
        return F.relu(out, inplace=True) if len(self) > 2 else out
