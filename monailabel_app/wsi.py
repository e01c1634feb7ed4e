"""Whole-slide inference for QuPath: the bundle's slide command (``inference.json`` + ``inference_wsi.json``) on a
region of a slide, and its objects in the formats MONAI Label's ``/infer/wsi`` answers with (ASAP XML, DSA JSON, or
a GeoJSON ``FeatureCollection`` for ``output=json``); and back: the ASAP label QuPath saves for a region, as a PNG
image and mask the bundle's training reads.

Coordinates are level-0 pixels of the slide that was run (for an uploaded region, of the region itself), continuous
as QuPath uses them. The objects are those whose centroid lies in the region (the slide command's rule), each cut to
the region and dropped under ``min_area`` level-0 px².
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "asap_objects",
    "asap_xml",
    "dsa_json",
    "feature_collection",
    "label_region_pngs",
    "region_polygons",
    "run_slide_command",
    "write_upload_tiff",
]


def run_slide_command(bundle: Path, slide: Path, region: Sequence[int] | None, output_dir: Path) -> dict:
    """Run the bundle's slide command on ``slide`` (``region``: level-0 ``(x, y, width, height)``, None: all of it)
    in this process, on the bundle's ``device`` (the first CUDA GPU if any, else the CPU), and return the GeoJSON
    ``FeatureCollection`` it writes to ``output_dir``."""
    from monai.bundle import run

    configs = [str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "inference_wsi.json")]
    run(
        config_file=configs,
        logging_file=False,
        bundle_root=str(bundle),
        slide=str(slide),
        region=[int(v) for v in region] if region is not None else None,
        dataset_dir=None,
        output_dir=str(output_dir),
    )
    path = output_dir / f"{slide.stem}.geojson"
    if not path.is_file():
        raise RuntimeError(f"the slide command wrote no {path.name} in {output_dir}")
    return json.loads(path.read_text())


def write_upload_tiff(image_file: Path, tiff: Path, mpp: float) -> Path:
    """An uploaded region (PNG/JPEG, no resolution) as a one-level TIFF the slide command reads, at ``mpp`` µm/px."""
    import numpy as np
    from PIL import Image

    from medt_monai.data import write_pyramidal_tiff

    with Image.open(image_file) as im:
        rgb = np.asarray(im.convert("RGB"))
    return write_pyramidal_tiff(tiff, rgb, mpp, levels=1)


def region_polygons(collection: dict, region: Sequence[int] | None = None, min_area: float = 0.0) -> list[dict]:
    """``[{"label", "color": [r, g, b], "points": [[x, y], ...]}]``: the collection's polygons cut to ``region``
    (level-0 ``(x, y, width, height)``; None: uncut), the parts under ``min_area`` px² dropped; rings not repeated
    at their end."""
    import shapely
    from shapely.geometry import box, shape

    clip = box(region[0], region[1], region[0] + region[2], region[1] + region[3]) if region is not None else None
    out = []
    for feature in collection.get("features", []):
        geometry = shape(feature["geometry"])
        if clip is not None:
            geometry = geometry.intersection(clip)
        classification = feature.get("properties", {}).get("classification", {})
        label, color = classification.get("name", "Object"), classification.get("color", [255, 0, 0])
        for part in shapely.get_parts(geometry):
            if part.geom_type != "Polygon" or part.is_empty or part.area < max(min_area, 1e-9):
                continue
            ring = [[round(x, 2), round(y, 2)] for x, y in part.exterior.coords[:-1]]
            out.append({"label": str(label), "color": [int(c) for c in color], "points": ring})
    return out


def _hex(color: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color[:3])


def asap_xml(polygons: list[dict], name: str, model: str, location: Sequence[int], size: Sequence[int]) -> str:
    """ASAP annotation XML as QuPath's MONAI Label extension reads it: one ``Annotation`` (``Name`` = class,
    ``Color``) per polygon, its ``Coordinates/Coordinate`` ``X``, ``Y`` in order; attribute values escaped."""
    root = ET.Element("ASAP_Annotations")
    attrs = {"Name": name, "Description": f"{model} objects", "Model": model}
    attrs.update(zip("XYWH", (str(int(v)) for v in (*location, *size))))
    annotations = ET.SubElement(root, "Annotations", attrs)
    groups = {}
    for polygon in polygons:
        color = _hex(polygon["color"])
        groups.setdefault(polygon["label"], color)
        annotation = ET.SubElement(
            annotations, "Annotation",
            {"Name": polygon["label"], "Type": "Polygon", "PartOfGroup": polygon["label"], "Color": color},
        )  # fmt: skip
        coordinates = ET.SubElement(annotation, "Coordinates")
        for order, (x, y) in enumerate(polygon["points"]):
            ET.SubElement(coordinates, "Coordinate", {"Order": str(order), "X": str(x), "Y": str(y)})
    group_list = ET.SubElement(root, "AnnotationGroups")
    for label, color in groups.items():
        ET.SubElement(ET.SubElement(group_list, "Group", {"Name": label, "PartOfGroup": "None", "Color": color}),
                      "Attributes")  # fmt: skip
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def dsa_json(polygons: list[dict], name: str, model: str) -> dict:
    """A Digital Slide Archive annotation: one closed ``polyline`` element per polygon, points ``[x, y, 0]``."""
    elements = [
        {
            "type": "polyline",
            "closed": True,
            "group": p["label"],
            "label": {"value": p["label"]},
            "lineColor": "rgb({},{},{})".format(*p["color"][:3]),
            "lineWidth": 2.0,
            "points": [[x, y, 0] for x, y in p["points"]],
        }
        for p in polygons
    ]
    return {"name": name, "description": f"{model} objects", "elements": elements}


def feature_collection(polygons: list[dict], **properties) -> dict:
    """The polygons as a GeoJSON ``FeatureCollection`` of QuPath annotations (closed rings), ``properties`` beside."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[*p["points"], p["points"][0]]]},
            "properties": {"objectType": "annotation", "classification": {"name": p["label"], "color": p["color"]}},
        }
        for p in polygons
    ]
    return {"type": "FeatureCollection", "features": features, "properties": properties}


