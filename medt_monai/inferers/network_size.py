"""The inferer that matches :func:`medt_monai.transforms.network_size_transform`: the whole image, or sliding windows
over images zoomed by ``image_scale``."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer

from medt_monai.inferers.grid_shift import GridShiftInferer, pad_spatial

__all__ = [
    "GLASS_INTENSITY",
    "GLASS_RGB",
    "TRAINING_CROPS",
    "ReflectSlidingWindowInferer",
    "check_training_crops",
    "network_size_inferer",
]

#: how a network's training windows were cut from zoomed images: ``"image"``, random crops of one image, padded by
#: reflection where the image is smaller than a window; ``"montage"``, crops of montages of several images on glass
#: (:class:`medt_monai.data.MontageDataset`), as a slide's sliding windows cut across tiles, tissue edges and glass
TRAINING_CROPS = ("image", "montage")
#: a slide's bare glass in an 8-bit H&E scan (each RGB channel): the background of synthetic and demo slides
GLASS_RGB = 245
#: the same in [0, 1]: the montages' background, and what windows past an image read for a network trained on montages
GLASS_INTENSITY = GLASS_RGB / 255


def check_training_crops(training_crops: str) -> None:
    """Raise ``ValueError`` naming :data:`TRAINING_CROPS` unless ``training_crops`` is one of them."""
    if training_crops not in TRAINING_CROPS:
        raise ValueError(
            f"training_crops must be one of {', '.join(map(repr, TRAINING_CROPS))}, got {training_crops!r}."
        )


class ReflectSlidingWindowInferer(SlidingWindowInferer):
    """MONAI's ``SlidingWindowInferer`` whose windows reach past an image smaller than a window by reflection, as
    :func:`~medt_monai.transforms.network_size_crops` pads training images, at any size: torch reflects at most
    ``size - 1`` pixels, so an image under half a window is first padded by NumPy's repeated reflection (the same
    split before / after as ``SlidingWindowInferer``), run, and cut back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, padding_mode="reflect", **kwargs)

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        spatial = inputs.shape[2:]
        missing = [max(int(r) - int(s), 0) for r, s in zip(self.roi_size, spatial)]
        if all(d - d // 2 < s for d, s in zip(missing, spatial)):
            return super().__call__(inputs, network, *args, **kwargs)
        pads = [(d // 2, d - d // 2) for d in missing]
        padded = pad_spatial(inputs, pads, mode="reflect")
        outputs = super().__call__(padded, network, *args, **kwargs)
        window = (..., *(slice(before, before + s) for (before, _), s in zip(pads, spatial)))
        return outputs[window]


def network_size_inferer(
    img_size: int, image_scale: float | None = None, training_crops: str = "image", grid_shifts: int = 1
) -> Inferer:
    """The inferer for :func:`~medt_monai.transforms.network_size_transform`'s output: the whole image at once, or (zoomed
    images of any size) Gaussian-weighted ``img_size`` sliding windows with a quarter overlap, whose parts past the
    image are what the network saw there in training: reflection (:class:`ReflectSlidingWindowInferer`) for
    ``training_crops="image"``, glass (:data:`GLASS_INTENSITY`) for ``"montage"``, so that a tile reads as it would on
    its slide. With ``grid_shifts`` > 1 the windows run on that many grids per axis, each moved by a fraction of the
    step, and their logits are averaged (:class:`~medt_monai.inferers.GridShiftInferer`).

    Args:
        img_size: the network's input height and width.
        image_scale: zoom factor of the images, or None (squeezed to ``img_size``: no windows).
        training_crops: how the network's training windows were cut, one of :data:`TRAINING_CROPS`.
        grid_shifts: window grids per axis (1: one grid); unused with ``image_scale`` None (a whole image squeezed to
            ``img_size`` has no window grid).

    Raises:
        ValueError: an unknown ``training_crops``; with windows, see :class:`~medt_monai.inferers.GridShiftInferer`.
    """
    check_training_crops(training_crops)
    if image_scale is None:
        return SimpleInferer()
    windows = {"roi_size": [img_size, img_size], "sw_batch_size": 4, "overlap": 0.25, "mode": "gaussian"}
    if training_crops == "montage":
        inferer = SlidingWindowInferer(**windows, padding_mode="constant", cval=GLASS_INTENSITY)
    else:
        inferer = ReflectSlidingWindowInferer(**windows)
    return inferer if grid_shifts == 1 else GridShiftInferer(inferer, grid_shifts)
