"""Do the slide command and the tile command find the same objects? A pyramidal TIFF is made from image tiles with
instance labels (e.g. one fold's validation images of GlaS), both bundle commands run on it with the same weights and
options, and the objects are compared per tile:

- slide vs tile: the slide's polygons (those whose centroid lies on the tile) drawn into the tile's frame against the
  tile command's ``*_instances.png``, object F1 pooled over the tiles (the GlaS rule: an object matches when it covers
  more than half of its partner);
- each against the ground-truth instance maps: pooled object F1, mean per-tile object F1 and AJI;
- slide vs tile split by the tile command's objects: those touching the tile's edge (their context differs most between
  the two commands) and the interior ones, with the slide's objects that lie mostly on each.

::

    python scripts/compare_slide_tiles.py --data_dir ../shared/data/glas --num_folds 3 --fold 0 \
        --ckpt_path RUN/model.pt --work_dir /tmp/compare -- --output instances --image_scale 0.2 --object_min_size 3200

Arguments after ``--`` go to both commands. The tiles are laid out on white glass in a grid (``--columns``), at
``--mpp`` micrometres per pixel (GlaS: 0.62), in a 3-level pyramid.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medt_monai.data import dataset_splits, write_pyramidal_tiff
from medt_monai.inferers import GLASS_RGB
from medt_monai.metrics.object_metrics import (
    compute_aggregated_jaccard_index,
    compute_object_detection_counts,
    compute_object_f1,
    pooled_object_f1,
)
from medt_monai.utils.geojson import label_image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundle" / "configs"


def montage(
    tiles: list[Path], columns: int, gap: int = 0, glass: int = GLASS_RGB
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The tiles in a grid of equal cells on glass, ``gap`` pixels of glass between them, and each tile's
    (y0, x0, y1, x1) in the montage."""
    sizes = [Image.open(p).size for p in tiles]  # (w, h)
    cell_h, cell_w = max(h for _, h in sizes) + gap, max(w for w, _ in sizes) + gap
    rows = math.ceil(len(tiles) / columns)
    image = np.full((rows * cell_h + gap, columns * cell_w + gap, 3), glass, np.uint8)
    boxes = []
    for k, path in enumerate(tiles):
        tile = np.asarray(Image.open(path).convert("RGB"))
        y, x = gap + (k // columns) * cell_h, gap + (k % columns) * cell_w
        image[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        boxes.append((y, x, y + tile.shape[0], x + tile.shape[1]))
    return image, boxes


def rasterize(features: list[dict], box: tuple[int, int, int, int]) -> np.ndarray:
    """The polygons whose centroid lies in ``box`` as an instance map of the box (pixel centres inside a polygon)."""
    import shapely

    y0, x0, y1, x1 = box
    centroids = [shapely.geometry.shape(feature["geometry"]).centroid for feature in features]
    on_box = [f for f, c in zip(features, centroids) if y0 <= c.y < y1 and x0 <= c.x < x1]
    return label_image(on_box, (y1 - y0, x1 - x0), origin=(y0, x0)).astype(np.int32)


def split_at_border(reference: np.ndarray, other: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"border": ..., "interior": ...}``: ``(reference, other)`` kept to the reference's objects that touch the
    image's edge, or to the others; an object of ``other`` goes with the part most of its pixels lie on."""
    edge_ids = np.unique(np.concatenate([reference[0], reference[-1], reference[:, 0], reference[:, -1]]))
    on_border = np.isin(reference, edge_ids[edge_ids > 0])
    parts = {}
    for name, keep in (("border", on_border), ("interior", (reference > 0) & ~on_border)):
        dropped = (reference > 0) & ~keep
        kept_other = other.copy()
        for object_id in np.unique(other[other > 0]):
            pixels = other == object_id
            if dropped[pixels].mean() > 0.5:
                kept_other[pixels] = 0
        parts[name] = (np.where(keep, reference, 0), kept_other)
    return parts


def bundle(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=ROOT, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="a GlaS-layout folder (train/img, train/labelinst)")
    parser.add_argument("--dataset", default="glas")
    parser.add_argument("--num_folds", type=int, default=3)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--mpp", type=float, default=0.62, help="micrometres per pixel of the tiles")
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--gap", type=int, default=0, help="glass between the tiles (pixels); 0: tiles touch")
    parser.add_argument("--slide_level", default=None, help="the slide command's --slide_level (default: its own)")
    parser.add_argument("options", nargs="*", help="after --: options for both bundle commands")
    args = parser.parse_args()

    items = dataset_splits(args.dataset, args.data_dir, test_fraction=0.0, num_folds=args.num_folds, fold=args.fold)
    items = items["validation"]
    work = args.work_dir
    (work / "tiles").mkdir(parents=True, exist_ok=True)
    for item in items:
        link = work / "tiles" / Path(item["image"]).name
        if not link.exists():
            link.symlink_to(Path(item["image"]).resolve())
    tiles = [work / "tiles" / Path(item["image"]).name for item in items]
    image, boxes = montage(tiles, args.columns, args.gap)
    slide = write_pyramidal_tiff(work / "montage.tif", image, args.mpp, levels=3)
    print(f"{slide}: {image.shape[1]}x{image.shape[0]} px, {len(tiles)} tiles", flush=True)

    common = ["--ckpt_path", args.ckpt_path, *args.options]
    if not all((work / "tile_out" / f"{tile.stem}_instances.png").is_file() for tile in tiles):  # kept from a run
        bundle("--config_file", str(CONFIGS / "inference.json"), "--dataset_dir", str(work / "tiles"),
               "--output_dir", str(work / "tile_out"), *common)  # fmt: skip
    bundle("--config_file", f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'inference_wsi.json'}']", "--slide",
           str(slide), "--output_dir", str(work / "slide_out"), *common, *(['--slide_level', args.slide_level] if args.slide_level else []))  # fmt: skip

    features = json.loads((work / "slide_out" / "montage.geojson").read_text())["features"]
    counts = {"slide_vs_tile": [], "slide_vs_truth": [], "tile_vs_truth": [], "border": [], "interior": []}
    per_tile = {"slide_f1": [], "tile_f1": [], "slide_aji": [], "tile_aji": []}
    for item, tile, box in zip(items, tiles, boxes):
        truth = np.asarray(Image.open(item["instance"]))
        from_tiles = np.asarray(Image.open(work / "tile_out" / f"{tile.stem}_instances.png")).astype(np.int32)
        from_slide = rasterize(features, box)
        counts["slide_vs_tile"].append(compute_object_detection_counts(from_slide, from_tiles))
        counts["slide_vs_truth"].append(compute_object_detection_counts(from_slide, truth))
        counts["tile_vs_truth"].append(compute_object_detection_counts(from_tiles, truth))
        for part, (tile_part, slide_part) in split_at_border(from_tiles, from_slide).items():
            counts[part].append(compute_object_detection_counts(slide_part, tile_part))
        per_tile["slide_f1"].append(compute_object_f1(from_slide, truth))
        per_tile["tile_f1"].append(compute_object_f1(from_tiles, truth))
        per_tile["slide_aji"].append(compute_aggregated_jaccard_index(from_slide, truth))
        per_tile["tile_aji"].append(compute_aggregated_jaccard_index(from_tiles, truth))
    result = {k: pooled_object_f1(np.asarray(v)) for k, v in counts.items()}
    result.update({f"mean_{k}": float(np.mean(v)) for k, v in per_tile.items()})
    result["tiles"] = len(tiles)
    result["slide_objects"] = len(features)
    (work / "comparison.json").write_text(json.dumps(result, indent=2))
    print(
        "| pooled object F1: slide vs tile | slide vs truth | tile vs truth | mean object F1 slide / tile "
        "| mean AJI slide / tile | slide vs tile: interior / border objects |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {result['slide_vs_tile']:.3f} | {result['slide_vs_truth']:.3f} | {result['tile_vs_truth']:.3f} "
        f"| {result['mean_slide_f1']:.3f} / {result['mean_tile_f1']:.3f} "
        f"| {result['mean_slide_aji']:.3f} / {result['mean_tile_aji']:.3f} "
        f"| {result['interior']:.3f} / {result['border']:.3f} |"
    )


if __name__ == "__main__":
    main()
