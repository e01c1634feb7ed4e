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
from medt_monai.transforms.network_size import network_size_inferer, network_size_transform

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
    "network_size_transform",
    "network_size_inferer",
]
