"""The residual axial-attention block of MedT (supplement: "encoder block") and a stage of such blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from medt_monai.networks.blocks.axial_attention import AttentionLayer, AxialAttention
from medt_monai.networks.blocks.conv_norm import ConvNorm

__all__ = ["AxialBlock", "AxialStage"]


class AxialBlock(nn.Module):
    """Bottleneck residual block with height then width axial attention in place of the 3x3 convolution.

    ``x -> 1x1 conv -> BN -> ReLU -> height attention -> width attention [-> 2x2 avg-pool] -> ReLU -> 1x1 conv -> BN``,
    plus the shortcut (identity, or a strided 1x1 conv + BN when the shape changes), then ReLU. In eval mode every BN
    after a convolution is folded into it (:class:`~medt_monai.networks.blocks.ConvNorm`).
    The bottleneck is ``out_channels // 2`` wide (expansion 2, as in the authors' code).

    Args:
        in_channels: input channels.
        out_channels: output channels; ``out_channels // 2`` must be a multiple of ``2 * num_heads``.
        spatial_size: largest ``(height, width)`` of the block's input, for the relative encodings.
        stride: 1, or 2 to halve height and width (average pooling after the width attention).
        attention_layer: builds each of the two attention layers from ``(channels, axis_length, axis)``, e.g.
            :func:`~medt_monai.networks.blocks.axial_attention_layer` ``("gated", num_heads=8)``. Defaults to
            :class:`AxialAttention` with its defaults (8 heads, ``"axial"``).

    Raises:
        ValueError: when ``stride`` is not 1 or 2 (and see :class:`AxialAttention`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_size: Sequence[int],
        stride: int = 1,
        attention_layer: AttentionLayer = AxialAttention,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}.")
        width = out_channels // 2
        self.reduce = ConvNorm(
            nn.Conv2d(in_channels, width, kernel_size=1, bias=False), nn.BatchNorm2d(width), relu=True
        )
        self.height_attention, self.width_attention = (
            attention_layer(width, spatial_size[axis], axis) for axis in (0, 1)
        )
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.expand = ConvNorm(nn.Conv2d(width, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNorm(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, out_channels, H / stride, W / stride)``."""
        out = self.reduce(x)
        out = self.relu(self.pool(self.width_attention(self.height_attention(out))))
        out = self.expand(out)
        return self.relu(out + self.shortcut(x))


class AxialStage(nn.Sequential):
    """``num_blocks`` :class:`AxialBlock` s; the first changes channels and applies ``stride``.

    Args:
        in_channels: input channels.
        out_channels: output channels of every block.
        num_blocks: number of blocks (>= 1).
        spatial_size: largest ``(height, width)`` of the stage's input.
        stride: stride of the first block (1 or 2).
        attention_layer: see :class:`AxialBlock`.

    Raises:
        ValueError: when ``num_blocks < 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        spatial_size: Sequence[int],
        stride: int = 1,
        attention_layer: AttentionLayer = AxialAttention,
    ) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}.")
        blocks = []
        size = tuple(spatial_size)
        for index in range(num_blocks):
            block_stride = stride if index == 0 else 1
            blocks.append(
                AxialBlock(
                    in_channels=in_channels if index == 0 else out_channels,
                    out_channels=out_channels,
                    spatial_size=size,
                    stride=block_stride,
                    attention_layer=attention_layer,
                )
            )
            size = tuple(s // block_stride for s in size)
        super().__init__(*blocks)