def asap_objects(xml_file: Path) -> tuple[list[int], list[tuple[str, list[tuple[float, float]]]]]:
    """The box ``[x, y, w, h]`` and the ``(class, level-0 points)`` of an ASAP label as QuPath's extension saves it
    (points relative to the ``Annotations`` element's ``X``, ``Y``; a box of zero size: the objects' bounds)."""
    root = ET.parse(xml_file).getroot()
    group = root.find("Annotations")
    x, y, w, h = (int(float(group.get(k, 0))) if group is not None else 0 for k in "XYWH")
    objects = []
    for annotation in root.iter("Annotation"):
        points = [(x + float(c.get("X")), y + float(c.get("Y"))) for c in annotation.iter("Coordinate")]
        if len(points) >= 3:
            objects.append((annotation.get("Name", ""), points))
    if (w <= 0 or h <= 0) and objects:
        xs, ys = [p[0] for _, ps in objects for p in ps], [p[1] for _, ps in objects for p in ps]
        x, y = int(min(xs)), int(min(ys))
        w, h = int(max(xs)) + 1 - x, int(max(ys)) + 1 - y
    return [x, y, w, h], objects


def label_region_pngs(
    slide: Path, xml_file: Path, out_dir: Path, labels: dict[str, int], image_mpp: float, max_side: int = 8192
) -> tuple[Path, Path] | None:
    """The box of an ASAP label as a training pair the bundle reads: ``<out_dir>/<slide stem>.png`` (the slide's
    pixels) and ``<slide stem>_label.png`` (each object filled with its class's index in ``labels``, matched without
    case; other classes left out), both resampled to ``image_mpp`` µm/px. Made again only when the label is newer.
    None (with the reason logged by the caller) when the box is empty or larger than ``max_side`` level-0 pixels."""
    import numpy as np
    from PIL import Image, ImageDraw

    from medt_monai.data import open_slide, slide_mpp

    image_png, label_png = out_dir / f"{slide.stem}.png", out_dir / f"{slide.stem}_label.png"
    if label_png.is_file() and label_png.stat().st_mtime >= xml_file.stat().st_mtime:
        return image_png, label_png
    (x, y, w, h), objects = asap_objects(xml_file)
    if w <= 0 or h <= 0 or max(w, h) > max_side:
        return None
    reader, wsi = open_slide(slide)
    factor = slide_mpp(reader, wsi, slide) / image_mpp
    data, _ = reader.get_data(wsi, location=(y, x), size=(h, w), level=0)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = Image.fromarray(np.ascontiguousarray(np.moveaxis(np.asarray(data)[:3], 0, -1)))
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    lower = {k.lower(): v for k, v in labels.items()}
    for name, points in objects:
        if name.lower() in lower:
            draw.polygon([((px - x) * factor, (py - y) * factor) for px, py in points], fill=int(lower[name.lower()]))
    out_dir.mkdir(parents=True, exist_ok=True)
    image.resize(size, Image.BILINEAR).save(image_png)
    mask.save(label_png)
    return image_png, label_png
