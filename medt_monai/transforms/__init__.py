"""Transforms MONAI lacks for 2D medical image segmentation data (array and dictionary versions)."""

from __future__ import annotations

from medt_monai.transforms.array import MaskToLabel, ScaleIntensityFullRange, ToChannels
from medt_monai.transforms.dictionary import (
    MaskToLabelD,
    MaskToLabeld,
    MaskToLabelDict,
    ScaleIntensityFullRangeD,
    ScaleIntensityFullRanged,
    ScaleIntensityFullRangeDict,
    ToChannelsD,
    ToChannelsd,
    ToChannelsDict,
)

__all__ = [
    "ToChannels",
    "MaskToLabel",
    "ScaleIntensityFullRange",
    "ToChannelsd",
    "ToChannelsD",
    "ToChannelsDict",
    "MaskToLabeld",
    "MaskToLabelD",
    "MaskToLabelDict",
    "ScaleIntensityFullRanged",
    "ScaleIntensityFullRangeD",
    "ScaleIntensityFullRangeDict",
]
