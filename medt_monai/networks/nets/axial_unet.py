"""Axial-attention U-Nets of the MedT paper: Axial Attention U-Net and Gated Axial Attention U-Net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from medt_monai.networks.blocks.axial_attention import axial_attention_layer
from medt_monai.networks.blocks.encoder_decoder import AxialEncoderDecoder
from medt_monai.networks.nets.utils import check_input_size, check_network_args

__all__ = ["AxialUNet", "GatedAxialUNet"]


class AxialUNet(nn.Module):
    """U-Net whose encoder blocks use axial attention (the paper's "Axial Attention U-Net", Table 1).

    The authors' ``ResAxialAttentionUNet``: a convolutional stem, residual axial-attention stages and a decoder with
    additive skips; returns raw logits (MONAI convention: apply softmax/argmax outside).

    Args:
        spatial_dims: number of spatial dimensions; only 2 is supported.
        in_channels: image channels (3 for H&E, 1 for ultrasound). Defaults to 3.
        out_channels: classes, including background. Defaults to 2.
        img_size: largest input ``(height, width)`` (or one int for a square); sizes the relative position encodings.
            Smaller inputs work too. Defaults to 128.
        channels: output channels of the encoder stages. Defaults to ``(32, 64, 128, 256)`` (authors' ``s=0.125``).
        num_blocks: axial-attention blocks per stage. Defaults to ``(1, 2, 4, 1)``.
        stem_channels: channels of the convolutional stem. Defaults to 8.
        num_heads: attention heads. Defaults to 8.
        attention: ``"axial"`` (Eq. 2), ``"gated"`` (Eq. 3) or ``"nopos"`` (no positional encoding). Defaults to
            ``"axial"``.
        gate_placement: ``"before_norm"`` (gates before BatchNorm, as the authors' code; BatchNorm cancels them) or
            ``"after_norm"`` (gates scale the normalised terms, as Eq. 3 intends). Only used with gated attention.
            Defaults to ``"before_norm"``.

    Raises:
        ValueError: for ``spatial_dims != 2``, a bad ``img_size``, or inconsistent widths (see
            :func:`~medt_monai.networks.nets.utils.check_network_args`); in ``forward``, for an input whose height or
            width is not a multiple of ``2 ** len(channels)`` or exceeds ``img_size``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        img_size: Sequence[int] | int = 128,
        channels: Sequence[int] = (32, 64, 128, 256),
        num_blocks: Sequence[int] = (1, 2, 4, 1),
        stem_channels: int = 8,
        num_heads: int = 8,
        attention: str = "axial",
        gate_placement: str = "before_norm",
    ) -> None:
        super().__init__()
        self.img_size = check_network_args(spatial_dims, in_channels, out_channels, img_size, channels, num_heads)
        self.size_divisor = 2 ** len(channels)
        self.branch = AxialEncoderDecoder(
            in_channels=in_channels,
            img_size=self.img_size,
            channels=channels,
            num_blocks=num_blocks,
            stem_channels=stem_channels,
            attention_layer=axial_attention_layer(attention, num_heads, gate_placement),
        )
        self.head = nn.Conv2d(self.branch.out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> logits ``(N, out_channels, H, W)``."""
        check_input_size(x, self.img_size, (self.size_divisor, self.size_divisor))
        return self.head(self.branch(x))


class GatedAxialUNet(AxialUNet):
    """:class:`AxialUNet` with gated axial attention (Eq. 3): the paper's "Gated Axial Attention U-Net".

    Takes the same arguments as :class:`AxialUNet`; ``attention`` defaults to ``"gated"``.
    """

    def __init__(self, *args, attention: str = "gated", **kwargs) -> None:
        super().__init__(*args, attention=attention, **kwargs)
