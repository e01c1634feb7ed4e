"""The inferer that matches :func:`medt_monai.transforms.network_size_transform`: the whole image, or sliding windows
over images zoomed by ``image_scale``."""

from __future__ import annotations

from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer

__all__ = ["network_size_inferer"]


def network_size_inferer(img_size: int, image_scale: float | None = None) -> Inferer:
    """The inferer for :func:`~medt_monai.transforms.network_size_transform`'s output: the whole image at once, or (zoomed images of any
    size) Gaussian-weighted ``img_size`` sliding windows with a quarter overlap, images smaller than a window padded by
    reflection as :func:`~medt_monai.transforms.network_size_crops` pads them in training."""
    if image_scale is None:
        return SimpleInferer()
    return SlidingWindowInferer(
        roi_size=[img_size, img_size], sw_batch_size=4, overlap=0.25, mode="gaussian", padding_mode="reflect"
    )
