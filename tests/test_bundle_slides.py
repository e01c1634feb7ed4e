"""The slide command: ``python -m monai.bundle run --config_file "['bundle/configs/inference.json',
'bundle/configs/inference_wsi.json']"`` writes one QuPath GeoJSON per slide, and refuses bad settings before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from bundle_helpers import CONFIGS, IMG, INFERENCE, _configs, _ok, _run

from medt_monai.data import write_pyramidal_tiff
from medt_monai.networks import get_network

shapely = pytest.importorskip("shapely")
pytest.importorskip("openslide")

INFERENCE_WSI = str(CONFIGS / "inference_wsi.json")
#: pooled object F1 between the slide command and the tile command, tile by tile, the issue's target (the six tiles
#: below: 1.000 in session 40; 0.986 on each of session 39's fold networks over their validation tiles, recipes.md,
#: "thirtieth round")
AGREEMENT = 0.95
#: the documented minimum gland and seed sizes for GlaS-like H&E (smaller components are specks, not glands)
GLAND_MIN_SIZE = ["--object_min_size", "3200", "--min_seed_size", "1600"]
SCALE = ["--output", "instances", "--image_scale", "0.5", "--img_size", str(IMG)]  # the model at 0.62 / 0.5 um/px


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> dict:
    """A folder with a tissue slide (purple blobs on glass, 3 levels) and an all-glass slide; an instance model."""
    root = tmp_path_factory.mktemp("slides")
    folder = root / "slides"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = np.full((600, 900, 3), 245, np.uint8)
    yy, xx = np.mgrid[0:600, 0:900]
    for cy, cx in rng.uniform((80, 80), (520, 820), size=(12, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 45**2] = (150, 70, 160)
    write_pyramidal_tiff(folder / "tissue.tif", image, mpp=0.62, levels=3)
    write_pyramidal_tiff(folder / "glass.tif", np.full((300, 300, 3), 245, np.uint8), mpp=0.62, levels=1)
    torch.manual_seed(0)
    net = get_network("medt", spatial_dims=2, in_channels=3, out_channels=3, img_size=IMG, full_resolution_skip=True,
                      zero_init_residual=True, branch_supervision=True)  # fmt: skip
    model = root / "model.pt"
    torch.save(net.state_dict(), model)
    return {"folder": folder, "model": str(model)}


def _args(slides: dict, out, *extra: str) -> list[str]:
    return [
        "run", "--config_file", _configs(INFERENCE, INFERENCE_WSI), "--dataset_dir", str(slides["folder"]),
        "--output_dir", str(out), "--ckpt_path", slides["model"], "--block_size", "256", "--block_margin", "32",
        "--tta", "false", *SCALE, *extra,
    ]  # fmt: skip


def test_every_slide_of_the_folder_gets_a_qupath_geojson(slides, tmp_path):
    log = _ok(_run(_args(slides, tmp_path / "out", "--object_type", "annotation", "--label_downsample", "4")))
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"tissue.geojson", "glass.geojson", "tissue_labels.tif", "glass_labels.tif"}, log[-3000:]
    assert not tifffile.imread(tmp_path / "out" / "glass_labels.tif").any()
    labels = tifffile.imread(tmp_path / "out" / "tissue_labels.tif")  # 900 x 600 at level 0
    assert labels.shape == (150, 225) and labels.dtype == np.uint16
    glass = json.loads((tmp_path / "out" / "glass.geojson").read_text())
    assert glass["type"] == "FeatureCollection" and glass["features"] == []
    tissue = json.loads((tmp_path / "out" / "tissue.geojson").read_text())
    assert tissue["properties"]["slide"] == "tissue.tif"
    assert tissue["properties"]["model_mpp"] == pytest.approx(0.62 / 0.5)
    for feature in tissue["features"]:  # an untrained network: any objects, but each a QuPath-ready polygon
        polygon = shapely.geometry.shape(feature["geometry"])
        assert feature["geometry"]["type"] == "Polygon" and polygon.is_valid and polygon.exterior.is_closed
        assert 0 <= polygon.bounds[0] and polygon.bounds[2] <= 900 and polygon.bounds[3] <= 600
        assert feature["properties"]["objectType"] == "annotation"
        assert set(feature["properties"]["measurements"]) == {"Area µm^2", "Perimeter µm"}
    assert set(np.unique(labels)) <= set(range(len(tissue["features"]) + 1))


def test_one_slide_with_slide(slides, tmp_path):
    _ok(_run(_args(slides, tmp_path / "out", "--slide", str(slides["folder"] / "glass.tif"))))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["glass.geojson"]


def test_bad_settings_fail_before_any_work(slides, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = _run(_args(slides, blocker / "out"))
    assert r.returncode != 0 and "cannot create this folder" in r.log and str(blocker) in r.log
    r = _run(_args(slides, tmp_path / "out2", "--image_scale", "$None"))
    assert r.returncode != 0 and "slide inference needs a model with a physical scale" in r.log
    assert not (tmp_path / "out2").exists()


GLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas" / "train"


@pytest.mark.realdata
def test_shipped_model_finds_the_tile_commands_glands_in_a_slide_of_the_tiles(tmp_path):
    """Six GlaS tiles on glass (64 px between them) as a 3-level pyramidal TIFF at 0.62 um/px: the slide command's
    polygons, drawn back into each tile, match the objects the tile command finds in that tile's PNG (GlaS object
    matching, pooled over the tiles), both with the shipped weights and defaults and the documented GlaS minimum object
    and seed sizes. The slide command reads each piece of tissue as the tile command reads a tile: the level at the
    training images' resolution, zoomed as they were, in their axis order, windows from the piece's corner."""
    import sys

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from compare_slide_tiles import montage, rasterize

    from medt_monai.metrics.object_metrics import compute_object_detection_counts, pooled_object_f1

    if not GLAS.is_dir():
        pytest.skip(f"{GLAS} not found: the real GlaS data (../shared/data) is not beside the checkout")
    tiles = [
        GLAS / "img" / f"{name}.png" for name in ("train_1", "train_13", "train_20", "train_33", "train_45", "train_73")
    ]
    image, boxes = montage(tiles, columns=3, gap=64)
    (tmp_path / "png").mkdir()
    for tile in tiles:
        (tmp_path / "png" / tile.name).symlink_to(tile)
    slide = write_pyramidal_tiff(tmp_path / "montage.tif", image, mpp=0.62, levels=3)
    _ok(_run(["run", "--config_file", INFERENCE, "--dataset_dir", str(tmp_path / "png"), "--output_dir",
              str(tmp_path / "t"), *GLAND_MIN_SIZE]))  # fmt: skip
    _ok(_run(["run", "--config_file", _configs(INFERENCE, INFERENCE_WSI), "--slide", str(slide), "--output_dir",
              str(tmp_path / "s"), *GLAND_MIN_SIZE]))  # fmt: skip
    features = json.loads((tmp_path / "s" / "montage.geojson").read_text())["features"]
    counts = []
    for tile, box in zip(tiles, boxes):
        from_tile = np.asarray(Image.open(tmp_path / "t" / f"{tile.stem}_instances.png")).astype(np.int32)
        counts.append(compute_object_detection_counts(rasterize(features, box), from_tile))
    assert sum(c[0] for c in counts) > 20  # glands found, not two empty answers agreeing
    assert pooled_object_f1(np.asarray(counts)) >= AGREEMENT, counts
