"""Test-time window grids: a sliding-window inferer's logits averaged over grids moved by fractions of its step."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.utils import ensure_tuple_rep

__all__ = ["GridShiftInferer", "pad_spatial"]


def pad_spatial(inputs: torch.Tensor, widths: list[tuple[int, int]], **kwargs: Any) -> torch.Tensor:
    """``inputs`` ``(B, C, *spatial)`` padded along its spatial axes by ``widths`` ``(before, after)`` with NumPy's
    ``np.pad`` (``kwargs``: its ``mode`` and options; its reflection repeats past an axis shorter than the width, where
    torch's stops), on the input's device; a ``MetaTensor`` stays one, with its meta data."""
    array = np.pad(inputs.detach().cpu().numpy(), [(0, 0), (0, 0), *widths], **kwargs)
    padded = torch.as_tensor(array, device=inputs.device)
    if isinstance(inputs, MetaTensor):
        padded = MetaTensor(padded, meta=inputs.meta, applied_operations=inputs.applied_operations)
    return padded


class GridShiftInferer(Inferer):
    """Averages a sliding-window inferer's logits over ``shifts ** spatial_dims`` window grids (test-time grid shifts).

    :class:`monai.inferers.SlidingWindowInferer` lays its windows on one grid from the image's corner, every ``step =
    int(roi_size * (1 - overlap))`` pixels. A network whose output depends on where a window falls on the tissue
    (MedT's local branch cuts every window into a fixed grid of patches) then gives different objects for the same
    tissue in a tile and in a slide, whose grids fall differently. Here the image is also run with its grid moved by
    ``k * step / shifts`` pixels along each axis (``k = 0 .. shifts - 1``): padded at its start by that many pixels,
    the way ``inferer`` pads past an image's edge (constant ``cval`` or reflection), run, and the padding cut off. The
    logits of all the grids are averaged, so the output varies much less with where the grid starts.

    ``shifts=1`` is ``inferer`` itself; each further shift multiplies the windows run (about ``shifts ** 2`` times in
    2D on images larger than a window).

    Args:
        inferer: the sliding-window inferer run on every grid (its ``roi_size``, ``overlap`` give the step; its
            ``padding_mode``, ``"constant"`` or ``"reflect"``, and ``cval`` the padding).
        shifts: grids per axis, >= 1.

    Raises:
        ValueError: ``shifts`` not an integer >= 1; ``inferer`` not a ``SlidingWindowInferer``, or padding other than
            ``"constant"`` or ``"reflect"``.
    """

    def __init__(self, inferer: SlidingWindowInferer, shifts: int = 2) -> None:
        super().__init__()
        if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 1:
            raise ValueError(f"shifts (window grids per axis) must be an int >= 1, got {shifts!r}.")
        if not isinstance(inferer, SlidingWindowInferer):
            raise ValueError(f"grid shifts need a SlidingWindowInferer, got {type(inferer).__name__}.")
        if str(inferer.padding_mode) not in ("constant", "reflect"):
            raise ValueError(
                f"grid shifts pad as the windows do, 'constant' or 'reflect'; got {inferer.padding_mode!r}."
            )
        self.inferer = inferer
        self.shifts = shifts

    def offsets(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """The ``(d0, d1, ...)`` pixels each grid is moved by, the unmoved grid first."""
        roi = ensure_tuple_rep(self.inferer.roi_size, spatial_dims)
        overlap = ensure_tuple_rep(self.inferer.overlap, spatial_dims)
        steps = [max(int(r * (1 - o)), 1) for r, o in zip(roi, overlap)]
        per_axis = [sorted({round(k * step / self.shifts) for k in range(self.shifts)}) for step in steps]
        return list(itertools.product(*per_axis))

    def _pad(self, inputs: torch.Tensor, offset: tuple[int, ...]) -> torch.Tensor:
        widths = [(d, 0) for d in offset]
        if str(self.inferer.padding_mode) == "reflect":  # NumPy reflects repeatedly, past an image smaller than d
            return pad_spatial(inputs, widths, mode="reflect")
        return pad_spatial(inputs, widths, mode="constant", constant_values=self.inferer.cval)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """``inputs`` ``(B, C, *spatial)`` -> the mean of the grids' outputs ``(B, out_channels, *spatial)``."""
        total = None
        offsets = self.offsets(inputs.ndim - 2)
        for offset in offsets:
            moved = self._pad(inputs, offset) if any(offset) else inputs
            outputs = self.inferer(moved, network, *args, **kwargs)
            outputs = outputs[(..., *(slice(d, None) for d in offset))]  # (B, out, *spatial) of the input
            total = outputs if total is None else total + outputs
        return total / len(offsets)
