"""How images reach the network's input size: squeezed to ``img_size`` or zoomed by ``image_scale``.

The bundle's ``--image_scale`` switches between the two; these helpers hold that decision once for the transform chains
(:mod:`medt_monai.transforms.chains`); :func:`medt_monai.inferers.network_size_inferer` is the matching inferer.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from monai.config import KeysCollection
from monai.transforms import MapTransform, RandSpatialCropd, RandSpatialCropSamplesd, Resized, SpatialPadd, Zoomd

__all__ = ["network_size_transform", "network_size_crops"]


def network_size_transform(
    keys: KeysCollection, img_size: int, image_scale: float | None = None, mode: str | Sequence[str] = "bilinear"
) -> MapTransform:
    """``Resized`` to ``img_size x img_size`` when ``image_scale`` is None, else ``Zoomd`` by ``image_scale``.

    Zooming keeps the aspect ratio and the native detail; the network then sees ``img_size`` crops in training and
    sliding windows in evaluation (:func:`network_size_inferer`).

    Args:
        keys: keys to transform.
        img_size: the network's input height and width.
        image_scale: zoom factor of the images, or None to squeeze them to ``img_size``.
        mode: interpolation mode(s), one per key or one for all (e.g. ``["bilinear", "nearest"]`` for image and label).
    """
    if image_scale is None:
        return Resized(keys=keys, spatial_size=[img_size, img_size], mode=mode)
    return Zoomd(keys=keys, zoom=image_scale, mode=mode, keep_size=False)


def network_size_crops(
    keys: KeysCollection, img_size: int, image_scale: float | None = None, num_crops: int = 1
) -> list[MapTransform]:
    """Training crops for :func:`network_size_transform`'s output: none for squeezed images (already ``img_size``);
    for zoomed ones, reflection padding up to ``img_size`` then ``num_crops`` random ``img_size x img_size`` crops.

    With ``num_crops > 1`` every image yields a list of crops, which MONAI's ``Compose`` maps the later transforms over
    and ``monai.data.DataLoader`` (``list_data_collate``) flattens into the batch: a batch of ``B`` images holds
    ``B * num_crops`` crops, as in MONAI's ``RandCropByPosNegLabeld`` recipes.

    Raises:
        ValueError: ``num_crops`` is not a positive integer, or is above 1 for squeezed images (one crop is the whole
            image).
    """
    if isinstance(num_crops, bool) or not isinstance(num_crops, numbers.Integral) or num_crops < 1:
        raise ValueError(f"num_crops (the bundle's --crops_per_image) must be a positive integer, got {num_crops!r}.")
    if image_scale is None:
        if num_crops > 1:
            raise ValueError(
                f"num_crops={num_crops} (--crops_per_image) needs image_scale (--image_scale): images squeezed to "
                f"img_size={img_size} have one crop, the whole image."
            )
        return []
    size = [img_size, img_size]
    crop = (
        RandSpatialCropd(keys=keys, roi_size=size, random_size=False)
        if num_crops == 1
        else RandSpatialCropSamplesd(keys=keys, roi_size=size, num_samples=num_crops, random_size=False)
    )
    return [SpatialPadd(keys=keys, spatial_size=size, mode="reflect"), crop]
