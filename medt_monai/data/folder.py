"""Datalists of images and masks in folders, matched by file name: a plain images/masks folder pair and the MedT
layout (``img/`` + ``labelcol/``)."""

from __future__ import annotations

from pathlib import Path

from medt_monai.data.cache import default_cache
from medt_monai.data.images import INSTANCE_KEY, add_instances, check_pairs, file_stem, list_images, pair_by_name
from medt_monai.data.monuseg import cached_instances

__all__ = ["folder_datalist", "medt_layout_datalist"]


def folder_datalist(
    image_dir: str | Path,
    mask_dir: str | Path,
    mask_suffix: str = "",
    verify: str = "header",
    instance_dir: str | Path | None = None,
) -> list[dict]:
    """Datalist of a generic image folder and mask folder matched by file name (extension may differ).

    Args:
        image_dir: folder of images (PNG, BMP, TIFF, JPEG, NIfTI, NRRD, MHA, ...).
        mask_dir: folder of masks named like their image (plus ``mask_suffix`` before the extension).
        mask_suffix: e.g. "_mask" for ``a.png`` / ``a_mask.png``.
        verify: see :func:`~medt_monai.data.check_pairs`.
        instance_dir: optional folder of ground-truth instance maps (0 background, one integer id per object) named
            like their image; they become the items' ``"instance"`` (for the object-level metrics).

    Raises:
        FileNotFoundError: a folder is missing, or an image has no mask (or no instance map with ``instance_dir``).
        ValueError: empty folder, duplicate names, unreadable file, or size mismatch (names the file).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    items = pair_by_name(list_images(image_dir, "image"), list_images(mask_dir, "mask"), mask_dir, mask_suffix)
    if instance_dir is not None:
        add_instances(items, Path(instance_dir))
    check_pairs(items, verify)
    return items


def medt_layout_datalist(split_dir: str | Path, verify: str = "header") -> list[dict]:
    """Datalist of one split of the MedT layout: ``<split_dir>/img/*`` + ``<split_dir>/labelcol/*`` (same names).

    Instance labels, where the split has them, become the items' ``"instance"``: ``<split_dir>/labelinst/*``
    (instance maps named like the images, e.g. GlaS gland ids), else ``<split_dir>/xml/<name>.xml`` (MoNuSeg
    polygons, rasterised once into instance maps under ``<split_dir>/.medt_monai_cache/`` or the user cache).

    Args:
        split_dir: the split's folder, e.g. ``<root>/train``.
        verify: see :func:`~medt_monai.data.check_pairs`.

    Raises:
        FileNotFoundError, ValueError: see :func:`folder_datalist`; a broken XML file names the file.
    """
    split_dir = Path(split_dir)
    inst_dir = split_dir / "labelinst"
    items = folder_datalist(
        split_dir / "img", split_dir / "labelcol", verify=verify, instance_dir=inst_dir if inst_dir.is_dir() else None
    )
    xml_dir = split_dir / "xml"
    if not inst_dir.is_dir() and xml_dir.is_dir():
        cache = default_cache(split_dir, "instances")
        for item in items:
            img = Path(item["image"])
            xml = xml_dir / f"{file_stem(img)}.xml"
            if not xml.is_file():
                raise FileNotFoundError(f"annotation missing for image {img}: expected {xml}.")
            item[INSTANCE_KEY] = str(cached_instances(xml, img, cache))
    return items
