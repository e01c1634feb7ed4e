"""An inferer that runs another on its input with the two spatial axes swapped: slide blocks in the axis order of the
PNGs a network was trained on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["TransposedInferer"]


class TransposedInferer(Inferer):
    """Runs ``inferer`` on ``(B, C, H, W)`` inputs as ``(B, C, W, H)`` and swaps its output back to ``(B, out, H, W)``.

    MONAI's ``LoadImage`` gives a PNG as ``(C, W, H)`` (``PILReader`` reverses the axes, as ITK does), while
    ``WSIReader`` gives a slide's region as ``(C, H, W)``. A network trained and tiled on PNGs therefore meets the same
    tissue transposed in a tile and upright in a slide; however well its training augmentation covered the symmetries
    of the square, its objects differ between the two (about 5 % of GlaS glands). The slide command wraps its inferer
    in this one, so that each block reaches the network in the axis order of the tiles, and its windows, flips and
    grid shifts fall on the tissue as they do on a tile.

    Args:
        inferer: the inferer to run (e.g. the bundle's flip-averaged sliding windows).
    """

    def __init__(self, inferer: Inferer) -> None:
        super().__init__()
        self.inferer = inferer

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """``inputs`` ``(B, C, H, W)`` -> ``inferer``'s output on ``(B, C, W, H)``, swapped back to ``(B, out, H, W)``."""
        if inputs.ndim != 4:
            raise ValueError(
                f"TransposedInferer swaps the two spatial axes of (B, C, H, W) inputs, got {tuple(inputs.shape)}."
            )
        return self.inferer(inputs.transpose(-2, -1), network, *args, **kwargs).transpose(-2, -1)
