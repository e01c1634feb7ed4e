"""Objects apart: the three-class target made from instance maps, the watershed that recovers touching objects from
the network's probabilities, object metrics on predicted instances and the GlaS challenge's pooled object F1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medt_monai.data import get_transforms
from medt_monai.metrics import (
    ObjectF1Metric,
    PooledObjectF1Metric,
    compute_object_detection_counts,
    compute_object_f1,
    label_objects,
    pooled_object_f1,
)
from medt_monai.transforms import (
    BACKGROUND,
    BOUNDARY,
    INTERIOR,
    InstancesFromProbabilities,
    InstancesFromProbabilitiesd,
    InstancesToBoundaryClasses,
    mask_postprocessing,
)


def _touching_discs(height: int = 40, width: int = 64, second_id: int = 2) -> np.ndarray:
    """Two discs of radius 12 whose outlines touch along a vertical chord (ids 1 and ``second_id``)."""
    yy, xx = np.mgrid[:height, :width]
    ids = np.zeros((height, width), np.int32)
    ids[(yy - 20) ** 2 + (xx - 20) ** 2 < 144] = 1
    ids[((yy - 20) ** 2 + (xx - 42) ** 2 < 144) & (ids == 0)] = second_id
    return ids


def _probabilities(target: np.ndarray, blur: float = 1.0) -> torch.Tensor:
    """Soft probabilities (3, H, W) of a three-class target, as a network trained on it would give."""
    from scipy import ndimage

    onehot = np.eye(3, dtype=np.float32)[target].transpose(2, 0, 1)
    soft = np.stack([ndimage.gaussian_filter(c, blur) for c in onehot]) + 1e-6
    return torch.from_numpy(soft / soft.sum(0))


def test_boundary_target_separates_touching_objects_by_a_band_of_the_given_width():
    ids = np.zeros((1, 7, 10), np.int32)
    ids[0, 1:6, 1:5] = 1  # two 5x4 rectangles side by side, touching between columns 4 and 5
    ids[0, 1:6, 5:9] = 300  # a 16-bit id
    target = InstancesToBoundaryClasses(width=1)(MetaTensor(torch.from_numpy(ids)))[0].numpy()
    expected = np.zeros((7, 10), np.uint8)
    expected[1:6, 1:9] = BOUNDARY
    expected[2:5, 2:4] = INTERIOR  # each object's inner pixels, the touching columns 4 and 5 are boundary
    expected[2:5, 6:8] = INTERIOR
    np.testing.assert_array_equal(target, expected)
    wide = InstancesToBoundaryClasses(width=2)(torch.from_numpy(ids))[0].numpy()
    assert (wide == INTERIOR).sum() == 0  # 4 pixels wide: all band at width 2
    interiors = label_objects(target == INTERIOR, connectivity=1)
    assert interiors.max() == 2  # the two objects' interiors do not touch
    assert InstancesToBoundaryClasses()(torch.zeros(1, 5, 5)).sum() == 0  # an image without objects: all background
    assert float(InstancesToBoundaryClasses(width=1)(torch.from_numpy(ids).float())[0, 3, 3]) == INTERIOR  # float ids
    assert BACKGROUND == 0


@pytest.mark.parametrize(
    "image, message",
    [
        (MetaTensor(torch.zeros(3, 5, 5), meta={"filename_or_obj": "/d/colour.png"}), r"/d/colour\.png: an instance map has one channel"),
        (MetaTensor(torch.full((1, 5, 5), 1.5), meta={"filename_or_obj": "/d/soft.tif"}), r"/d/soft\.tif: .* fractional"),
        (torch.full((1, 5, 5), -1), "ids must be >= 0"),
    ],
)  # fmt: skip
def test_a_label_image_that_is_not_an_instance_map_is_named(image, message):
    with pytest.raises(ValueError, match=message):
        InstancesToBoundaryClasses()(image)
    with pytest.raises(ValueError, match="width"):
        InstancesToBoundaryClasses(width=0)


def test_watershed_separates_two_touching_discs_that_connected_components_join():
    ids = _touching_discs(second_id=7)
    assert label_objects(ids > 0).max() == 1  # as one mask they are one object
    target = InstancesToBoundaryClasses(width=2)(torch.from_numpy(ids)[None])[0].numpy().astype(int)
    instances = InstancesFromProbabilities()(_probabilities(target))
    assert instances.shape == (1, 40, 64) and instances.dtype == torch.int32
    found = instances[0].numpy()
    assert sorted(np.unique(found).tolist()) == [0, 1, 2]  # renumbered 1..N
    assert compute_object_f1(found, ids) == 1.0 and compute_object_f1(label_objects(ids > 0), ids) == pytest.approx(
        2 / 3
    )
    # every object pixel of the ground truth is in the object found for it, up to the blurred outline
    for gt_id in (1, 7):
        overlap = np.bincount(found[ids == gt_id], minlength=3)
        assert overlap.argmax() > 0 and overlap.max() / (ids == gt_id).sum() > 0.95
    # min_size drops objects; an image without foreground has none
    assert InstancesFromProbabilities(min_size=10_000)(_probabilities(target)).max() == 0
    assert InstancesFromProbabilities()(_probabilities(np.zeros((8, 8), int))).max() == 0
    with pytest.raises(ValueError, match=r"/d/x\.png: expected the probabilities of background, interior and boundary"):
        InstancesFromProbabilities()(MetaTensor(torch.zeros(2, 8, 8), meta={"filename_or_obj": "/d/x.png"}))


def test_watershed_keeps_an_object_without_a_seed_and_fills_its_holes():
    target = np.zeros((20, 20), int)
    target[2:6, 2:6] = BOUNDARY  # a small object predicted as boundary only: no interior seed
    target[8:18, 8:18] = INTERIOR
    probabilities = _probabilities(target, blur=0.5)
    probabilities[:, 12, 12] = torch.tensor([0.9, 0.05, 0.05])  # a one-pixel hole in the big object
    found = InstancesFromProbabilities(fill_holes=True)(probabilities)[0].numpy()
    assert found.max() == 2 and found[3, 3] > 0 and found[12, 12] == found[10, 10] > 0
    assert InstancesFromProbabilities(fill_holes=False)(probabilities)[0, 12, 12] == 0


def test_instances_postprocessing_writes_the_instance_map_and_its_foreground_as_the_mask(tmp_path):
    from PIL import Image

    image = np.zeros((40, 64, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    preprocessing = get_transforms("infer", img_size=32)
    data = preprocessing({"image": str(tmp_path / "x.png")})
    target = InstancesToBoundaryClasses(width=1)(torch.from_numpy(_small_pair())[None])
    logits = torch.log(_probabilities(target[0].numpy().astype(int)))
    data["pred"] = MetaTensor(logits, meta=data["image"].meta, applied_operations=data["image"].applied_operations)
    out = mask_postprocessing(preprocessing, output="instances")(data)
    assert out["pred_instances"].shape == (1, 64, 40)  # the image's own size (MONAI's (W, H) order of PNGs)
    assert out["pred_instances"].max() == 2
    np.testing.assert_array_equal(out["pred"].numpy(), (out["pred_instances"] > 0).numpy())
    with pytest.raises(ValueError, match="output must be one of 'semantic', 'instances'"):
        mask_postprocessing(preprocessing, output="contours")
    direct = InstancesFromProbabilitiesd("pred", "objects")({"pred": _probabilities(target[0].numpy().astype(int))})
    assert direct["objects"].max() == 2 and direct["pred"].shape == (1, 32, 32)


def test_instances_at_a_zoom_are_those_of_the_zoomed_probabilities_one_channel_at_a_time():
    from monai.transforms import Zoom

    rng = np.random.default_rng(3)
    target = rng.integers(0, 3, (6, 9))[np.repeat(np.arange(6), 4)][:, np.repeat(np.arange(9), 4)]  # 24 x 36 blocks
    logits = MetaTensor(torch.log(_probabilities(target, blur=1.5)))
    probabilities = torch.softmax(logits, 0)
    zoomed = Zoom(2.5, mode="bilinear", keep_size=False)(probabilities)
    expected = InstancesFromProbabilities(min_size=20, min_seed_size=10, fill_holes=False)(zoomed)
    found = InstancesFromProbabilities(min_size=20, min_seed_size=10, fill_holes=False, zoom=2.5)(probabilities)
    assert found.shape == (1, 60, 90) and found.max() >= 3
    np.testing.assert_array_equal(found.numpy(), expected.numpy())
    assert torch.equal(found.affine, zoomed.affine)  # the zoom is recorded as MONAI's Zoom records it
    # the slide's chain: softmax, then the objects at the zoom, the mask their foreground
    out = mask_postprocessing(None, output="instances", min_size=20, min_seed_size=10, zoom=2.5)({"pred": logits})
    np.testing.assert_array_equal(out["pred_instances"].numpy(), expected.numpy())
    np.testing.assert_array_equal(out["pred"].numpy(), (expected > 0).numpy())
    with pytest.raises(ValueError, match="not both"):
        mask_postprocessing(get_transforms("infer", img_size=32), output="instances", zoom=2.5)


def _small_pair() -> np.ndarray:
    ids = np.zeros((32, 32), np.int32)
    ids[4:28, 3:16] = 1
    ids[4:28, 16:29] = 2
    return ids


def test_pooled_object_f1_sums_the_detection_counts_of_the_images():
    gt_a = np.zeros((10, 10), int)
    gt_a[1:4, 1:4], gt_a[6:9, 6:9] = 1, 2
    pred_a = np.zeros_like(gt_a)
    pred_a[1:4, 1:4] = 1  # one of two found: TP 1, FP 0, FN 1
    gt_b = np.zeros((10, 10), int)
    gt_b[2:8, 2:8] = 1
    pred_b = np.zeros_like(gt_b)
    pred_b[2:8, 2:8], pred_b[0, 9] = 1, 2  # found, plus a speck: TP 1, FP 1, FN 0
    assert compute_object_detection_counts(pred_a, gt_a) == (1, 0, 1)
    assert compute_object_detection_counts(pred_b, gt_b) == (1, 1, 0)
    # per image 2/3 and 2/3; pooled 2 * 2 / (2 * 2 + 1 + 1) = 2/3 as well; a third image without objects changes the
    # mean (its F1 is 1) but not the pooled score
    empty = np.zeros((10, 10), int)
    counts = np.array(
        [compute_object_detection_counts(p, g) for p, g in ((pred_a, gt_a), (pred_b, gt_b), (empty, empty))]
    )
    assert pooled_object_f1(counts) == pytest.approx(2 / 3)
    assert np.mean([compute_object_f1(pred_a, gt_a), compute_object_f1(pred_b, gt_b), 1.0]) == pytest.approx(7 / 9)
    assert pooled_object_f1(np.zeros((2, 3))) == 1.0 and np.isnan(pooled_object_f1(np.zeros((0, 3))))
    metric = PooledObjectF1Metric(pred_instances=True)
    metric(
        torch.from_numpy(np.stack([pred_a, pred_b, empty]))[:, None],
        torch.from_numpy(np.stack([gt_a, gt_b, empty]))[:, None],
    )
    assert metric.get_buffer().tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert float(metric.aggregate()) == pytest.approx(2 / 3)


def test_object_metrics_take_predicted_instances_whose_touching_objects_stay_apart():
    ids = _touching_discs()
    pred = torch.from_numpy(ids)[None, None]
    gt = torch.from_numpy(ids)[None, None]
    assert float(ObjectF1Metric(pred_instances=True)(pred, gt)) == 1.0
    assert float(ObjectF1Metric()(pred, gt)) == pytest.approx(2 / 3)  # as a mask: one component for two glands
    small = ObjectF1Metric(pred_instances=True, min_size=10_000)(pred, gt)
    assert float(small) == 0.0  # every predicted object dropped
    with pytest.raises(ValueError, match="pred_instances: y_pred must be"):
        ObjectF1Metric(pred_instances=True)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))


def test_objects_inside_another_objects_bounding_box_come_out_whole_and_in_raster_order():
    """The watershed floods each foreground component within its bounding box: a U's box holds a disc (and two
    touching discs lie beside it); every object comes out whole with its own id, the touching discs split, and the ids
    follow the raster order of each object's first pixel (the U 1, the disc 2, the touching discs 3 and 4)."""
    yy, xx = np.mgrid[:64, :120]
    ids = np.zeros((64, 120), np.int32)
    ids[(np.abs(yy - 30) <= 24) & (np.abs(xx - 30) <= 24)] = 5
    ids[(np.abs(yy - 30) <= 18) & (np.abs(xx - 30) <= 18)] = 0  # a square ring 7 px wide, rows and columns 6-54
    ids[40:, 12:49] = 0  # open at the bottom: a U (no hole to fill)
    ids[(yy - 30) ** 2 + (xx - 30) ** 2 < 100] = 9  # a disc inside the U's box, apart from it
    pair = _touching_discs()  # 40 x 64: discs of radius 12 centred at rows 20 and columns 20 / 42, touching
    ids[24:64, 56:120] = np.where(pair == 1, 11, np.where(pair > 0, 12, 0))
    target = InstancesToBoundaryClasses(width=2)(torch.from_numpy(ids)[None])[0].numpy().astype(int)
    found = InstancesFromProbabilities()(_probabilities(target, blur=0.5))[0].numpy()
    assert found.max() == 4
    for gt_id, expected in ((5, 1), (9, 2), (11, 3), (12, 4)):
        overlap = np.bincount(found[ids == gt_id], minlength=5)
        assert overlap.argmax() == expected and overlap.max() / (ids == gt_id).sum() > 0.9, (gt_id, overlap)


