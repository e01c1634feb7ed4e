"""Dictionary (MapTransform) versions of :mod:`medt_monai.transforms.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import PILReader
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    ScaleIntensityRangePercentilesd,
)
from monai.utils import look_up_option

from medt_monai.transforms.array import (
    MaskToLabel,
    RemoveSmallComponents,
    ScaleIntensityFullRange,
    ToChannels,
    pil_to_rgb_or_gray,
)

__all__ = [
    "INTENSITY_SCALINGS",
    "LoadScaledImaged",
    "ToChannelsd",
    "MaskToLabeld",
    "ScaleIntensityFullRanged",
    "ToChannelsD",
    "ToChannelsDict",
    "MaskToLabelD",
    "MaskToLabelDict",
    "ScaleIntensityFullRangeD",
    "ScaleIntensityFullRangeDict",
    "LoadScaledImageD",
    "LoadScaledImageDict",
    "RemoveSmallComponentsd",
    "RemoveSmallComponentsD",
    "RemoveSmallComponentsDict",
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


#: names of the intensity scalings of :class:`LoadScaledImaged` (the bundle's ``intensity``).
INTENSITY_SCALINGS = ("full_range", "percentile")


class LoadScaledImaged(MapTransform):
    """Load images as a network's input: read, scale to [0, 1], convert to ``channels`` channels.

    The image half of every chain the bundle runs (training, validation, evaluation, inference):

    1. :class:`~monai.transforms.LoadImaged` in the stored type, channel first; PNG/BMP/JPEG/TIFF through
       :class:`~monai.data.PILReader` with :func:`~medt_monai.transforms.pil_to_rgb_or_gray` (palette images as their colours),
       NIfTI and the other formats through MONAI's readers;
    2. ``intensity="full_range"``: :class:`ScaleIntensityFullRanged` (by the stored type: 8-bit by 255, 16-bit by
       65535, floats by ``float_max``); ``"percentile"``: each image's 0.5-99.5 percentile range to 0..1, clipped;
    3. :class:`ToChannelsd` to ``channels``.

    Not a :class:`~monai.transforms.Compose`, so ``CacheDataset`` caches it like any deterministic transform.

    Args:
        keys: keys of the image paths.
        channels: channels the network takes, 1 or 3.
        intensity: one of :data:`INTENSITY_SCALINGS`. Defaults to ``"full_range"``.
        float_max: full-scale value of floating-point images under ``"full_range"``. Defaults to 255.
        allow_missing_keys: do not raise if a key is absent.

    Raises:
        ValueError: for an unknown ``intensity`` (the message lists the choices).
    """

    def __init__(
        self,
        keys: KeysCollection,
        channels: int,
        intensity: str = "full_range",
        float_max: float = 255.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        scaling: MapTransform | Compose = ScaleIntensityFullRanged(keys, float_max, allow_missing_keys)
        if look_up_option(intensity, INTENSITY_SCALINGS) == "percentile":
            scaling = Compose(
                [
                    EnsureTyped(keys, dtype=torch.float32, allow_missing_keys=allow_missing_keys),
                    ScaleIntensityRangePercentilesd(
                        keys, 0.5, 99.5, b_min=0.0, b_max=1.0, clip=True, allow_missing_keys=allow_missing_keys
                    ),
                ]
            )
        reader = PILReader(converter=pil_to_rgb_or_gray)
        self.transforms = (
            LoadImaged(keys, reader=reader, dtype=None, image_only=True, ensure_channel_first=True,
                       allow_missing_keys=allow_missing_keys),
            scaling,
            ToChannelsd(keys, channels, allow_missing_keys),
        )  # fmt: skip

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for transform in self.transforms:
            d = transform(d)
        return d


class RemoveSmallComponentsd(MapTransform):
    """Dictionary version of :class:`medt_monai.transforms.RemoveSmallComponents`.

    Args:
        keys: keys of the ``(1, H, W)`` label maps.
        min_size: components with fewer pixels than this are removed; 0 or 1 keeps every component.
        connectivity: 1 joins a pixel's 4 edge neighbours, 2 or None (default) all 8.
        allow_missing_keys: do not raise if a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, min_size: int, connectivity: int | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RemoveSmallComponents(min_size, connectivity)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


ToChannelsD = ToChannelsDict = ToChannelsd
MaskToLabelD = MaskToLabelDict = MaskToLabeld
ScaleIntensityFullRangeD = ScaleIntensityFullRangeDict = ScaleIntensityFullRanged
LoadScaledImageD = LoadScaledImageDict = LoadScaledImaged
RemoveSmallComponentsD = RemoveSmallComponentsDict = RemoveSmallComponentsd
