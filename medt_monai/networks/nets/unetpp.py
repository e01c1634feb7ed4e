"""MONAI's U-Net++ with a single output tensor, so it trains, infers and exports like any other network."""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNetPlusPlus

__all__ = ["UNetPlusPlus"]


class UNetPlusPlus(BasicUNetPlusPlus):
    """:class:`monai.networks.nets.BasicUNetPlusPlus` (Zhou et al., "UNet++", DLMIA 2018) without deep supervision,
    returning the logits tensor instead of a one-element list: MONAI's engines, inferers, losses, ``ckpt_export``
    and MONAI Label expect a tensor. Arguments are those of ``BasicUNetPlusPlus`` except ``deep_supervision``.
    """

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.pop("deep_supervision", False):
            raise ValueError(
                "UNetPlusPlus returns one tensor; use monai.networks.nets.BasicUNetPlusPlus for deep supervision."
            )
        super().__init__(*args, deep_supervision=False, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)`` logits (H, W multiples of 16)."""
        return super().forward(x)[0]
