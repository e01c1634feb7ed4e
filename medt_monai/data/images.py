"""Image files of a datalist: the extensions read, header sizes, image/mask pair checks, and listing and pairing the
image files of folders by name."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "INSTANCE_KEY",
    "ITK_EXTENSIONS",
    "PIL_EXTENSIONS",
    "add_instances",
    "check_pairs",
    "file_ext",
    "file_stem",
    "image_size",
    "list_images",
    "natural_key",
    "pair_by_name",
]

#: datalist key of the ground-truth instance map (0 background, one id per gland / nucleus) where a data set has one
INSTANCE_KEY = "instance"

PIL_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif")
ITK_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm")
IMAGE_EXTENSIONS = PIL_EXTENSIONS + ITK_EXTENSIONS


def file_ext(path: Path) -> str:
    """The lower-case extension of ``path`` (``.nii.gz`` counts as one), or ``""``."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def file_stem(path: Path) -> str:
    """The file name of ``path`` without its :func:`file_ext`."""
    return path.name[: -len(file_ext(path))] if file_ext(path) else path.name


def natural_key(s: str) -> list:
    """Sort key ordering the numbers in ``s`` by value (``img2`` before ``img10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def image_size(path: str | Path, full: bool = False) -> tuple[int, ...]:
    """Return the spatial size of an image file from its header, in ITK order (width, height, ...).

    PIL formats are read lazily (header only) unless ``full``; NIfTI via nibabel's header;
    other ITK formats via ITK's image information.

    Args:
        path: the image file.
        full: also decode all pixel data (detects truncated files).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as an image, or is truncated (``full``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found.")
    ext = file_ext(path)
    try:
        if ext in (".nii", ".nii.gz"):
            import nibabel as nib

            image = nib.load(str(path))
            if full:
                np.asanyarray(image.dataobj)
            return tuple(int(s) for s in image.shape if s > 1)[:3] or (1,)
        if ext in ITK_EXTENSIONS:
            import itk

            reader = itk.ImageFileReader.New(FileName=str(path))
            if full:
                reader.Update()
            else:
                reader.UpdateOutputInformation()
            size = reader.GetOutput().GetLargestPossibleRegion().GetSize()
            return tuple(int(s) for s in size if int(s) > 1)
        with Image.open(path) as im:
            if full:
                im.load()
            return tuple(int(s) for s in im.size)
    except (UnidentifiedImageError, OSError, RuntimeError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read as an image (corrupt, truncated or unsupported): {e}") from e


def check_pairs(datalist: Sequence[dict], verify: str = "header") -> None:
    """Check each ``image``/``label`` pair (and ``instance`` map where present): readable and of the same spatial size.

    Args:
        datalist: list of ``{"image": path, "label": path}`` dicts (optionally with ``"instance": path``).
        verify: "header" (read headers only, fast), "full" (decode every image, detects
            truncated files) or "none".

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is unreadable, or a mask's (or instance map's) size differs from its image's
            (the message names both files and sizes).
    """
    if verify not in ("header", "full", "none"):
        raise ValueError(f"verify must be 'header', 'full' or 'none', got {verify!r}.")
    if verify == "none":
        return
    for item in datalist:
        isize = image_size(item["image"], full=verify == "full")
        for key, what in (("label", "mask"), (INSTANCE_KEY, "instance map")):
            if key not in item:
                continue
            lsize = image_size(item[key], full=verify == "full")
            if isize[:2] != lsize[:2]:
                raise ValueError(
                    f"{what} {item[key]} has size {lsize[:2]} (W, H) but its image {item['image']} has size "
                    f"{isize[:2]}; {what}s must have the size of their image."
                )


def list_images(folder: Path, what: str) -> dict[str, Path]:
    """Map file stem -> path for the image files (:data:`IMAGE_EXTENSIONS`, hidden files left out) in ``folder``.

    Args:
        folder: the folder to list.
        what: what the folder holds ("image", "mask", ...), for the messages.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: two files share a stem, or the folder holds no image file.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found.")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or file_ext(p) not in IMAGE_EXTENSIONS:
            continue
        stem = file_stem(p)
        if stem in found:
            raise ValueError(
                f"{folder}: duplicate name {stem!r} ({found[stem].name} and {p.name}); each name must be unique."
            )
        found[stem] = p
    if not found:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this {what} folder.")
    return found


def pair_by_name(images: dict[str, Path], masks: dict[str, Path], mask_dir: Path, suffix: str = "") -> list[dict]:
    """``{"image", "label"}`` items of each image and the mask of the same stem (plus ``suffix``), in natural order.

    Args:
        images: stem -> image file, as :func:`list_images` returns.
        masks: stem -> mask file.
        mask_dir: the folder of the masks, for the message.
        suffix: what a mask's stem adds to its image's, e.g. "_mask".

    Raises:
        FileNotFoundError: an image has no mask (the message names the file expected).
    """
    out = []
    for stem in sorted(images, key=natural_key):
        mask = masks.get(stem + suffix)
        if mask is None:
            raise FileNotFoundError(
                f"mask missing for image {images[stem]}: expected {mask_dir / (stem + suffix)}.<ext> "
                f"(same name{' + ' + repr(suffix) if suffix else ''}, any of {', '.join(IMAGE_EXTENSIONS)})."
            )
        out.append({"image": str(images[stem]), "label": str(mask)})
    return out


def add_instances(items: list[dict], instance_dir: Path) -> None:
    """Add ``"instance"`` (the file in ``instance_dir`` named like the image, any extension) to every item.

    Raises:
        FileNotFoundError: ``instance_dir`` is missing, or an image has no instance map there.
        ValueError: see :func:`list_images`.
    """
    instances = list_images(instance_dir, "instance label")
    for item in items:
        stem = file_stem(Path(item["image"]))
        if stem not in instances:
            raise FileNotFoundError(
                f"instance label missing for image {item['image']}: expected {instance_dir / stem}.<ext> "
                f"(same name, any of {', '.join(IMAGE_EXTENSIONS)})."
            )
        item[INSTANCE_KEY] = str(instances[stem])
