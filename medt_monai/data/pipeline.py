"""MONAI transform chains and cached datasets for 2D segmentation with the MedT networks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset, PILReader
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandHistogramShiftd,
    RandRotate90d,
    RandScaleIntensityd,
    Resized,
    ScaleIntensityRangePercentilesd,
    ScaleIntensityd,
)

from medt_monai.transforms import MaskToLabeld, ToChannelsd

__all__ = ["get_transforms", "get_dataset", "pil_to_rgb_or_gray"]


def pil_to_rgb_or_gray(img):  # type: ignore[no-untyped-def]
    """PIL converter for images: palette ("P") and CMYK/YCbCr to RGB(A), 1-bit to L; others unchanged.

    Pass as ``PILReader(converter=pil_to_rgb_or_gray)`` so palette images are read as colours
    (MONAI's PILReader would otherwise return palette indices). Not for masks: palette masks
    should stay indices.
    """
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    return img


def get_transforms(
    mode: str,
    img_size: int | Sequence[int] = (128, 128),
    in_channels: int = 3,
    augment: bool = True,
    binary: bool = True,
    threshold: float | None = 0.5,
    intensity: str = "minmax",
) -> Compose:
    """Build a MONAI transform chain for 2D segmentation data.

    - ``"train"``: load (PIL for PNG/BMP/JPEG/TIFF, nibabel/ITK for NIfTI and other ITK formats),
      channel-first, :class:`~medt_monai.transforms.ToChannelsd` to ``in_channels``, intensity
      scaling to [0, 1], :class:`~medt_monai.transforms.MaskToLabeld`, resize to ``img_size``
      (bilinear for images, nearest for masks) and, when ``augment``, histology/ultrasound
      augmentation: flips, 90° rotations, small affine (rotation ±15°, scale ±10%), contrast,
      intensity and histogram-shift jitter.
    - ``"eval"``: the same without augmentation (image and label).
    - ``"infer"``: image only, no augmentation; ``monai.transforms.Invertd`` on the prediction
      with this chain as ``transform`` brings it back to the original size.

    Args:
        mode: "train", "eval" or "infer".
        img_size: network input size (int for square).
        in_channels: 1 (gray, e.g. ultrasound) or 3 (RGB, e.g. H&E).
        augment: apply random augmentation in "train".
        binary: masks to {0, 1}; False keeps integer class ids.
        threshold: mask threshold as a fraction of full scale (None: non-zero is foreground).
        intensity: "minmax" (per image 0..1 by the 8/16-bit range: 255 or 65535) or
            "percentile" (per image 0.5-99.5 percentile to 0..1, robust for 16-bit and NIfTI).

    Raises:
        ValueError: unknown ``mode`` or ``intensity``.
    """
    if mode not in ("train", "eval", "infer"):
        raise ValueError(f"mode must be 'train', 'eval' or 'infer', got {mode!r}.")
    if intensity not in ("minmax", "percentile"):
        raise ValueError(f"intensity must be 'minmax' or 'percentile', got {intensity!r}.")
    size = (int(img_size), int(img_size)) if isinstance(img_size, (int, np.integer)) else tuple(int(s) for s in img_size)
    keys = ["image"] if mode == "infer" else ["image", "label"]
    xf = [
        LoadImaged("image", reader=PILReader(converter=pil_to_rgb_or_gray), image_only=True),
        EnsureChannelFirstd("image"),
        ToChannelsd("image", channels=in_channels),
    ]
    if intensity == "minmax":
        xf.append(_FullScaled("image"))
    else:
        xf.append(ScaleIntensityRangePercentilesd("image", 0.5, 99.5, 0.0, 1.0, clip=True))
    if mode != "infer":
        xf += [
            LoadImaged("label", image_only=True),
            EnsureChannelFirstd("label"),
            MaskToLabeld("label", threshold=threshold, binary=binary),
        ]
    xf.append(Resized(keys, spatial_size=size, mode=["bilinear", "nearest"][: len(keys)]))
    if mode == "train" and augment:
        xf += [
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys, prob=0.5, max_k=3),
            RandAffined(
                keys,
                prob=0.3,
                rotate_range=np.pi / 12,
                scale_range=0.1,
                mode=["bilinear", "nearest"],
                padding_mode="reflection",
            ),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
            RandScaleIntensityd("image", factors=0.1, prob=0.3),
            RandHistogramShiftd("image", num_control_points=5, prob=0.2),
        ]
    xf.append(EnsureTyped(keys, dtype=torch.float32, track_meta=mode == "infer" or None))
    return Compose(xf)


class _FullScaled(ScaleIntensityd):
    """Divide by the nominal full scale (255 for 8-bit data, 65535 for 16-bit, else the max)."""

    def __init__(self, keys) -> None:  # type: ignore[no-untyped-def]
        super().__init__(keys, minv=None, maxv=None, factor=None)

    def __call__(self, data):  # type: ignore[no-untyped-def]
        d = dict(data)
        for key in self.key_iterator(d):
            m = float(d[key].max()) if d[key].numel() else 0.0
            scale = 1.0 if m <= 1.0 else 255.0 if m <= 255.0 else 65535.0 if m <= 65535.0 else m
            d[key] = d[key] / scale
        return d


def get_dataset(
    datalist: Sequence[dict],
    transform: Compose,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    num_workers: int | None = 0,
    cache_rate: float = 1.0,
) -> Dataset:
    """Wrap a datalist in a MONAI dataset.

    Args:
        datalist: ``{"image", "label"}`` dicts.
        transform: e.g. :func:`get_transforms`; the deterministic prefix is cached.
        cache: "memory" (``CacheDataset``, default), "disk" (``PersistentDataset`` for data larger
            than memory; needs ``cache_dir``) or "none" (plain ``Dataset``).
        cache_dir: folder for "disk".
        num_workers: CacheDataset worker threads (0: in the main thread).
        cache_rate: fraction of items CacheDataset caches.

    Raises:
        ValueError: unknown ``cache``, or "disk" without ``cache_dir``.
    """
    if cache == "memory":
        return CacheDataset(list(datalist), transform, cache_rate=cache_rate, num_workers=num_workers, progress=False)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs cache_dir (a folder for PersistentDataset's files).")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        return PersistentDataset(list(datalist), transform, cache_dir=cache_dir)
    if cache == "none":
        return Dataset(list(datalist), transform)
    raise ValueError(f"cache must be 'memory', 'disk' or 'none', got {cache!r}.")