def test_flooding_component_by_component_is_the_whole_images_watershed():
    """Step 3 runs per foreground component in its bounding box (memory of the largest component, not the image's):
    on a field of irregular blobs whose boxes overlap, the ids equal MONAI's ``Watershed`` on the whole image, and the
    components without a seed are numbered after the seeds in raster order."""
    from monai.apps.pathology.transforms import Watershed
    from scipy import ndimage

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.normal(size=(3, 160, 200)).astype(np.float32), (0, 4, 4)) * 40
    probabilities = torch.from_numpy(field).softmax(0).numpy()
    foreground = probabilities[BACKGROUND] < 0.5
    seeds = label_objects((probabilities.argmax(0) == INTERIOR) & foreground, 1)
    components = label_objects(foreground, 1)
    boxes = ndimage.find_objects(components)
    assert components.max() > 10 and seeds.max() > 10
    # some component's box holds part of another component
    assert any(np.any((components[b] > 0) & (components[b] != k)) for k, b in enumerate(boxes, start=1))
    whole = np.asarray(Watershed(connectivity=1, dtype=np.int32)(probabilities[None, BOUNDARY], foreground[None],
                                                                 seeds[None]))[0]  # fmt: skip
    unseeded = label_objects(foreground & (whole == 0), 1)  # components without a seed: new ids after the seeds'
    assert unseeded.max() > 0
    whole = np.where(unseeded > 0, unseeded + seeds.max(), whole)
    by_component = InstancesFromProbabilities()._flood(probabilities[BOUNDARY], foreground, seeds)
    np.testing.assert_array_equal(by_component, whole)
