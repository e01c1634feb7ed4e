"""Flip (and transpose) test-time augmentation as a MONAI inferer."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer
from monai.utils import str2bool

__all__ = ["FlipInferer", "tta_inferer"]


class FlipInferer(Inferer):
    """Averages a network's logits over all flips of the spatial axes (test-time augmentation).

    For an input of shape ``(B, C, *spatial)`` with ``spatial_dims`` spatial axes the network runs on the
    ``2 ** spatial_dims`` combinations of flipped axes (identity included); each output is flipped back and the
    logits are averaged, so the result has the shape of one plain forward pass, ``(B, out_channels, *spatial)``.
    Averaging logits (not probabilities) keeps the bundle's ``Activationsd(softmax=True)`` post-processing valid.

    With ``transpose=True`` every flip also runs on the input with its last two spatial axes swapped, and the output
    is swapped back: in 2-D the ``8`` symmetries of the square (the flips and the 90-degree rotations), the group
    that the bundle's ``dihedral`` training augmentation (``RandFlipd`` + ``RandRotate90d``) draws from.

    Args:
        inferer: runs each flipped copy (default :class:`monai.inferers.SimpleInferer`; a
            :class:`monai.inferers.SlidingWindowInferer` gives flip-averaged sliding-window inference).
        spatial_dims: number of trailing spatial axes to flip.
        transpose: also average over the copies with the last two spatial axes swapped (doubles the passes).

    Raises:
        ValueError: when ``spatial_dims < 1``, or ``transpose`` with ``spatial_dims < 2``.
    """

    def __init__(self, inferer: Inferer | None = None, spatial_dims: int = 2, transpose: bool = False) -> None:
        super().__init__()
        if spatial_dims < 1:
            raise ValueError(f"spatial_dims must be >= 1, got {spatial_dims}.")
        if transpose and spatial_dims < 2:
            raise ValueError(f"transpose needs at least 2 spatial axes, got spatial_dims={spatial_dims}.")
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.spatial_dims = spatial_dims
        self.transpose = transpose

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        axes = range(inputs.ndim - self.spatial_dims, inputs.ndim)
        total = None
        count = 0
        for swapped in (False, True) if self.transpose else (False,):
            view = inputs.transpose(-2, -1) if swapped else inputs
            for n in range(self.spatial_dims + 1):
                for flip in itertools.combinations(axes, n):
                    logits = self.inferer(torch.flip(view, flip) if flip else view, network, *args, **kwargs)
                    logits = torch.flip(logits, flip) if flip else logits
                    logits = logits.transpose(-2, -1) if swapped else logits  # (B, out, *spatial) of the input
                    total = logits if total is None else total + logits
                    count += 1
        return total / count


def tta_inferer(inferer: Inferer, flips: bool | str, rotations: bool | str = False) -> Inferer:
    """The bundle's test-time augmentation switches (``--tta``, ``--tta_rotations``) applied to ``inferer``.

    Args:
        inferer: the plain inferer (the bundle's ``window_inferer``).
        flips: average over the flips (:class:`FlipInferer`); a command-line string such as ``"false"`` is read
            with :func:`monai.utils.str2bool`.
        rotations: with ``flips``, also over the transposed copies (``FlipInferer(transpose=True)``, the 90-degree
            rotations); ignored without ``flips``.

    Returns:
        ``FlipInferer(inferer, transpose=rotations)`` when ``flips`` is true, else ``inferer`` itself.
    """
    if not str2bool(flips):
        return inferer
    return FlipInferer(inferer, transpose=str2bool(rotations))
