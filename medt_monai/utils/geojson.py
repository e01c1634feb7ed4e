"""Objects as GeoJSON that QuPath imports: one polygon ``Feature`` per object of an instance map, in the slide's
level-0 pixel coordinates, with QuPath's ``objectType``, ``classification`` and ``measurements`` properties.

Coordinates are continuous pixel coordinates as QuPath uses them: the level-0 pixel ``(row, col)`` covers
``[col, col + 1) x [row, row + 1)``, so an object's outline runs along the edges of its pixels' area, not through
their centres. Outlines come from scikit-image's ``find_contours``; ``shapely`` checks each ring and repairs the rare
self-touching one (it is part of the ``slides`` extra).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as fill_polygon
from skimage.measure import approximate_polygon, find_contours

from medt_monai.utils.files import atomic_output

__all__ = ["OBJECT_TYPES", "FeatureSpool", "draw_labels", "feature_collection", "label_image", "object_features"]

#: QuPath's object types: annotations can be edited by hand, detections are lighter (one per nucleus or gland)
OBJECT_TYPES = ("annotation", "detection")


def _shapely():
    try:
        import shapely
    except ImportError as e:  # pragma: no cover - the slides extra installs it
        raise ImportError(
            "GeoJSON polygons need shapely: pip install 'medt-monai[slides]' (or pip install shapely)."
        ) from e
    return shapely


def _outline(mask: np.ndarray, tolerance: float):
    """The largest valid polygon of a boolean object mask, in the mask's pixel-centre coordinates (row, col)."""
    shapely = _shapely()
    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    ring = max(contours, key=len) - 1.0  # undo the padding; find_contours closes rings of padded masks
    if tolerance > 0:
        ring = approximate_polygon(ring, tolerance)
    polygon = shapely.Polygon(ring[:, ::-1])  # (x, y)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
        parts = [g for g in getattr(polygon, "geoms", [polygon]) if g.geom_type == "Polygon" and g.area > 0]
        if not parts:
            return None
        polygon = shapely.Polygon(max(parts, key=lambda g: g.area).exterior)
    if polygon.is_empty or polygon.area <= 0:
        return None
    return shapely.geometry.polygon.orient(polygon, sign=1.0)


def object_features(
    instances: np.ndarray,
    origin: Sequence[float] = (0.0, 0.0),
    scale: Sequence[float] = (1.0, 1.0),
    mpp: float | None = None,
    keep_box: Sequence[float] | None = None,
    object_type: str = "detection",
    class_name: str = "gland",
    color: Sequence[int] = (0, 160, 0),
    tolerance: float = 0.5,
) -> list[dict]:
    """One GeoJSON polygon ``Feature`` per object of ``instances``, placed in the slide's level-0 frame.

    A pixel ``(r, c)`` of ``instances`` covers the level-0 area from ``origin + (r, c) * scale`` to
    ``origin + (r + 1, c + 1) * scale`` (``origin`` and ``scale`` as ``(y, x)``).

    Args:
        instances: ``(H, W)`` object ids, 0 background.
        origin: level-0 ``(y, x)`` of the top-left corner of ``instances``' pixel ``(0, 0)``.
        scale: level-0 pixels per pixel of ``instances``, ``(y, x)``.
        mpp: micrometres per level-0 pixel; with it, every feature has the measurements ``"Area µm^2"`` and
            ``"Perimeter µm"`` (QuPath's names), without it ``"Area px^2"`` and ``"Perimeter px"`` (level-0 pixels).
        keep_box: level-0 ``(y0, x0, y1, x1)``: only the objects whose centroid lies in ``[y0, y1) x [x0, x1)`` are
            returned (the core of a block, so that blocks tiling a slide give every object once); None keeps all.
        object_type: ``"annotation"`` or ``"detection"`` (:data:`OBJECT_TYPES`).
        class_name: QuPath class of the objects.
        color: the class colour, RGB 0-255.
        tolerance: outline simplification in pixels of ``instances`` (Douglas-Peucker), 0 keeps every vertex.

    Raises:
        ValueError: an unknown ``object_type``, or ``instances`` that is not 2D.
    """
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {', '.join(map(repr, OBJECT_TYPES))}, got {object_type!r}.")
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be a 2D (H, W) map of object ids, got shape {instances.shape}.")
    if not np.issubdtype(instances.dtype, np.integer):
        instances = instances.astype(np.int64)
    shapely = _shapely()
    oy, ox = (float(v) for v in origin)
    sy, sx = (float(v) for v in scale)
    features = []
    # each object in its bounding box: no temporary of the image's size (a slide's block has 26 Mpx)
    for object_id, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        rows, cols = box
        mask = instances[rows, cols] == object_id
        in_rows, in_cols = np.nonzero(mask)
        n = len(in_rows)  # the centroid from exact integer sums: scipy's center_of_mass over the image, to the bit
        cy, cx = (rows.start * n + int(in_rows.sum())) / n, (cols.start * n + int(in_cols.sum())) / n
        y, x = oy + (cy + 0.5) * sy, ox + (cx + 0.5) * sx
        if keep_box is not None and not (keep_box[0] <= y < keep_box[2] and keep_box[1] <= x < keep_box[3]):
            continue
        polygon = _outline(mask, tolerance)
        if polygon is None:
            continue
        # pixel centres of the crop -> continuous level-0 coordinates
        polygon = shapely.affinity.affine_transform(
            polygon, [sx, 0.0, 0.0, sy, ox + (cols.start + 0.5) * sx, oy + (rows.start + 0.5) * sy]
        )
        area, perimeter = polygon.area, polygon.length
        measurements = (
            {"Area µm^2": area * mpp * mpp, "Perimeter µm": perimeter * mpp}
            if mpp
            else {"Area px^2": area, "Perimeter px": perimeter}
        )
        ring = [[round(px, 2), round(py, 2)] for px, py in polygon.exterior.coords]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": object_type,
                    "classification": {"name": class_name, "color": [int(c) for c in color]},
                    "measurements": {k: round(v, 3) for k, v in measurements.items()},
                },
            }
        )
    return features


