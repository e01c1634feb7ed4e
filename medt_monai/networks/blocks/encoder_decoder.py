"""One axial-attention U-shaped branch: convolutional stem, axial-attention encoder stages, additive-skip decoder.

This is the authors' ``ResAxialAttentionUNet`` body, and each of MedT's two branches (global and local).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from medt_monai.networks.blocks.axial_attention import AttentionLayer, AxialAttention
from medt_monai.networks.blocks.axial_block import AxialStage
from medt_monai.networks.blocks.conv_norm import ConvNorm

__all__ = ["conv_bn_relu", "ConvStem", "DecoderStep", "AxialEncoderDecoder"]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> ConvNorm:
    """A bias-free ``kernel_size`` convolution (padding ``kernel_size // 2``) + BatchNorm + ReLU."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return ConvNorm(conv, nn.BatchNorm2d(out_channels), relu=True)


class ConvStem(nn.Sequential):
    """Supplement's initial block: 7x7 stride-2 conv, 3x3 conv, 3x3 conv, each followed by BN and ReLU.

    ``(N, in_channels, H, W)`` -> ``(N, out_channels, H/2, W/2)``.

    Args:
        in_channels: image channels.
        out_channels: stem output channels.
        hidden_channels: channels of the middle convolution. Defaults to 128 (authors' value).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 128) -> None:
        super().__init__(
            conv_bn_relu(in_channels, out_channels, 7, stride=2),
            conv_bn_relu(out_channels, hidden_channels, 3),
            conv_bn_relu(hidden_channels, out_channels, 3),
        )


class DecoderStep(nn.Module):
    """Supplement's decoder block: 3x3 conv, bilinear upsampling to the skip's size, ReLU, then add the skip.

    Args:
        in_channels: input channels.
        out_channels: output channels (the skip's channels).
        stride: stride of the convolution (2 for the authors' bottleneck step, which convolves the deepest map down and
            upsamples it back onto itself). Defaults to 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor, size: list[int], skip: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(N, in_channels, h, w)``; returns ``(N, out_channels, *size)`` (+ ``skip`` of that shape)."""
        x = F.relu(F.interpolate(self.conv(x), size=size, mode="bilinear", align_corners=False))
        return x if skip is None else x + skip


class AxialEncoderDecoder(nn.Module):
    """Stem, encoder stages of axial-attention blocks and a decoder with additive skips, at full input resolution.

    Stage ``s`` outputs ``channels[s]`` maps at ``1 / 2^(s+1)`` of the input size (the stem halves once, every stage
    after the first halves again). The decoder goes back up through every skip, then doubles once more to the input
    size, ending with ``channels[0] // 2`` maps.

    Args:
        in_channels: image channels.
        img_size: largest ``(height, width)`` of the branch's input (sizes the relative encodings).
        channels: output channels of the stages, e.g. ``(32, 64, 128, 256)``.
        num_blocks: blocks per stage, same length as ``channels``, e.g. ``(1, 2, 4, 1)``.
        stem_channels: output channels of the stem.
        attention_layer: builds every attention layer of the blocks, see
            :func:`~medt_monai.networks.blocks.axial_attention_layer`. Defaults to
            :class:`~medt_monai.networks.blocks.AxialAttention` with its defaults.
        bottleneck: add the authors' bottleneck step (a stride-2 3x3 conv on the deepest map, upsampled and added
            back onto it). Their full U-Nets have it, MedT's shallow global branch does not.

    Raises:
        ValueError: when ``channels`` and ``num_blocks`` differ in length or are empty.
    """

    def __init__(
        self,
        in_channels: int,
        img_size: Sequence[int],
        channels: Sequence[int],
        num_blocks: Sequence[int],
        stem_channels: int,
        attention_layer: AttentionLayer = AxialAttention,
        bottleneck: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != len(num_blocks) or not channels:
            raise ValueError(
                f"channels and num_blocks must be non-empty and of equal length, got {tuple(channels)} and "
                f"{tuple(num_blocks)}."
            )
        self.stem = ConvStem(in_channels, stem_channels)
        size = [s // 2 for s in img_size]
        stages = []
        previous = stem_channels
        for index, (width, blocks) in enumerate(zip(channels, num_blocks)):
            stride = 1 if index == 0 else 2
            stages.append(
                AxialStage(
                    in_channels=previous,
                    out_channels=width,
                    num_blocks=blocks,
                    spatial_size=size,
                    stride=stride,
                    attention_layer=attention_layer,
                )
            )
            size = [s // stride for s in size]
            previous = width
        self.stages = nn.ModuleList(stages)
        self.bottleneck = DecoderStep(channels[-1], channels[-1], stride=2) if bottleneck else None
        # One step per skip, deepest first, then the final step to full resolution.
        self.decoder = nn.ModuleList(DecoderStep(channels[s], channels[s - 1]) for s in range(len(channels) - 1, 0, -1))
        self.final = DecoderStep(channels[0], channels[0] // 2)
        self.out_channels = channels[0] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, channels[0] // 2, H, W)``."""
        size = x.shape[-2:]
        skips: list[torch.Tensor] = []
        out = self.stem(x)
        for stage in self.stages:
            out = stage(out)
            skips.append(out)
        if self.bottleneck is not None:
            out = self.bottleneck(out, out.shape[-2:], out)
        for index, step in enumerate(self.decoder):  # the skips from the second deepest up
            skip = skips[-2 - index]
            out = step(out, skip.shape[-2:], skip)
        return self.final(out, size)
