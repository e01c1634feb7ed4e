"""Transform chains of the workflows and cached datasets for 2D segmentation with the MedT networks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

from medt_monai.data.montage import MontageDataset
from medt_monai.inferers import check_training_crops
from medt_monai.transforms import augmentation as random_transforms
from medt_monai.transforms import network_size_crops, preprocessing

__all__ = ["get_transforms", "get_dataset", "training_dataset"]


def get_transforms(
    mode: str = "train",
    img_size: int = 128,
    in_channels: int = 3,
    intensity: str = "full_range",
    intensity_max: float = 255.0,
    binary: bool = True,
    threshold: float | None = 0.5,
    image_scale: float | None = None,
    crops_per_image: int = 1,
    training_crops: str = "image",
    augmentation: str = "dihedral_color_affine",
    flip_prob: float = 0.5,
    instance_key: str = "instance",
    output: str = "semantic",
    boundary_width: int = 2,
) -> Compose:
    """The transform chain of one workflow for 2D segmentation data: the chain ``python -m monai.bundle run`` applies
    (the bundle's configs call this function with their settings).

    - ``"train"``: :func:`~medt_monai.transforms.preprocessing` (load, scale, resize image and mask), the training
      crops of zoomed images (:func:`~medt_monai.transforms.network_size_crops`; none for
      ``training_crops="montage"``, whose :class:`~medt_monai.data.MontageDataset` cuts the windows) and the random
      ``augmentation`` (:func:`~medt_monai.transforms.augmentation`);
    - ``"eval"`` (validation): the preprocessing of image and mask;
    - ``"test"`` (evaluation): the image to the network's size, the mask (and instance map) at their own size;
    - ``"infer"``: the image only; ``monai.transforms.Invertd`` on the prediction with this chain as ``transform``
      brings it back to the original size.

    Args:
        mode: one of :data:`medt_monai.transforms.MODES`.
        img_size: network input size (height = width), the bundle's ``img_size``.
        in_channels: 1 (gray, e.g. ultrasound) or 3 (RGB, e.g. H&E).
        intensity: "full_range" (by the stored type: 255 for 8-bit, 65535 for 16-bit) or "percentile" (per image
            0.5-99.5 percentile to 0..1, robust for 16-bit and NIfTI).
        intensity_max: full-scale value of floating-point images under "full_range".
        binary: masks to {0, 1}; False keeps integer class ids.
        threshold: mask threshold as a fraction of full scale (None: non-zero is foreground).
        image_scale: zoom factor of the images (the network then sees ``img_size`` crops and sliding windows), or
            None to squeeze every image to ``img_size``.
        crops_per_image: ``"train"`` with ``image_scale``: random crops per image and epoch.
        training_crops: ``"train"``: how the windows are cut, one of :data:`medt_monai.inferers.TRAINING_CROPS`:
            ``"image"`` (random crops of each image) or ``"montage"`` (by :func:`training_dataset`; needs
            ``image_scale`` and one crop per image).
        augmentation: ``"train"``: one of :data:`medt_monai.transforms.AUGMENTATIONS` (``"none"``: no augmentation).
        flip_prob: ``"train"``: probability of the random flip.
        instance_key: datalist key of the instance maps (``"test"``, and the training target with instances).
        output: ``"semantic"`` (the mask) or ``"instances"`` (``"train"`` and ``"eval"`` learn the three classes of
            :class:`~medt_monai.transforms.InstancesToBoundaryClasses` made from the instance map), see
            :data:`medt_monai.transforms.OUTPUTS`.
        boundary_width: ``output="instances"``: the boundary band's width in the network's pixels.

    Raises:
        ValueError: unknown ``mode``, ``intensity``, ``augmentation`` or ``training_crops``, an ``img_size`` that is not
            one positive int, or ``crops_per_image`` / ``training_crops="montage"`` that does not fit ``image_scale``.
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"img_size must be one positive int (the bundle's square input size), got {img_size!r}.")
    check_training_crops(training_crops)
    if training_crops == "montage" and (image_scale is None or crops_per_image != 1):
        raise ValueError(
            "training_crops='montage' cuts one window per image from montages of zoomed images: it needs image_scale "
            f"(--image_scale) and crops_per_image=1, got image_scale={image_scale!r}, crops_per_image={crops_per_image!r}."
        )
    chain = preprocessing(
        mode,
        img_size=img_size,
        image_scale=image_scale,
        in_channels=in_channels,
        intensity=intensity,
        intensity_max=intensity_max,
        binary=binary,
        threshold=threshold,
        instance_key=instance_key,
        output=output,
        boundary_width=boundary_width,
    )
    if mode == "train":
        if training_crops == "image":
            chain += network_size_crops(["image", "label"], img_size, image_scale, crops_per_image)
        chain += random_transforms(augmentation, flip_prob)
    return Compose(chain)


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


def training_dataset(
    data: Sequence[dict],
    transform: Compose,
    training_crops: str = "image",
    img_size: int = 128,
    seed: int = 0,
    num_workers: int | None = 0,
) -> Dataset:
    """The training set of ``train.json``: ``CacheDataset`` for ``training_crops="image"`` (``transform`` crops each
    image), :class:`~medt_monai.data.MontageDataset` for ``"montage"``; both cache ``transform``'s deterministic part.

    Args:
        data: the training datalist.
        transform: :func:`get_transforms` ``("train", training_crops=training_crops, ...)``.
        training_crops: one of :data:`medt_monai.inferers.TRAINING_CROPS`.
        img_size: ``"montage"``: the window's size.
        seed: ``"montage"``: the montages' random seed.
        num_workers: caching threads.

    Raises:
        ValueError: an unknown ``training_crops``.
    """
    check_training_crops(training_crops)
    if training_crops == "montage":
        return MontageDataset(data, transform, img_size=img_size, seed=seed, num_workers=num_workers)
    return get_dataset(data, transform, num_workers=num_workers)
