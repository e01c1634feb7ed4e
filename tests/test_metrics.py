"""Object-level metrics (GlaS object F1 / Dice / Hausdorff, AJI, PQ): hand-computed cases, the definitions on random
maps, the MONAI metric and ignite handler interface, and the real GlaS instance labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import directed_hausdorff

import medt_monai.metrics as M

ROOT = Path(__file__).resolve().parents[1]
GLAS = ROOT.parent / "shared" / "data" / "glas" / "train"

METRICS = {
    "f1": M.compute_object_f1,
    "dice": M.compute_object_dice,
    "hausdorff": M.compute_object_hausdorff_distance,
    "aji": M.compute_aggregated_jaccard_index,
    "pq": M.compute_object_panoptic_quality,
}


def _scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    return {name: fn(pred, gt) for name, fn in METRICS.items()}


def _rect(shape, rows, cols, value=1, out=None):
    out = np.zeros(shape, dtype=np.int32) if out is None else out
    out[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = value  # inclusive ranges, as in the comments
    return out


def _check(got: dict[str, float], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[name]), f"{name}: {got[name]}, expected NaN"
        else:
            assert got[name] == pytest.approx(value, abs=1e-9), f"{name}: {got[name]}, expected {value}"


# ------------------------------------------------------------------------------------------------ hand-computed cases
def test_split_gland():
    """One 10x10 gland (area 100) predicted as two pieces: columns 0-5 (60 px) and 7-9 (30 px)."""
    gt = _rect((12, 12), (0, 9), (0, 9))
    pred = _rect((12, 12), (0, 9), (0, 5)) + _rect((12, 12), (0, 9), (7, 9), 2)
    _check(
        _scores(pred, gt),
        {
            # S_a covers 60 % of G: TP; S_b covers 30 %: FP. F1 = 2*1 / (2*1 + 1 + 0)
            "f1": 2 / 3,
            # G -> S_a: Dice 2*60/160; S_a -> G (weight 60/90): 0.75, S_b -> G (weight 30/90): 2*30/130
            "dice": 0.5 * (0.75 + (60 * 0.75 + 30 * 60 / 130) / 90),
            # H(G, S_a) = 4 (column 9 to column 5); H(G, S_b) = 7 (column 0 to column 7)
            "hausdorff": 0.5 * (4 + (60 * 4 + 30 * 7) / 90),
            # G pairs with S_a (IoU 0.6 > 0.3): C = 60, U = 100; the unpaired S_b adds 30 to U
            "aji": 60 / 130,
            # IoU(G, S_a) = 0.6 > 0.5: TP; S_b FP. PQ = 0.6 / (1 + 0.5)
            "pq": 0.4,
        },
    )


def test_merged_glands():
    """Two touching 10x10 glands predicted as one 10x20 object (the binary prediction's single component)."""
    gt = _rect((12, 22), (0, 9), (0, 9)) + _rect((12, 22), (0, 9), (10, 19), 2)
    pred = M.label_objects(gt > 0)
    assert pred.max() == 1
    _check(
        _scores(pred, gt),
        {
            # S covers all of G1 (its tie-broken max-overlap partner): TP; G2 has no TP: FN. 2 / (2 + 0 + 1)
            "f1": 2 / 3,
            # every pair has Dice 2*100/300
            "dice": 2 / 3,
            # H(G1, S) = H(G2, S) = 10 (the far end of S)
            "hausdorff": 10.0,
            # both glands pair with S (IoU 0.5): C = 100 + 100, U = 200 + 200
            "aji": 0.5,
            # IoU 0.5 is not > 0.5: no match, FP 1, FN 2
            "pq": 0.0,
        },
    )


def test_missed_gland():
    """Two glands, only the first one predicted (exactly)."""
    gt = _rect((12, 32), (0, 9), (0, 9)) + _rect((12, 32), (0, 9), (20, 29), 2)
    pred = _rect((12, 32), (0, 9), (0, 9))
    _check(
        _scores(pred, gt),
        {
            "f1": 2 / 3,  # TP 1, FN 1
            "dice": 0.5 * (0.5 * 1 + 0.5 * 0 + 1),  # the missed gland contributes Dice 0 with weight 1/2
            # the missed gland is compared with the nearest predicted object: H = 20 (column 29 to column 9)
            "hausdorff": 0.5 * (0.5 * 0 + 0.5 * 20 + 0),
            "aji": 100 / 200,  # the missed gland adds its area to U
            "pq": 1 / 1.5,
        },
    )


def test_false_gland():
    """One gland predicted exactly, plus a 5x5 false object (rows 0-4, columns 20-24) that overlaps nothing."""
    gt = _rect((12, 26), (0, 9), (0, 9))
    pred = _rect((12, 26), (0, 9), (0, 9)) + _rect((12, 26), (0, 4), (20, 24), 2)
    # H(false, G): from G's corner (9, 0) to the false object's corner (4, 20): sqrt(5^2 + 20^2)
    far = math.sqrt(25 + 400)
    _check(
        _scores(pred, gt),
        {
            "f1": 2 / 3,  # TP 1, FP 1
            "dice": 0.5 * (1 + (100 * 1 + 25 * 0) / 125),
            "hausdorff": 0.5 * (0 + (100 * 0 + 25 * far) / 125),
            "aji": 100 / 125,
            "pq": 1 / 1.5,
        },
    )


def test_unmatched_object_is_compared_with_the_nearest_by_hausdorff_distance():
    """A missed 3x3 gland 2 px from a long predicted object and 7 px from a small one: the GlaS definition takes the
    object of smallest Hausdorff distance (the small one, H = 10), not the closest one."""
    shape = (50, 50)
    gt = _rect(shape, (0, 2), (30, 32), 1)
    gt = _rect(shape, (10, 49), (35, 37), 2, gt)  # matched exactly by the long object
    gt = _rect(shape, (0, 2), (40, 42), 3, gt)  # matched exactly by the small object
    pred = (gt > 1).astype(np.int32)
    pred[gt == 3] = 2
    pred[gt == 1] = 0  # the missed gland
    # the long object 35..37 x 10..49: min distance to the missed gland 3 px, Hausdorff ~47; the small one: H = 10
    got = M.compute_object_hausdorff_distance(pred, gt)
    areas = {1: 9, 2: 120, 3: 9}
    assert got == pytest.approx(0.5 * (areas[1] * 10.0 / sum(areas.values()) + 0.0), abs=1e-9)


def test_hausdorff_counts_every_pixel_not_only_outlines():
    """A square inside a one-pixel frame (no overlap): the square's centre is 20 px from the frame, its outline only
    10 px; the frame's corners are 10 * sqrt(2) px from the square. The GlaS distance (all pixels) is 20."""
    gt = _rect((41, 41), (0, 40), (0, 40)) - _rect((41, 41), (1, 39), (1, 39))
    pred = _rect((41, 41), (10, 30), (10, 30))
    assert M.compute_object_hausdorff_distance(pred, gt) == pytest.approx(20.0)
    assert M.compute_object_f1(pred, gt) == 0.0 and M.compute_object_dice(pred, gt) == 0.0


@pytest.mark.parametrize(
    "pred_objects, gt_objects, expected",
    [
        (0, 1, {"f1": 0.0, "dice": 0.0, "hausdorff": float("nan"), "aji": 0.0, "pq": 0.0}),  # empty prediction
        (1, 0, {"f1": 0.0, "dice": 0.0, "hausdorff": float("nan"), "aji": 0.0, "pq": 0.0}),  # empty ground truth
        (0, 0, {"f1": 1.0, "dice": 1.0, "hausdorff": 0.0, "aji": 1.0, "pq": 1.0}),  # both empty: perfect
    ],
    ids=["empty_prediction", "empty_ground_truth", "both_empty"],
)
def test_empty_maps(pred_objects, gt_objects, expected):
    full = _rect((8, 8), (2, 5), (2, 5))
    _check(_scores(full * pred_objects, full * gt_objects), expected)


def test_ids_need_not_be_consecutive_and_bad_maps_raise():
    gt = _rect((12, 12), (0, 9), (0, 9), 7)
    pred = _rect((12, 12), (0, 9), (0, 5), 300) + _rect((12, 12), (0, 9), (7, 9), 12)
    ref = _scores(_rect((12, 12), (0, 9), (0, 5)) + _rect((12, 12), (0, 9), (7, 9), 2), gt // 7)
    _check(_scores(pred, gt), ref)
    _check(_scores(pred.astype(np.float32), torch.as_tensor(gt)), ref)  # float ids and tensors are fine
    with pytest.raises(ValueError, match="same shape"):
        M.compute_object_f1(pred, gt[:-1])
    with pytest.raises(ValueError, match=">= 0"):
        M.compute_object_dice(pred, -gt)
    with pytest.raises(ValueError, match="whole numbers"):
        M.compute_aggregated_jaccard_index(pred + 0.5, gt)


# ------------------------------------------------------------------------------------------------ the definitions
def _direct(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The definitions written out object by object with full-image masks (slow, obviously right)."""
    ps = [pred == i for i in np.unique(pred) if i]
    gs = [gt == i for i in np.unique(gt) if i]

    def inter(a, b):
        return int((a & b).sum())

    def partner(obj, others):  # max overlap, first on ties; None without overlap
        o = [inter(obj, x) for x in others]
        return others[int(np.argmax(o))] if o and max(o) > 0 else None

    def hd(a, b):
        pa, pb = np.argwhere(a), np.argwhere(b)
        return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])

    tp = sum(1 for s in ps if (g := partner(s, gs)) is not None and inter(s, g) / g.sum() > 0.5)
    f1 = 2 * tp / (len(ps) + len(gs))

    def weighted(score):
        return 0.5 * (
            sum(g.sum() * score(g, ps) for g in gs) / sum(g.sum() for g in gs)
            + sum(s.sum() * score(s, gs) for s in ps) / sum(s.sum() for s in ps)
        )

    def dice_one(a, others):
        b = partner(a, others)
        return 0.0 if b is None else 2 * inter(a, b) / (a.sum() + b.sum())

    def hd_one(a, others):
        b = partner(a, others)
        return hd(a, b) if b is not None else min(hd(a, x) for x in others)

    c = u = 0
    used = set()
    for g in gs:
        ious = [inter(g, s) / (g | s).sum() for s in ps]
        k = int(np.argmax(ious))
        if ious[k] > 0:
            c, u = c + inter(g, ps[k]), u + (g | ps[k]).sum()
            used.add(k)
        else:
            u += g.sum()
    u += sum(s.sum() for k, s in enumerate(ps) if k not in used)
    pairs = [inter(g, s) / (g | s).sum() for g in gs for s in ps]
    matched = [v for v in pairs if v > 0.5]
    pq = sum(matched) / (len(matched) + 0.5 * (len(ps) - len(matched)) + 0.5 * (len(gs) - len(matched)))
    return {"f1": f1, "dice": weighted(dice_one), "hausdorff": weighted(hd_one), "aji": c / u, "pq": pq}


def _random_instances(rng: np.random.Generator, shape=(48, 64), n=6, radius=(2, 10)) -> np.ndarray:
    out = np.zeros(shape, dtype=np.int32)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    for i in range(1, n + 1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(*radius), rng.uniform(*radius)
        out[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = i
    return out


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_definitions_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    gt = _random_instances(rng)
    pred = M.label_objects(_random_instances(rng) > 0)  # overlapping blobs, merges, misses and false objects
    if gt.max() == 0 or pred.max() == 0:
        pytest.skip("degenerate draw")
    got, ref = _scores(pred, gt), _direct(pred, gt)
    for name in METRICS:
        assert got[name] == pytest.approx(ref[name], abs=1e-9), name


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_the_definitions_on_large_objects(seed):
    """Objects of thousands of pixels, where the Hausdorff distance skips most pixels blockwise (exactly)."""
    rng = np.random.default_rng(50 + seed)
    gt = _random_instances(rng, (150, 190), 5, (15, 45))
    pred = M.label_objects(_random_instances(rng, (150, 190), 5, (15, 45)) > 0)
    assert max(np.bincount(pred.ravel())[1:].max(), np.bincount(gt.ravel())[1:].max()) > 2000
    ref = _direct(pred, gt)
    assert M.compute_object_hausdorff_distance(pred, gt) == pytest.approx(ref["hausdorff"], abs=1e-9)


def test_panoptic_quality_equals_monai():
    from monai.metrics import compute_panoptic_quality

    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        gt, pred = _random_instances(rng, n=8), _random_instances(rng, n=8)
        ref = float(compute_panoptic_quality(torch.as_tensor(pred), torch.as_tensor(gt), match_iou_threshold=0.5))
        assert M.compute_object_panoptic_quality(pred, gt) == pytest.approx(ref, abs=1e-5)


# ------------------------------------------------------------------------------------------------ objects of a mask
def test_label_objects_connectivity_and_min_size():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[2, 2] = True  # touches the first square diagonally only
    mask[4:6, 4:6] = True  # 4 px
    assert M.label_objects(mask).max() == 2  # default: 8-neighbourhood joins the diagonal pixel
    assert M.label_objects(mask, connectivity=1).max() == 3
    small = M.label_objects(mask, connectivity=1, min_size=2)
    assert small.max() == 2 and small[2, 2] == 0
    assert set(np.unique(small).tolist()) == {0, 1, 2}  # renumbered without gaps
    with pytest.raises(ValueError, match="connectivity"):
        M.label_objects(mask, connectivity=3)
    with pytest.raises(ValueError, match="min_size"):
        M.label_objects(mask, min_size=-1)


def test_object_sizes_relabel_and_drop_small_objects_work_a_chunk_at_a_time(monkeypatch):
    import medt_monai.utils.objects as O

    monkeypatch.setattr(O, "_CHUNK", 5)  # chunks that cut objects and rows
    ids = np.array([[1, 1, 0, 2], [1, 0, 3, 3], [0, 3, 3, 3]], dtype=np.int32)
    assert O.object_sizes(ids).tolist() == [3, 3, 1, 5]
    assert O.object_sizes(ids, max_id=4).tolist() == [3, 3, 1, 5, 0]
    lut = np.array([0, 7, 0, 9], dtype=np.int32)
    assert O.relabel(ids, lut).tolist() == [[7, 7, 0, 0], [7, 0, 9, 9], [0, 9, 9, 9]]
    assert O.drop_small_objects(ids, 3).tolist() == [[1, 1, 0, 0], [1, 0, 3, 3], [0, 3, 3, 3]]
    assert ids[0, 3] == 2  # drop_small_objects leaves its input alone
    assert O.relabel(ids, lut, out=ids) is ids and ids.tolist() == [[7, 7, 0, 0], [7, 0, 9, 9], [0, 9, 9, 9]]
    with pytest.raises(ValueError, match="contiguous"):
        O.relabel(np.zeros((3, 4), np.int32), lut, out=np.zeros((3, 5), np.int32)[:, :4])
    # connected components numbered in raster order, small ones dropped, renumbered without gaps, across chunks
    mask = np.array([[0, 1, 0, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 1, 1, 0, 0]], dtype=bool)
    assert M.label_objects(mask, 1).tolist() == [[0, 1, 0, 2, 2], [1, 1, 0, 0, 0], [0, 0, 0, 3, 0], [4, 4, 4, 0, 0]]
    assert M.label_objects(mask, 1, min_size=2).tolist() == [
        [0, 1, 0, 2, 2], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [3, 3, 3, 0, 0]
    ]  # fmt: skip
    assert M.label_objects(mask, 1).dtype == np.int32


# ------------------------------------------------------------------------------------------------ MONAI metrics
def _batch():
    """Two images: the split gland of test_split_gland, and an image with a gland but an empty prediction."""
    gt = np.stack([_rect((12, 12), (0, 9), (0, 9)), _rect((12, 12), (2, 5), (2, 5))])[:, None]
    fg = np.stack([_rect((12, 12), (0, 9), (0, 5)) + _rect((12, 12), (0, 9), (7, 9)), np.zeros((12, 12), int)])
    onehot = torch.as_tensor(np.stack([1 - fg, fg], axis=1), dtype=torch.float32)
    return onehot, torch.as_tensor(gt)


def test_metric_classes_keep_per_image_scores_and_average_them():
    onehot, gt = _batch()
    f1 = M.ObjectF1Metric()
    f1(onehot, gt)
    assert f1.get_buffer().shape == (2, 1)
    assert f1.get_buffer()[:, 0].tolist() == pytest.approx([2 / 3, 0.0])
    assert float(f1.aggregate()) == pytest.approx(1 / 3)
    hd = M.ObjectHausdorffDistanceMetric(get_not_nans=True)
    hd(list(onehot), list(gt))  # lists of (C, H, W) images, as ignite handlers pass them
    value, not_nans = hd.aggregate()
    assert float(value) == pytest.approx(4.5) and int(not_nans) == 1  # the empty prediction's NaN is left out
    only_empty = M.ObjectHausdorffDistanceMetric()
    only_empty(onehot[1:], gt[1:])
    assert math.isnan(float(only_empty.aggregate()))  # no image with a distance: NaN, not a perfect 0
    # a single-channel binary mask gives the same scores as the one-hot prediction
    dice = M.ObjectDiceMetric(reduction="none")
    dice(onehot[:, 1:], gt)
    assert dice.aggregate()[:, 0].tolist() == pytest.approx([_scores(*_split())["dice"], 0.0])
    dice.reset()
    with pytest.raises(ValueError, match="instance map of shape"):
        dice(onehot, torch.cat([gt, gt], 1))
    with pytest.raises(ValueError, match="same batch and spatial sizes"):
        dice(onehot, gt[..., :-1])
    with pytest.raises(ValueError, match="min_size"):
        M.AggregatedJaccardIndexMetric(min_size=-3)
    with pytest.raises(ValueError, match="connectivity"):
        M.ObjectPanopticQualityMetric(connectivity=0)


def _split():
    gt = _rect((12, 12), (0, 9), (0, 9))
    return _rect((12, 12), (0, 9), (0, 5)) + _rect((12, 12), (0, 9), (7, 9), 2), gt


def test_min_size_drops_small_predicted_objects():
    onehot, gt = _batch()
    metric = M.ObjectF1Metric(min_size=31)  # drops the 30-px piece: the split gland becomes one TP
    metric(onehot[:1], gt[:1])
    assert float(metric.aggregate()) == pytest.approx(1.0)


def test_ignite_handlers_write_scores_and_details():
    from ignite.engine import Engine

    from medt_monai.handlers import (
        AggregatedJaccardIndex,
        ObjectDice,
        ObjectF1,
        ObjectHausdorffDistance,
        ObjectPanopticQuality,
    )

    onehot, gt = _batch()
    engine = Engine(lambda e, b: b)
    handlers = {
        "f1": ObjectF1(), "dice": ObjectDice(), "hausdorff": ObjectHausdorffDistance(),
        "aji": AggregatedJaccardIndex(), "pq": ObjectPanopticQuality(),
    }  # fmt: skip
    for name, h in handlers.items():
        h.attach(engine, name)
    engine.run([(onehot[i : i + 1], gt[i : i + 1]) for i in range(2)], max_epochs=1)
    expected = _scores(*_split())
    for name in handlers:
        details = engine.state.metric_details[name]
        assert details.shape == (2, 1)
        assert float(details[0, 0]) == pytest.approx(expected[name])
    assert engine.state.metrics["f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert engine.state.metrics["hausdorff"] == pytest.approx(4.5)  # NaN of the empty prediction left out


# ------------------------------------------------------------------------------------------------ real GlaS labels
def _glas_instances(n: int) -> list[np.ndarray]:
    from PIL import Image

    if not (GLAS / "labelinst").is_dir():
        pytest.skip(f"{GLAS / 'labelinst'} not found: the real GlaS data (../shared/data) is not beside the checkout")
    files = sorted((GLAS / "labelinst").glob("*.png"))[:n]
    return [np.asarray(Image.open(f)).astype(np.int32) for f in files]


@pytest.mark.realdata
def test_glas_ground_truth_against_itself_is_perfect():
    for gt in _glas_instances(10):
        _check(_scores(gt, gt), {"f1": 1.0, "dice": 1.0, "hausdorff": 0.0, "aji": 1.0, "pq": 1.0})


@pytest.mark.realdata
def test_glas_eroded_and_merged_ground_truth_score_worse():
    from scipy import ndimage

    def eroded(gt, r):  # every gland shrunk by r px (square window), touching glands pulled apart
        window = 2 * r + 1
        return np.where(ndimage.grey_erosion(gt, size=window) == ndimage.grey_dilation(gt, size=window), gt, 0)

    merged = 0
    for gt in _glas_instances(10):
        light, heavy = _scores(eroded(gt, 2), gt), _scores(eroded(gt, 6), gt)
        for name in ("dice", "aji", "pq"):
            assert heavy[name] < light[name] < 1.0, name
        assert heavy["f1"] <= light["f1"] <= 1.0
        assert heavy["hausdorff"] > light["hausdorff"] >= 2.0
        # two glands merged into one object (the second gland relabelled as the first)
        ids = np.unique(gt[gt > 0])
        if len(ids) < 2:
            continue
        m = _scores(np.where(gt == ids[1], ids[0], gt), gt)
        for name in ("f1", "dice", "aji", "pq"):
            assert m[name] < 1.0, name
        assert m["hausdorff"] > 0.0
        merged += 1
    assert merged >= 5


# ------------------------------------------------------------------------------------------------ grouped saver
def test_grouped_metrics_saver_tables(tmp_path):
    from ignite.engine import Engine, Events

    from medt_monai.handlers import GroupedMetricsSaver

    names = ["/d/testA_1.png", "/d/testB_1.png", "/d/testA_2.png", "/d/other.png"]
    batches = [{"meta": {"filename_or_obj": [n]}} for n in names]
    engine = Engine(lambda e, b: b)

    def details(e):  # what the metric handlers leave, before the saver runs
        e.state.metric_details = {
            "f1": torch.tensor([[0.5], [1.0], [float("nan")], [0.25]]),
            "dice": torch.tensor([[0.2, 0.4], [0.6, 0.8], [1.0, 1.0], [0.0, 0.0]]),  # two channels: their mean
        }
        e.state.metrics = {"f1": 0.5833, "dice": 0.5}

    engine.add_event_handler(Events.EPOCH_COMPLETED, details)
    saver = GroupedMetricsSaver(str(tmp_path), batch_transform=lambda b: b["meta"],
                                groups={"testA": "^testA_", "testB": "^testB_"})  # fmt: skip
    saver.attach(engine)
    engine.run(batches, max_epochs=1)
    per_image = (tmp_path / "metrics_per_image.csv").read_text().splitlines()
    assert per_image == [
        "filename,group,f1,dice",
        "/d/testA_1.png,testA,0.5000,0.3000",
        "/d/testB_1.png,testB,1.0000,0.7000",
        "/d/testA_2.png,testA,nan,1.0000",
        "/d/other.png,all,0.2500,0.0000",
    ]
    assert (tmp_path / "metrics_by_group.csv").read_text().splitlines() == [
        "group,images,f1,dice",
        "testA,2,0.5000,0.6500",  # NaN left out of the mean
        "testB,1,1.0000,0.7000",
        f"all,4,{(0.5 + 1.0 + 0.25) / 3:.4f},0.5000",
    ]
    assert (tmp_path / "f1_raw.csv").is_file() and (tmp_path / "metrics.csv").is_file()  # MetricsSaver's files too
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(ValueError, match="reserved"):
        GroupedMetricsSaver(str(tmp_path), groups={"all": "x"})
    with pytest.raises(ValueError, match="regular expression"):
        GroupedMetricsSaver(str(tmp_path), groups={"a": "("})


def test_grouped_metrics_saver_quotes_file_names_with_commas(tmp_path):
    """A file name holding a comma and a quote stays one field: every metric reads back in its own column."""
    import csv

    from ignite.engine import Engine, Events

    from medt_monai.handlers import GroupedMetricsSaver

    names = ['/d/testA_1, left "core".png', "/d/testB_1.png"]
    engine = Engine(lambda e, b: b)

    def details(e):
        e.state.metric_details = {"f1": torch.tensor([[0.5], [1.0]]), "dice": torch.tensor([[0.25], [0.75]])}
        e.state.metrics = {"f1": 0.75, "dice": 0.5}

    engine.add_event_handler(Events.EPOCH_COMPLETED, details)
    saver = GroupedMetricsSaver(str(tmp_path), batch_transform=lambda b: b["meta"],
                                groups={"A, with comma": "^testA_", "testB": "^testB_"})  # fmt: skip
    saver.attach(engine)
    engine.run([{"meta": {"filename_or_obj": [n]}} for n in names], max_epochs=1)
    with open(tmp_path / "metrics_per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"filename": names[0], "group": "A, with comma", "f1": "0.5000", "dice": "0.2500"},
        {"filename": names[1], "group": "testB", "f1": "1.0000", "dice": "0.7500"},
    ]
    with open(tmp_path / "metrics_by_group.csv", newline="") as f:
        groups = list(csv.DictReader(f))
    assert [(g["group"], g["images"], g["f1"]) for g in groups] == [
        ("A, with comma", "1", "0.5000"),
        ("testB", "1", "1.0000"),
        ("all", "2", "0.7500"),
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_blockwise_max_distance_is_exact():
    """The blockwise pruning of the Hausdorff distance gives the brute-force maximum on random masks and points."""
    from scipy.spatial import cKDTree

    from medt_monai.metrics.instances import _max_distance

    rng = np.random.default_rng(0)
    for _ in range(30):
        mask = rng.random((int(rng.integers(30, 120)), int(rng.integers(30, 120)))) < rng.uniform(0.05, 0.9)
        tree = cKDTree(rng.uniform(-50, 170, (int(rng.integers(1, 40)), 2)))
        offset = rng.integers(-5, 5, 2)
        assert _max_distance(mask, tree, offset) == pytest.approx(tree.query(np.argwhere(mask) + offset)[0].max())
