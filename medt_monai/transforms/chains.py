"""The package's transform chains: what each workflow does to an image (and its mask) before the network, and the
augmentation presets of training. :func:`medt_monai.data.get_transforms` composes them, and the bundle's configs call
it, so the chains are defined once, here.
"""

from __future__ import annotations

import torch
from monai.transforms import (
    DeleteItemsd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from medt_monai.transforms.dictionary import INTENSITY_SCALINGS, LoadScaledImaged, MaskToLabeld
from medt_monai.transforms.instances import InstancesToBoundaryClassesd
from medt_monai.transforms.network_size import network_size_transform

__all__ = ["AUGMENTATIONS", "MODES", "OUTPUTS", "augmentation", "preprocessing"]

#: the workflows' chains: ``"train"`` and ``"eval"`` (validation during training) bring image and mask to the
#: network's size; ``"test"`` (evaluation) brings the image only, so the metrics are computed at the mask's own size,
#: and loads the instance map where there is one; ``"infer"`` has no mask.
MODES = ("train", "eval", "test", "infer")
#: what the network learns: ``"semantic"``, the mask's classes; ``"instances"``, the three classes of
#: :class:`~medt_monai.transforms.InstancesToBoundaryClasses` (background, object interior, a band along every
#: object's outline) made from the instance map, so that touching objects come out apart.
OUTPUTS = ("semantic", "instances")
#: the augmentation presets, each adding to the one before: ``"flip"`` (the paper's), ``"dihedral"`` (+ 90-degree
#: rotations), ``"dihedral_color"`` (+ intensity scale, shift and gamma), ``"dihedral_color_affine"`` (+ small random
#: rotations and scalings; the bundle's default).
AUGMENTATIONS = ("none", "flip", "dihedral", "dihedral_color", "dihedral_color_affine")

_PAIR = ["image", "label"]


def preprocessing(
    mode: str,
    img_size: int = 128,
    image_scale: float | None = None,
    in_channels: int = 3,
    intensity: str = "full_range",
    intensity_max: float = 255.0,
    binary: bool = True,
    threshold: float | None = 0.5,
    instance_key: str = "instance",
    output: str = "semantic",
    boundary_width: int = 2,
) -> list[MapTransform]:
    """The deterministic transforms of one workflow (``CacheDataset`` caches their output).

    - the image: :class:`~medt_monai.transforms.LoadScaledImaged` (read in its stored type, scaled to [0, 1],
      ``in_channels`` channels);
    - the mask (``"train"``, ``"eval"``, ``"test"``): read, :class:`~medt_monai.transforms.MaskToLabeld`; for
      ``output="instances"`` in ``"train"`` and ``"eval"`` the label is instead the three-class target of the instance
      map at ``instance_key``, made at the network's size (so ``boundary_width`` is in the network's pixels);
    - the network's size: :func:`~medt_monai.transforms.network_size_transform` (squeezed to ``img_size``, or zoomed by
      ``image_scale``), bilinear for images, nearest for masks; float32;
    - ``"test"``: the instance map at ``instance_key`` as int32, where the item has one.

    Args:
        mode: one of :data:`MODES`.
        img_size: the network's input height and width.
        image_scale: zoom factor of the images, or None to squeeze them to ``img_size``.
        in_channels: 1 (gray) or 3 (RGB).
        intensity: ``"full_range"`` (by the stored type) or ``"percentile"``, see
            :class:`~medt_monai.transforms.LoadScaledImaged`.
        intensity_max: full-scale value of floating-point images under ``"full_range"``.
        binary: masks to {0, 1}; False keeps integer class ids.
        threshold: mask threshold as a fraction of full scale (None: non-zero is foreground).
        instance_key: datalist key of the instance maps (``"test"``; ``"train"`` and ``"eval"`` with instances).
        output: one of :data:`OUTPUTS`.
        boundary_width: ``output="instances"``: width of the boundary band in the network's pixels.

    Raises:
        ValueError: an unknown ``mode``, ``intensity`` or ``output``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}.")
    if intensity not in INTENSITY_SCALINGS:
        raise ValueError(f"intensity must be one of {', '.join(map(repr, INTENSITY_SCALINGS))}, got {intensity!r}.")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}.")
    transforms: list[MapTransform] = [
        LoadScaledImaged("image", channels=in_channels, intensity=intensity, float_max=intensity_max)
    ]
    if output == "instances" and mode in ("train", "eval"):
        return transforms + [
            LoadImaged(instance_key, image_only=True, ensure_channel_first=True),
            network_size_transform(["image", instance_key], img_size, image_scale, mode=["bilinear", "nearest"]),
            InstancesToBoundaryClassesd(instance_key, "label", width=boundary_width),
            DeleteItemsd(instance_key),
            EnsureTyped(_PAIR, dtype=torch.float32),
        ]
    if mode == "infer":
        return transforms + [
            network_size_transform("image", img_size, image_scale),
            EnsureTyped("image", dtype=torch.float32),
        ]
    transforms += [
        LoadImaged("label", image_only=True, ensure_channel_first=True),
        MaskToLabeld("label", threshold=threshold, binary=binary),
    ]
    if mode == "test":
        return transforms + [
            network_size_transform("image", img_size, image_scale),
            EnsureTyped(_PAIR, dtype=torch.float32),
            LoadImaged(instance_key, image_only=True, ensure_channel_first=True, dtype=torch.int32,
                       allow_missing_keys=True),
        ]  # fmt: skip
    return transforms + [
        network_size_transform(_PAIR, img_size, image_scale, mode=["bilinear", "nearest"]),
        EnsureTyped(_PAIR, dtype=torch.float32),
    ]


def augmentation(name: str = "dihedral_color_affine", flip_prob: float = 0.5) -> list[MapTransform]:
    """The random transforms of preset ``name`` (:data:`AUGMENTATIONS`) for image and mask.

    Args:
        name: the preset.
        flip_prob: probability of the vertical flip, which every preset but ``"none"`` starts with.

    Raises:
        ValueError: an unknown ``name`` (the message lists the presets).
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(map(repr, AUGMENTATIONS))}, got {name!r}.")
    level = AUGMENTATIONS.index(name)
    transforms: list[MapTransform] = []
    if level >= AUGMENTATIONS.index("flip"):
        transforms.append(RandFlipd(_PAIR, prob=flip_prob, spatial_axis=0))
    if level >= AUGMENTATIONS.index("dihedral"):
        transforms.append(RandRotate90d(_PAIR, prob=0.75, max_k=3))
    if level >= AUGMENTATIONS.index("dihedral_color"):
        transforms += [
            RandScaleIntensityd("image", factors=0.1, channel_wise=True, prob=0.5),
            RandShiftIntensityd("image", offsets=0.05, channel_wise=True, prob=0.5),
            RandAdjustContrastd("image", gamma=[0.7, 1.5], prob=0.3),
        ]
    if level >= AUGMENTATIONS.index("dihedral_color_affine"):
        transforms.append(
            RandAffined(_PAIR, prob=0.5, rotate_range=0.26, scale_range=0.15, mode=["bilinear", "nearest"],
                        padding_mode="reflection")
        )  # fmt: skip
    return transforms