def feature_collection(features: list[dict], **properties) -> dict:
    """A GeoJSON ``FeatureCollection`` of ``features`` (``properties``, e.g. the slide and the model, kept beside)."""
    collection = {"type": "FeatureCollection", "features": features}
    if properties:
        collection["properties"] = properties
    return collection


def label_image(
    features: Sequence[dict], shape: Sequence[int], downsample: float = 1.0, origin: Sequence[float] = (0.0, 0.0)
) -> np.ndarray:
    """The polygons of ``features`` drawn as an instance label image of a slide (or of a box of it) at ``downsample``:
    feature ``k`` (0-based) gets id ``k + 1``, background 0; later features overwrite earlier ones where they overlap.

    A pixel ``(i, j)`` of the image covers the level-0 area ``origin + [j, j + 1) x [i, i + 1)`` times ``downsample``,
    and is the object's when its centre lies inside the polygon's outer ring.

    Args:
        features: GeoJSON ``Polygon`` features in level-0 coordinates (:func:`object_features`).
        shape: the level-0 ``(height, width)`` the image covers (the slide's); the image is ``ceil(shape / downsample)``.
        downsample: level-0 pixels per pixel of the image, > 0.
        origin: level-0 ``(y, x)`` of the image's top-left corner.

    Returns:
        ``(H, W)`` uint16 ids, or uint32 where there are more than 65535 objects.

    Raises:
        ValueError: ``downsample <= 0``, or a feature that is not a ``Polygon``.
    """
    if not downsample > 0:
        raise ValueError(f"downsample must be > 0, got {downsample!r}.")
    size = tuple(max(1, int(np.ceil(float(n) / downsample))) for n in shape[:2])
    labels = np.zeros(size, np.uint16)
    return draw_labels(labels, features, downsample, origin)


def draw_labels(
    labels: np.ndarray,
    features: Sequence[dict],
    downsample: float = 1.0,
    origin: Sequence[float] = (0.0, 0.0),
    first_id: int = 1,
) -> np.ndarray:
    """Draw ``features`` into ``labels`` (see :func:`label_image`) with ids ``first_id, first_id + 1, ...``, so that a
    slide's label image can be drawn block by block; returns ``labels``, as uint32 once an id passes 65535.

    Raises:
        ValueError: a feature that is not a ``Polygon``.
    """
    if labels.dtype == np.uint16 and first_id + len(features) - 1 > np.iinfo(np.uint16).max:
        labels = labels.astype(np.uint32)
    for object_id, feature in enumerate(features, first_id):
        geometry = feature["geometry"]
        if geometry["type"] != "Polygon":
            raise ValueError(f"feature {object_id}: a label image draws Polygon features, got {geometry['type']!r}.")
        ring = (np.asarray(geometry["coordinates"][0], np.float64) - (origin[1], origin[0])) / downsample - 0.5
        # ^ (x, y) -> pixel coordinates with pixel centres at integers, as fill_polygon takes them
        rows, cols = fill_polygon(ring[:, 1], ring[:, 0], shape=labels.shape)
        labels[rows, cols] = object_id
    return labels


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class FeatureSpool:
    """A slide's features kept on disk until its ``FeatureCollection`` is written, so that memory holds one block's
    features however many objects the slide has (a 100k x 100k slide can have 10^5-10^6).

    Features go, one compact JSON line each, to an anonymous temporary file (in ``dir``, e.g. the output folder:
    deleted by the system when closed, also after a kill). :meth:`write` streams them into the collection,
    byte for byte ``json.dumps(feature_collection(features, **properties))`` in compact form, atomically.

    Args:
        dir: where the temporary file lives (default: the system's temporary folder).
    """

    def __init__(self, dir: str | Path | None = None) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8", dir=dir)
        self.count = 0

    def extend(self, features: Sequence[dict]) -> None:
        """Append ``features`` (GeoJSON ``Feature`` dicts)."""
        for feature in features:
            self._file.write(_dumps(feature) + "\n")
        self.count += len(features)

    def write(self, path: str | Path, **properties) -> None:
        """Write the collection of every feature so far to ``path`` (never half-written: a temporary file in its
        folder, then a rename); ``properties`` as in :func:`feature_collection`."""
        self._file.flush()
        self._file.seek(0)
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
            out.write('{"type":"FeatureCollection","features":[')
            for k, line in enumerate(self._file):
                out.write(("," if k else "") + line.rstrip("\n"))
            out.write("]" + (',"properties":' + _dumps(properties) if properties else "") + "}")
        self._file.seek(0, 2)

    def close(self) -> None:
        """Delete the temporary file."""
        self._file.close()
