"""MoNuSeg: Aperio ImageScope XML polygon annotations rasterised into binary masks and instance maps (cached once),
and the datalist of the official download."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import polygon as draw_polygon

from medt_monai.data.cache import default_cache
from medt_monai.data.images import INSTANCE_KEY, check_pairs, file_stem, image_size
from medt_monai.utils.files import atomic_save_png

__all__ = ["cached_instances", "monuseg_datalist", "read_xml_polygons", "rasterize_xml", "rasterize_xml_instances"]


def read_xml_polygons(xml_path: str | Path) -> list[np.ndarray]:
    """Read the ``Region`` polygons of an Aperio ImageScope XML file (the MoNuSeg annotation format).

    Regions with fewer than 3 vertices cannot enclose an area; they are skipped with a warning
    that names the file and region id.

    Args:
        xml_path: the ``.xml`` file.

    Returns:
        one float array of (x, y) vertices, shape (N, 2), per usable region.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not well-formed XML, has no ``Region`` elements, or a vertex has
            a missing or non-numeric/non-finite ``X``/``Y`` (the message names file and region).
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise FileNotFoundError(f"{xml_path}: annotation XML not found.")
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as e:
        raise ValueError(f"{xml_path}: not well-formed XML ({e}).") from e
    regions = tree.getroot().findall(".//Region")
    if not regions:
        raise ValueError(f"{xml_path}: no <Region> elements; not an Aperio ImageScope/MoNuSeg annotation file.")
    polys: list[np.ndarray] = []
    for region in regions:
        rid = region.get("Id", "?")
        pts = []
        for vertex in region.findall(".//Vertex"):
            try:
                x, y = float(vertex.get("X")), float(vertex.get("Y"))  # type: ignore[arg-type]
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"{xml_path}: region Id={rid} has a vertex with missing or non-numeric X/Y "
                    f"(X={vertex.get('X')!r}, Y={vertex.get('Y')!r})."
                ) from e
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ValueError(f"{xml_path}: region Id={rid} has a non-finite vertex ({x}, {y}).")
            pts.append((x, y))
        if len(pts) < 3:
            warnings.warn(f"{xml_path}: region Id={rid} has {len(pts)} vertices (< 3); skipped.", stacklevel=2)
            continue
        polys.append(np.asarray(pts, dtype=np.float64))
    return polys


def rasterize_xml_instances(xml_path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise the polygons of a MoNuSeg XML file into an instance map, one id per nucleus.

    Region ``k`` of the file (in file order, skipped regions not counted) gets id ``k``; where polygons overlap, the
    later region's id wins.

    Args:
        xml_path: the ``.xml`` file.
        shape: (height, width) of the image the annotation belongs to; vertices outside are clipped.

    Returns:
        int32 map of ``shape``: 0 background, 1..N nuclei (ids of regions entirely outside the image are absent).

    Raises:
        FileNotFoundError, ValueError: see :func:`read_xml_polygons`.
    """
    out = np.zeros(tuple(shape), dtype=np.int32)
    for k, pts in enumerate(read_xml_polygons(xml_path), start=1):
        rr, cc = draw_polygon(pts[:, 1], pts[:, 0], shape=out.shape)
        out[rr, cc] = k
    return out


def rasterize_xml(xml_path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise the polygons of a MoNuSeg XML file into a binary mask (the foreground of
    :func:`rasterize_xml_instances`).

    Args:
        xml_path: the ``.xml`` file.
        shape: (height, width) of the image the annotation belongs to; vertices outside are clipped.

    Returns:
        uint8 mask of ``shape`` with values 0 and 255.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_xml_polygons`.
    """
    return (rasterize_xml_instances(xml_path, shape) > 0).astype(np.uint8) * 255


def cached_instances(xml: Path, image: Path, cache: Path) -> Path:
    """The instance map of a MoNuSeg XML file for ``image``, rasterised once into ``cache`` (redone when older).

    Args:
        xml: the annotation file.
        image: the image it annotates (gives the map's size and name).
        cache: the folder of the maps.

    Returns:
        ``<cache>/<image stem>_instances.png`` (8- or 16-bit PNG, written atomically).

    Raises:
        FileNotFoundError, ValueError: see :func:`read_xml_polygons`; an unreadable image.
    """
    dest = cache / f"{file_stem(image)}_instances.png"
    if not dest.is_file() or dest.stat().st_mtime < xml.stat().st_mtime:
        w, h = image_size(image)[:2]
        atomic_save_png(rasterize_xml_instances(xml, (h, w)), dest)
    return dest


def monuseg_datalist(root: str | Path, cache_dir: str | Path | None = None, verify: str = "header") -> list[dict]:
    """Datalist of an official MoNuSeg download: ``Tissue Images/*.tif`` + ``Annotations/*.xml``.

    Also accepts a folder holding the ``.tif`` and ``.xml`` files side by side (the official test
    download). Each XML is rasterised once (:func:`medt_monai.data.rasterize_xml_instances`) into an
    instance map (``"instance"``, one id per nucleus) and its 0/255 mask (``"label"``), PNGs under
    ``cache_dir`` (default ``<root>/.medt_monai_cache/monuseg``), written atomically.

    Args:
        root: the unpacked download.
        cache_dir: where the instance maps and masks go.
        verify: see :func:`~medt_monai.data.check_pairs`.

    Raises:
        FileNotFoundError: ``root`` missing, or an image without its XML.
        ValueError: no images, unreadable image, or broken XML (names the file).
    """
    root = Path(root)
    img_dir, xml_dir = root / "Tissue Images", root / "Annotations"
    if not img_dir.is_dir():
        img_dir = xml_dir = root
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: MoNuSeg folder not found.")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png") and p.is_file())
    if not images:
        raise ValueError(f"{img_dir}: no .tif images; expected the official MoNuSeg layout 'Tissue Images/*.tif'.")
    cache = Path(cache_dir) if cache_dir is not None else default_cache(root, "monuseg")
    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for img in images:
        xml = xml_dir / f"{img.stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"annotation missing for image {img}: expected {xml}.")
        instances = cached_instances(xml, img, cache)
        dest = cache / f"{img.stem}.png"
        if not dest.is_file() or dest.stat().st_mtime < instances.stat().st_mtime:
            with Image.open(instances) as im:
                atomic_save_png((np.asarray(im) > 0).astype(np.uint8) * 255, dest)
        items.append({"image": str(img), "label": str(dest), INSTANCE_KEY: str(instances)})
    check_pairs(items, verify)
    return items
