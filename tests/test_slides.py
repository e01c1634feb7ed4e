"""Whole-slide images: blocks at the model's scale, tissue detection, objects whole and once across blocks, QuPath
GeoJSON, and named errors for bad slides (medt_monai.data.slides, medt_monai.utils.geojson,
medt_monai.handlers.SlideObjectsWriter). The bundle command is tested in test_bundle_slides.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
from monai.data import decollate_batch, list_data_collate
from monai.transforms import Zoom

from medt_monai.data import (
    LoadSlideBlockd,
    open_slide,
    refine_piece,
    slide_blocks,
    slide_geometry,
    slide_mpp,
    tissue_mask,
    tissue_pieces,
    write_pyramidal_tiff,
)
from medt_monai.handlers import SlideObjectsWriter
from medt_monai.utils.geojson import FeatureSpool, draw_labels, feature_collection, label_image, object_features
from medt_monai.utils.memory import release_freed_memory
from medt_monai.utils.objects import label_objects

shapely = pytest.importorskip("shapely")
pytest.importorskip("openslide")

GLASS = 245


def _discs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> tuple[np.ndarray, np.ndarray]:
    """White glass with dark-purple discs: (RGB image, instance map)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ids = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, 1):
        ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    image = np.full((*shape, 3), GLASS, np.uint8)
    image[ids > 0] = (90, 40, 130)
    return image, ids


def test_object_features_place_polygons_in_level0_and_measure_them_in_micrometres():
    ids = np.zeros((10, 12), np.int32)
    ids[2:6, 3:7] = 1  # a 4x4 square
    ids[2:6, 7:9] = 2  # touching it on the right, 4x2
    features = object_features(ids, origin=(100, 200), scale=(2, 2), mpp=0.5, object_type="annotation", tolerance=0)
    assert len(features) == 2
    square = shapely.geometry.shape(features[0]["geometry"])
    # pixels (2..5, 3..6) at 2 level-0 px each from (100, 200): x in [206, 214], y in [104, 112]; the outline cuts
    # the four corners by half a pixel (marching squares), 4 x 0.125 px of 16 px, in level-0 px x 4
    assert square.bounds == pytest.approx((206, 104, 214, 112))
    assert square.area == pytest.approx((16 - 0.5) * 4)
    assert (
        square.is_valid
        and features[0]["geometry"]["coordinates"][0][0] == features[0]["geometry"]["coordinates"][0][-1]
    )
    props = features[0]["properties"]
    assert props["objectType"] == "annotation"
    assert props["classification"] == {"name": "gland", "color": [0, 160, 0]}
    assert props["measurements"]["Area µm^2"] == pytest.approx(square.area * 0.25, abs=1e-3)
    assert props["measurements"]["Perimeter µm"] == pytest.approx(square.length * 0.5, abs=1e-3)
    # keep_box keeps the objects whose centroid lies inside: the square's centroid is (108, 210)
    kept = object_features(ids, origin=(100, 200), scale=(2, 2), keep_box=(100, 200, 110, 212))
    assert len(kept) == 1 and "Area px^2" in kept[0]["properties"]["measurements"]
    assert object_features(np.zeros((4, 4), np.int32)) == []
    with pytest.raises(ValueError, match="object_type"):
        object_features(ids, object_type="cell")


