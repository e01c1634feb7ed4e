"""Dictionary (MapTransform) versions of :mod:`medt_monai.transforms.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from medt_monai.transforms.array import MaskToLabel, ScaleIntensityFullRange, ToChannels

__all__ = [
    "ToChannelsd",
    "MaskToLabeld",
    "ScaleIntensityFullRanged",
    "ToChannelsD",
    "ToChannelsDict",
    "MaskToLabelD",
    "MaskToLabelDict",
    "ScaleIntensityFullRangeD",
    "ScaleIntensityFullRangeDict",
]


class ToChannelsd(MapTransform):
    """Dictionary version of :class:`medt_monai.transforms.ToChannels`.

    Args:
        keys: keys of the images to convert.
        channels: number of output channels, 1 or 3.
        allow_missing_keys: do not raise if a key is absent.
    """

    def __init__(self, keys: KeysCollection, channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToChannels(channels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class MaskToLabeld(MapTransform):
    """Dictionary version of :class:`medt_monai.transforms.MaskToLabel`.

    Args:
        keys: keys of the masks to convert.
        threshold: fraction of full scale above which a pixel is foreground; None: non-zero.
        binary: map to {0, 1} (True) or keep integer class ids (False).
        dtype: output dtype.
        allow_missing_keys: do not raise if a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float | None = 0.5,
        binary: bool = True,
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = MaskToLabel(threshold=threshold, binary=binary, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class ScaleIntensityFullRanged(MapTransform):
    """Dictionary version of :class:`medt_monai.transforms.ScaleIntensityFullRange`.

    Args:
        keys: keys of the images to scale.
        float_max: full-scale value of floating-point images.
        allow_missing_keys: do not raise if a key is absent.
    """

    def __init__(self, keys: KeysCollection, float_max: float = 255.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleIntensityFullRange(float_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


ToChannelsD = ToChannelsDict = ToChannelsd
MaskToLabelD = MaskToLabelDict = MaskToLabeld
ScaleIntensityFullRangeD = ScaleIntensityFullRangeDict = ScaleIntensityFullRanged
