"""The bundle's transform chains and cached datasets for 2D segmentation with the MedT networks."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

from medt_monai.transforms import INTENSITY_SCALINGS

__all__ = ["BUNDLE_DIR", "get_transforms", "get_dataset", "pil_to_rgb_or_gray"]

#: the bundle of this repository, whose configs define the transform chains.
BUNDLE_DIR = Path(__file__).resolve().parents[2] / "bundle"

#: the chain of each mode: (config file, config id).
_CHAINS = {
    "train": ("train.json", "train#preprocessing"),
    "eval": ("train.json", "validate#preprocessing"),
    "infer": ("inference.json", "preprocessing"),
}


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
    img_size: int = 128,
    in_channels: int = 3,
    augment: bool = True,
    binary: bool = True,
    threshold: float | None = 0.5,
    intensity: str = "full_range",
    bundle_dir: str | Path | None = None,
) -> Compose:
    """The bundle's transform chain for 2D segmentation data, read from its configs.

    The chains are the ones ``python -m monai.bundle run`` applies, built from ``configs/train.json`` (``"train"``:
    ``train#preprocessing``, ``"eval"``: ``validate#preprocessing``) or ``configs/inference.json`` (``"infer"``:
    ``preprocessing``) with the arguments as config overrides:

    - load the image (PIL for PNG/BMP/JPEG/TIFF with palette images read as RGB, nibabel/ITK for NIfTI and the other
      ITK formats) in its stored type and scale it to [0, 1]
      (:class:`~medt_monai.transforms.ScaleIntensityFullRanged`: 8-bit by 255, 16-bit by 65535, floats by 255; or
      ``intensity="percentile"``: 0.5-99.5 percentile to 0..1), :class:`~medt_monai.transforms.ToChannelsd` to
      ``in_channels``; load the mask and :class:`~medt_monai.transforms.MaskToLabeld`; resize both to ``img_size``
      (bilinear for images, nearest for masks);
    - ``"train"`` adds the bundle's default augmentation (random flips, 90-degree rotations, intensity scale and
      shift, gamma) when ``augment``;
    - ``"infer"`` is image only; ``monai.transforms.Invertd`` on the prediction with this chain as ``transform``
      brings it back to the original size.

    Args:
        mode: "train", "eval" or "infer".
        img_size: network input size (height = width), the bundle's ``img_size``.
        in_channels: 1 (gray, e.g. ultrasound) or 3 (RGB, e.g. H&E).
        augment: apply random augmentation in "train" (``False``: the bundle's ``--augmentation none``).
        binary: masks to {0, 1}; False keeps integer class ids.
        threshold: mask threshold as a fraction of full scale (None: non-zero is foreground).
        intensity: "full_range" (by the stored type: 255 for 8-bit, 65535 for 16-bit) or "percentile" (per image
            0.5-99.5 percentile to 0..1, robust for 16-bit and NIfTI). "minmax", the former name of "full_range",
            is deprecated.
        bundle_dir: the bundle whose configs define the chains; ``None``: :data:`BUNDLE_DIR`, the bundle of this
            repository.

    Raises:
        ValueError: unknown ``mode`` or ``intensity``, or an ``img_size`` that is not one positive int.
        FileNotFoundError: the bundle's config file is missing.
    """
    if mode not in _CHAINS:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _CHAINS))}, got {mode!r}.")
    if intensity == "minmax":
        warnings.warn(
            'intensity="minmax" is deprecated, use "full_range" (same scaling).', DeprecationWarning, stacklevel=2
        )
        intensity = "full_range"
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"img_size must be one positive int (the bundle's square input size), got {img_size!r}.")
    from monai.bundle import ConfigParser

    config_name, chain = _CHAINS[mode]
    config_file = Path(bundle_dir if bundle_dir is not None else BUNDLE_DIR) / "configs" / config_name
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: get_transforms builds the chains from the bundle's configs; pass bundle_dir "
            "(the folder holding configs/train.json and configs/inference.json)."
        )
    parser = ConfigParser()
    parser.read_config(str(config_file))
    if intensity not in INTENSITY_SCALINGS:
        raise ValueError(f"intensity must be one of {', '.join(map(repr, INTENSITY_SCALINGS))}, got {intensity!r}.")
    parser.update({"img_size": img_size, "in_channels": in_channels, "intensity": intensity})
    if mode != "infer":
        parser.update({"binary_labels": binary, "label_threshold": threshold})
    if mode == "train" and not augment:
        parser["augmentation"] = "none"
    return parser.get_parsed_content(chain)


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
