"""MoNuSeg (Aperio ImageScope XML) polygon annotations rasterised into binary masks and instance maps."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

__all__ = ["read_xml_polygons", "rasterize_xml", "rasterize_xml_instances"]


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
