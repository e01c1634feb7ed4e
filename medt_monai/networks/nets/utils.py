"""Argument and input checks shared by the MedT family, so a bad configuration fails at construction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_network_args", "check_input_size"]


def check_network_args(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    img_size: Sequence[int] | int,
    channels: Sequence[int],
    num_heads: int,
) -> tuple[int, int]:
    """Validate the arguments every network of the family shares and return ``img_size`` as ``(height, width)``.

    Raises:
        ValueError: for ``spatial_dims != 2``, non-positive channel counts, an ``img_size`` that is not one or two
            positive ints, or a stage width whose bottleneck (``width // 2``) is not a multiple of ``2 * num_heads``.
    """
    if spatial_dims != 2:
        raise ValueError(
            f"spatial_dims={spatial_dims} is not supported: the MedT family is 2D only for now (spatial_dims=2)."
        )
    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}.")
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"img_size must be a positive int or a (height, width) pair, got {img_size!r}.")
    for width in channels:
        if width % (4 * num_heads) != 0:
            raise ValueError(
                f"every stage width must be a multiple of 4 * num_heads = {4 * num_heads} (its bottleneck, width // 2, "
                f"gives each of the {num_heads} heads query, key and value channels), got channels={tuple(channels)}."
            )
    return size


def check_input_size(x: torch.Tensor, img_size: tuple[int, int], divisor: tuple[int, int]) -> None:
    """Raise a clear ``ValueError`` unless ``x`` is ``(N, C, H, W)`` with ``H, W`` multiples of ``divisor`` and at most
    ``img_size`` (``(height, width)`` pairs)."""
    if x.dim() != 4:
        raise ValueError(f"expected a 4D input (N, C, H, W), got shape {list(x.shape)}.")
    height, width = x.shape[-2], x.shape[-1]
    if height % divisor[0] != 0 or width % divisor[1] != 0 or height > img_size[0] or width > img_size[1]:
        raise ValueError(
            f"input size {height}x{width} is not supported: height must be a multiple of {divisor[0]} and at most "
            f"{img_size[0]}, width a multiple of {divisor[1]} and at most {img_size[1]} (img_size={img_size})."
        )
