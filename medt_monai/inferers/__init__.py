"""Inferers: flip (and rotation) test-time augmentation, test-time window grids, the network-size inferer of the bundle's
workflows, and slide blocks run in the axis order of PNG tiles."""

from __future__ import annotations

from medt_monai.inferers.axes import TransposedInferer
from medt_monai.inferers.flip import FlipInferer, tta_inferer
from medt_monai.inferers.grid_shift import GridShiftInferer
from medt_monai.inferers.network_size import (
    GLASS_INTENSITY,
    GLASS_RGB,
    TRAINING_CROPS,
    ReflectSlidingWindowInferer,
    check_training_crops,
    network_size_inferer,
)

__all__ = [
    "GLASS_INTENSITY",
    "GLASS_RGB",
    "TRAINING_CROPS",
    "check_training_crops",
    "FlipInferer",
    "GridShiftInferer",
    "ReflectSlidingWindowInferer",
    "TransposedInferer",
    "network_size_inferer",
    "tta_inferer",
]