def test_blocks_tile_the_slide_and_read_the_coarsest_level_fine_enough(tmp_path):
    image, _ = _discs((700, 900), [(350, 450)], 200)
    slide = write_pyramidal_tiff(tmp_path / "s.tif", image, mpp=0.5, levels=3)
    blocks = slide_blocks(slide, model_mpp=1.5, block_size=128, margin=16, tissue_only=False)
    # levels at 0.5 / 1.0 / 2.0 um/px: level 1 is the coarsest still at least as fine as 1.5
    assert {b["level"] for b in blocks} == {1}
    assert blocks[0]["zoom"] == pytest.approx(1.0 / 1.5)
    covered = np.zeros((700, 900), np.int32)
    for b in blocks:
        y0, x0, y1, x1 = b["core"]
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()  # the cores tile the slide exactly once
    assert all(b["num_blocks"] == len(blocks) for b in blocks)
    # a region, level-0 (x, y, width, height): the cores tile it exactly, the blocks read context around it
    part = slide_blocks(slide, model_mpp=1.5, block_size=128, margin=16, tissue_only=False, region=(100, 50, 300, 200))
    covered = np.zeros((700, 900), np.int32)
    for b in part:
        y0, x0, y1, x1 = b["core"]
        covered[y0:y1, x0:x1] += 1
    assert (covered[50:250, 100:400] == 1).all() and covered.sum() == 300 * 200
    assert min(b["location"][0] for b in part) < 50 and min(b["location"][1] for b in part) < 100
    # ... and they are the whole slide's blocks (same pixels in, so any network gives the same output), cores cut to it
    whole = {tuple(b["location"]): b for b in blocks}
    for b in part:
        w = whole[tuple(b["location"])]
        assert (b["size"], b["level"], b["zoom"]) == (w["size"], w["level"], w["zoom"])
        y0, x0, y1, x1 = w["core"]
        assert b["core"] == [max(y0, 50), max(x0, 100), min(y1, 250), min(x1, 400)]
    # --slide_level 0: full resolution, zoomed by 0.5 / 1.5 to the model's scale
    full = slide_blocks(slide, model_mpp=1.5, block_size=128, margin=16, tissue_only=False, level=0)
    assert {b["level"] for b in full} == {0} and full[0]["zoom"] == pytest.approx(0.5 / 1.5)
    assert [b["core"] for b in full] == [b["core"] for b in blocks]
    with pytest.raises(ValueError, match="level 3 does not exist"):
        slide_blocks(slide, model_mpp=1.5, level=3)
    with pytest.raises(ValueError, match="lies outside the slide"):
        slide_blocks(slide, model_mpp=1.5, region=(1000, 0, 10, 10))
    # a block read: the level-1 region zoomed to the model's scale, [0, 1]
    block = LoadSlideBlockd()(blocks[len(blocks) // 2])["image"]
    reader, wsi = open_slide(slide)
    b = blocks[len(blocks) // 2]
    region, _ = reader.get_data(wsi, location=tuple(b["location"]), size=tuple(b["size"]), level=1)
    expected = Zoom(zoom=b["zoom"], mode="bilinear", keep_size=False)(
        torch.as_tensor(region, dtype=torch.float32) / 255
    )
    assert block.shape == expected.shape and torch.allclose(block, expected.clamp(0, 1))


def test_a_block_read_in_strips_is_the_block_read_at_once(tmp_path):
    """Blocks come in strips of rows (memory); on a level whose downsample is not a whole number (a 1203-row slide's
    level 1: 1.998) a strip would start between the level's rows, so such a block is read at once."""
    rng = np.random.default_rng(0)
    slide = write_pyramidal_tiff(tmp_path / "odd.tif", rng.integers(0, 255, (1203, 1001, 3), np.uint8), 0.5, levels=2)
    reader, wsi = open_slide(slide)
    for level, size in ((0, (1100, 300)), (1, (592, 300))):  # more than one strip of 512 rows each time
        block = {"image": str(slide), "location": [7, 5], "level": level, "size": list(size), "zoom": 1.0}
        read = LoadSlideBlockd()(block)["image"]
        at_once, _ = reader.get_data(wsi, location=(7, 5), size=size, level=level)
        assert torch.equal(read, torch.as_tensor(np.array(at_once), dtype=torch.float32) / 255), level


def test_tissue_mask_finds_the_tissue_and_skips_glass(tmp_path):
    image, ids = _discs((600, 800), [(300, 200)], 120)
    slide = write_pyramidal_tiff(tmp_path / "s.tif", image, mpp=0.5, levels=2)
    mask, downsample, threshold = tissue_mask(*open_slide(slide))
    assert downsample == 2.0 and 0.07 <= threshold < 0.69  # Otsu's between glass (0) and the discs' saturation
    truth = ids[::2, ::2] > 0
    assert (mask & truth).sum() / truth.sum() > 0.95 and (mask & ~truth).sum() < 0.05 * truth.sum()
    blocks = slide_blocks(slide, model_mpp=1.0, block_size=96, margin=16, tissue_only=True)
    all_blocks = slide_blocks(slide, model_mpp=1.0, block_size=96, margin=16, tissue_only=False)
    assert 0 < len(blocks) < len(all_blocks)
    glass = write_pyramidal_tiff(tmp_path / "glass.tif", np.full((400, 400, 3), GLASS, np.uint8), mpp=0.5)
    assert slide_blocks(glass, model_mpp=1.0) == []


def _rectangles(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """White glass with dark-purple (y0, x0, y1, x1) rectangles of tissue."""
    image = np.full((*shape, 3), GLASS, np.uint8)
    for y0, x0, y1, x1 in boxes:
        image[y0:y1, x0:x1] = (90, 40, 130)
    return image


def test_pieces_of_tissue_are_found_and_refined_to_their_own_rows_and_columns(tmp_path):
    # three pieces: two far apart, one whose mask box overlaps the second's (they merge), on a 3-level slide
    tissue = [(40, 50, 237, 331), (300, 500, 390, 777), (395, 560, 470, 700)]
    slide = write_pyramidal_tiff(tmp_path / "s.tif", _rectangles((600, 900), tissue), mpp=0.5, levels=3)
    reader, wsi = open_slide(slide)
    mask = tissue_mask(reader, wsi)
    assert mask.downsample == 4.0
    coarse = tissue_pieces(mask, (600, 900))
    assert len(coarse) == 2
    # each coarse box holds its tissue with at most two mask pixels to spare on every side
    for box, truth in zip(coarse, [tissue[0], (300, 500, 470, 777)]):
        assert all(0 <= t - b <= 8 for t, b in zip(truth[:2], box[:2])) and all(
            0 <= b - t <= 8 for t, b in zip(truth[2:], box[2:])
        )
    # refined at level 0: exactly the tissue's first and last rows and columns; at level 1 to its 2-pixel grid
    assert [refine_piece(reader, wsi, box, 0, mask.threshold, 16) for box in coarse] == [
        tissue[0],
        (300, 500, 470, 777),
    ]
    y0, x0, y1, x1 = refine_piece(reader, wsi, coarse[0], 1, mask.threshold, 16)
    assert (y0, x0) == (40, 50) and (y1, x1) in {(238, 332), (237, 331), (238, 331), (237, 332)}
    # glass only: no piece
    glass = write_pyramidal_tiff(tmp_path / "g.tif", _rectangles((200, 200), []), mpp=0.5, levels=1)
    assert tissue_pieces(tissue_mask(*open_slide(glass)), (200, 200)) == []


def test_a_piece_gets_the_same_blocks_wherever_it_lies_and_none_past_its_box(tmp_path):
    """Windows start at a piece's corner, as at a tile's: the same tissue moved on the slide is read in the same
    blocks, moved with it, and its cores tile its box exactly once."""
    # height, width at level 0; cores of 96 level-0 px (48 at model_mpp 1.0 from 0.5 um/px), blocks of at most 128
    # (16 px of context on each side): the first and last cores of a row take the 16 px no context is needed for, so
    # 3 x 4 cores (edges 0 / 112 / 208 / 230 and 0 / 112 / 208 / 304 / 410)
    piece = (230, 410)
    placements = [(40, 60), (307, 233)]
    runs = []
    for k, (y, x) in enumerate(placements):
        other = (560, 820, 590, 880)  # a second, small piece far away
        image = _rectangles((600, 900), [(y, x, y + piece[0], x + piece[1]), other])
        slide = write_pyramidal_tiff(tmp_path / f"s{k}.tif", image, mpp=0.5, levels=2)
        blocks = slide_blocks(slide, model_mpp=1.0, block_size=64, margin=8, training_mpp=0.5)
        assert {b["level"] for b in blocks} == {0}  # the level at the training images' resolution
        own = [b for b in blocks if b["core"][0] < 550]
        covered = np.zeros((600, 900), np.int32)
        for b in own:
            c = b["core"]
            covered[c[0] : c[2], c[1] : c[3]] += 1
            top, left = b["location"]
            assert (
                y <= top
                and x <= left
                and top + b["extent"][0] <= y + piece[0]
                and left + b["extent"][1] <= x + piece[1]
            )
        assert (covered[y : y + piece[0], x : x + piece[1]] == 1).all() and covered.sum() == piece[0] * piece[1]
        runs.append(sorted((b["location"][0] - y, b["location"][1] - x, *b["size"]) for b in own))
    assert runs[0] == runs[1] and len(runs[0]) == 3 * 4
    assert runs[0][0] == (0, 0, 128, 128) and all(max(r[2:]) <= 128 for r in runs[0])  # the first block is a whole one
    assert sorted({r[0] for r in runs[0]}) == [0, 112 - 16, 208 - 16] and sorted({r[1] for r in runs[0]}) == [
        0,
        96,
        192,
        288,
    ]
    # a region: the whole slide's blocks that overlap it, cores cut to it
    whole = {tuple(b["location"]): b for b in blocks}
    part = slide_blocks(slide, model_mpp=1.0, block_size=64, margin=8, training_mpp=0.5, region=(300, 350, 100, 80))
    assert part and all(
        tuple(b["location"]) in whole and b["size"] == whole[tuple(b["location"])]["size"] for b in part
    )
    assert sum((b["core"][2] - b["core"][0]) * (b["core"][3] - b["core"][1]) for b in part) == 80 * 100


def test_the_level_read_is_the_one_nearest_the_training_images_resolution(tmp_path):
    slide = write_pyramidal_tiff(tmp_path / "s.tif", _rectangles((400, 400), [(50, 50, 350, 350)]), mpp=0.5, levels=3)
    # levels at 0.5 / 1.0 / 2.0 um/px; a model at 1.5 um/px can read levels 0 and 1
    level = {t: slide_blocks(slide, model_mpp=1.5, training_mpp=t)[0]["level"] for t in (0.62, 0.75, 0.9, None)}
    assert level == {0.62: 0, 0.75: 1, 0.9: 1, None: 1}  # 0.75: 1.0 / 0.75 < 0.75 / 0.5 in log scale
    assert slide_blocks(slide, model_mpp=1.5, training_mpp=0.62, level=1)[0]["level"] == 1  # --slide_level wins


def _run_blocks(
    slide: Path, out: Path, model_mpp: float, block_size: int, margin: int, region=None, **writer_args
) -> dict:
    """Blocks -> objects by thresholding the dark discs -> SlideObjectsWriter, as the bundle's evaluator drives it."""
    blocks = slide_blocks(slide, model_mpp, block_size, margin, tissue_only=False, region=region)
    writer = SlideObjectsWriter(out, slides=[str(slide)], object_type="detection", **writer_args)
    engine = SimpleNamespace(state=SimpleNamespace(batch=None, output=None))
    writer._reset(engine)
    load = LoadSlideBlockd()
    for block in blocks:  # batches of 1, as inference.json's DataLoader (edge blocks are smaller)
        batch = decollate_batch(list_data_collate([load(block)]))
        engine.state.batch = batch
        engine.state.output = [
            {"pred_instances": torch.as_tensor(label_objects(b["image"][0].numpy() < 0.5, 1))[None]} for b in batch
        ]
        writer(engine)
        # the block's maps are dropped once its objects are spooled (ignite would hold them during the next read)
        assert all("pred_instances" not in o and "pred" not in o for o in engine.state.output)
    writer.finish()
    return json.loads((out / f"{slide.stem}.geojson").read_text())


def test_objects_crossing_block_borders_come_out_whole_and_once(tmp_path):
    centres = [(64, 64), (64, 200), (190, 120), (250, 250), (130, 330)]
    image, ids = _discs((320, 400), centres, 30)
    slide = write_pyramidal_tiff(tmp_path / "discs.tif", image, mpp=0.5, levels=1)
    # cores of 64 px at 1.0 um/px = 128 level-0 px: every disc (60 px across) straddles a core border or corner
    collection = _run_blocks(slide, tmp_path / "out", model_mpp=1.0, block_size=128, margin=32)
    assert collection["type"] == "FeatureCollection" and collection["properties"]["slide"] == "discs.tif"
    polygons = [shapely.geometry.shape(f["geometry"]) for f in collection["features"]]
    assert len(polygons) == len(centres)
    for k, (cy, cx) in enumerate(centres, 1):
        (match,) = [p for p in polygons if p.contains(shapely.Point(cx + 0.5, cy + 0.5))]
        truth_area = (ids == k).sum()
        assert match.area == pytest.approx(truth_area, rel=0.08)  # whole, at 2x coarser than level 0
        assert match.is_valid and match.exterior.is_closed
    # a region gets the whole slide's objects whose centroid lies in it, whole (they reach past the region)
    region = (100, 40, 200, 200)  # x, y, width, height: holds the (y, x) centres (64, 200) and (190, 120)
    part = _run_blocks(slide, tmp_path / "region", model_mpp=1.0, block_size=128, margin=32, region=region)
    inside = [
        f for f in collection["features"]
        if 100 <= shapely.geometry.shape(f["geometry"]).centroid.x < 300
        and 40 <= shapely.geometry.shape(f["geometry"]).centroid.y < 240
    ]  # fmt: skip
    assert len(inside) == 2 and sorted(map(json.dumps, part["features"])) == sorted(map(json.dumps, inside))


def test_the_objects_also_come_as_a_label_image_at_the_chosen_downsample(tmp_path):
    centres = [(64, 64), (64, 200), (190, 120), (250, 250), (130, 330)]
    image, ids = _discs((320, 400), centres, 30)
    slide = write_pyramidal_tiff(tmp_path / "discs.tif", image, mpp=0.5, levels=1)
    geometry = {str(slide): slide_geometry(slide)}
    assert geometry[str(slide)] == ((320, 400), pytest.approx(0.5))
    collection = _run_blocks(
        slide, tmp_path / "out", model_mpp=1.0, block_size=128, margin=32, label_downsample=4, geometry=geometry
    )
    labels = tifffile.imread(tmp_path / "out" / "discs_labels.tif")
    assert labels.shape == (80, 100) and labels.dtype == np.uint16
    assert sorted(np.unique(labels)) == list(range(len(centres) + 1))
    for k, feature in enumerate(collection["features"], 1):  # id k is the GeoJSON's k-th object, drawn where it lies
        centre = shapely.geometry.shape(feature["geometry"]).centroid
        assert labels[int(centre.y // 4), int(centre.x // 4)] == k
        assert (labels == k).sum() == pytest.approx(np.pi * 30**2 / 16, rel=0.1)
    with tifffile.TiffFile(tmp_path / "out" / "discs_labels.tif") as tif:  # 4 x 0.5 um per pixel, in pixels per cm
        assert tif.pages[0].tags["XResolution"].value == (5000, 1)
    with pytest.raises(ValueError, match="label_downsample"):
        SlideObjectsWriter(tmp_path / "out", label_downsample=0)
    with pytest.raises(ValueError, match="geometry"):
        SlideObjectsWriter(tmp_path / "out", slides=[str(slide)], label_downsample=4)


def test_features_wait_on_disk_and_come_out_as_the_same_collection(tmp_path):
    """The slide writer keeps each block's features in a temporary file, not in memory: the collection written from
    it is byte for byte the one built in memory, the label image drawn block by block equals the one drawn at once,
    and the output folder holds nothing else afterwards."""
    ids = np.zeros((60, 90), np.int32)
    ids[5:20, 5:30], ids[30:55, 10:25], ids[25:50, 50:85] = 1, 2, 3
    features = object_features(ids, origin=(100.0, 200.0), mpp=0.5, class_name="gland \u00e9")
    spool = FeatureSpool(dir=tmp_path)
    spool.extend(features[:1])
    spool.extend(features[1:])
    spool.write(tmp_path / "a.geojson", slide="s.svs", model_mpp=3.1)
    spool.write(tmp_path / "again.geojson")  # writing twice gives every feature both times
    spool.close()
    expected = json.dumps(
        feature_collection(features, slide="s.svs", model_mpp=3.1), ensure_ascii=False, separators=(",", ":")
    )
    assert (tmp_path / "a.geojson").read_text(encoding="utf-8") == expected
    assert json.loads((tmp_path / "again.geojson").read_text())["features"] == features
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.geojson", "again.geojson"]
    at_once = label_image(features, (200, 300), 2.0)
    blocks = draw_labels(label_image([], (200, 300), 2.0), features[:2], 2.0)
    assert np.array_equal(draw_labels(blocks, features[2:], 2.0, first_id=3), at_once)
    assert sorted(np.unique(at_once)) == [0, 1, 2, 3]
    wide = draw_labels(np.zeros((4, 4), np.uint16), features[:1], 1.0, origin=(106, 206), first_id=70000)
    assert wide.dtype == np.uint32 and (wide == 70000).all()  # ids past 65535 turn the image to uint32


def test_a_slide_of_glass_gives_an_empty_collection(tmp_path):
    glass = write_pyramidal_tiff(tmp_path / "glass.tif", np.full((300, 300, 3), GLASS, np.uint8), mpp=0.5)
    writer = SlideObjectsWriter(tmp_path / "out", slides=[str(glass)])
    engine = SimpleNamespace(state=SimpleNamespace(batch=[], output=[]))
    writer._reset(engine)
    writer.finish()
    path = tmp_path / "out" / "glass.geojson"
    assert json.loads(path.read_text())["features"] == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes files, not mkstemp's 0600
    assert feature_collection([]) == {"type": "FeatureCollection", "features": []}


def test_bad_slides_get_named_errors(tmp_path):
    image, _ = _discs((300, 300), [(150, 150)], 50)
    good = write_pyramidal_tiff(tmp_path / "good.tif", image, mpp=0.5)
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"truncated\.svs: cannot be read as a whole-slide image"):
        slide_blocks(truncated, model_mpp=1.0)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes\.txt: not a whole-slide format"):
        open_slide(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="missing.svs"):
        open_slide(tmp_path / "missing.svs")
    import tifffile

    tifffile.imwrite(tmp_path / "nompp.tif", image, tile=(256, 256), photometric="rgb")
    reader, wsi = open_slide(tmp_path / "nompp.tif")
    with pytest.raises(ValueError, match=r"nompp\.tif: the slide records no micrometres per pixel; give it with --mpp"):
        slide_mpp(reader, wsi, tmp_path / "nompp.tif")
    assert slide_mpp(reader, wsi, tmp_path / "nompp.tif", mpp=0.25) == 0.25
    assert len(slide_blocks(tmp_path / "nompp.tif", model_mpp=1.0, mpp=0.5, tissue_only=False)) == 1


@pytest.mark.realdata
def test_the_aperio_slide_is_read_at_its_recorded_resolution():
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared data set is absent)")
    reader, wsi = open_slide(path)
    assert slide_mpp(reader, wsi, path) == pytest.approx(0.499)
    blocks = slide_blocks(path, model_mpp=3.1, block_size=512, margin=64)
    assert 1 <= len(blocks) <= 4 and blocks[0]["zoom"] == pytest.approx(0.499 / 3.1)
    image = LoadSlideBlockd()(blocks[0])["image"]
    assert image.shape[0] == 3 and 0.2 < float(image.mean()) < 0.95


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_freed_heap_memory_goes_back_to_the_system_before_a_block_is_read():
    """64-KB chunks come from glibc's heap; freed with the last one kept (so the heap's top cannot shrink), they stay
    resident until ``release_freed_memory`` (called by ``LoadSlideBlockd`` before each read) trims the heap."""

    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    chunks = [bytearray(64 * 1024) for _ in range(3000)]  # about 190 MB
    last = chunks[-1]
    del chunks
    before = rss_mb()
    assert release_freed_memory() is True
    assert before - rss_mb() > 100, "the freed chunks stayed resident"
    assert len(last) == 64 * 1024
