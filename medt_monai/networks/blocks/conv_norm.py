"""Convolution + BatchNorm (+ ReLU) whose BatchNorm is folded into the convolution in eval mode."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from medt_monai.networks.layers.batch_norm import batch_norm_affine

__all__ = ["ConvNorm"]


class ConvNorm(nn.Sequential):
    """``Conv2d -> BatchNorm2d [-> ReLU]``, as an ``nn.Sequential`` (state-dict keys ``0.weight``, ``1.running_mean``...).

    In training mode it is exactly that sequence. In eval mode BatchNorm is the per-channel affine ``y = s x + t`` with
    its running statistics, so it is folded into the convolution: one convolution with weight ``s W`` and bias
    ``s b + t`` and no separate pass over the activations (outputs equal to float round-off).

    Args:
        conv: the convolution.
        norm: the BatchNorm over the convolution's output channels.
        relu: append an in-place ReLU. Defaults to False.
    """

    __constants__ = ("relu",)

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d, relu: bool = False) -> None:
        super().__init__(conv, norm, *([nn.ReLU(inplace=True)] if relu else []))
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``."""
        conv = self[0]
        norm = self[1]
        if norm.training:
            out = norm(conv(x))
        else:
            scale, shift = batch_norm_affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps)
            bias = conv.bias
            bias = shift if bias is None else torch.addcmul(shift, bias, scale)
            # the convolution's own forward (its stride, padding, padding mode...) with the folded weight and bias
            out = conv._conv_forward(x, conv.weight * scale[:, None, None, None], bias)
        return F.relu(out, inplace=True) if self.relu else out
