"""Transforms MONAI lacks for 2D medical image segmentation data (array and dictionary versions)."""

from __future__ import annotations

from medt_monai.transforms.array import (
    MaskToLabel,
    RemoveSmallComponents,
    ScaleIntensityFullRange,
    ToChannels,
    pil_to_rgb_or_gray,
)
from medt_monai.transforms.chains import AUGMENTATIONS, MODES, OUTPUTS, augmentation, preprocessing
from medt_monai.transforms.dictionary import (
    INTENSITY_SCALINGS,
    LoadScaledImageD,
    LoadScaledImaged,
    LoadScaledImageDict,
    MaskToLabelD,
    MaskToLabeld,
    MaskToLabelDict,
    RemoveSmallComponentsD,
    RemoveSmallComponentsd,
    RemoveSmallComponentsDict,
    ScaleIntensityFullRangeD,
    ScaleIntensityFullRanged,
    ScaleIntensityFullRangeDict,
    ToChannelsD,
    ToChannelsd,
    ToChannelsDict,
)
from medt_monai.transforms.instances import (
    BACKGROUND,
    BOUNDARY,
    INTERIOR,
    InstancesFromProbabilities,
    InstancesFromProbabilitiesd,
    InstancesToBoundaryClasses,
    InstancesToBoundaryClassesd,
    check_instance_map,
)
from medt_monai.transforms.network_size import network_size_crops, network_size_transform
from medt_monai.transforms.postprocessing import mask_postprocessing

__all__ = [
    "BACKGROUND",
    "BOUNDARY",
    "INTERIOR",
    "OUTPUTS",
    "InstancesFromProbabilities",
    "InstancesFromProbabilitiesd",
    "InstancesToBoundaryClasses",
    "InstancesToBoundaryClassesd",
    "check_instance_map",
    "AUGMENTATIONS",
    "MODES",
    "augmentation",
    "pil_to_rgb_or_gray",
    "preprocessing",
    "INTENSITY_SCALINGS",
    "LoadScaledImaged",
    "LoadScaledImageD",
    "LoadScaledImageDict",
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
    "RemoveSmallComponents",
    "RemoveSmallComponentsd",
    "RemoveSmallComponentsD",
    "RemoveSmallComponentsDict",
    "network_size_transform",
    "network_size_crops",
    "mask_postprocessing",
]
