"""Object-level segmentation metrics of the GlaS and MoNuSeg challenges, per image, as MONAI metrics.

GlaS (Sirinukunwattana et al., "Gland segmentation in colon histology images: The GlaS challenge contest", Medical
Image Analysis 35, 2017, Section 3, and the challenge's MATLAB evaluation code): object F1, object Dice, object
Hausdorff distance. MoNuSeg (Kumar et al., "A dataset and a technique for generalized nuclear segmentation for
computational pathology", IEEE TMI 36(7), 2017): aggregated Jaccard index (AJI). Panoptic quality (Kirillov et al.,
CVPR 2019) as used for nuclei (Graham et al., HoVer-Net, Medical Image Analysis 2019).

Each ``compute_*`` function scores one image from two instance maps (0 = background, one id per object). Edge cases,
the same for every metric: an image where neither map has an object is perfect (F1, Dice, AJI, PQ 1; Hausdorff 0);
an image where only one of them has objects scores F1, Dice, AJI and PQ 0 and Hausdorff NaN (no distance to an empty
set; NaN is left out of the mean over images, as MONAI's metrics do).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, convert_data_type, look_up_option

from medt_monai.metrics.instances import ObjectOverlap
from medt_monai.utils.objects import drop_small_objects, label_objects, min_object_size

__all__ = [
    "compute_object_f1",
    "compute_object_dice",
    "compute_object_hausdorff_distance",
    "compute_aggregated_jaccard_index",
    "compute_object_panoptic_quality",
    "ObjectMetric",
    "ObjectF1Metric",
    "ObjectDiceMetric",
    "ObjectHausdorffDistanceMetric",
    "AggregatedJaccardIndexMetric",
    "ObjectPanopticQualityMetric",
    "PooledObjectF1Metric",
    "compute_object_detection_counts",
    "pooled_object_f1",
]


def _overlap(
    pred: NdarrayOrTensor, gt: NdarrayOrTensor, both_empty: float, one_empty: float
) -> tuple[ObjectOverlap, float | None]:
    """The overlap of two instance maps, and the score of the edge cases (None when both maps have objects)."""
    o = ObjectOverlap.from_maps(pred, gt)
    if o.n_gt == 0 and o.n_pred == 0:
        return o, both_empty
    if o.n_gt == 0 or o.n_pred == 0:
        return o, one_empty
    return o, None


def compute_object_f1(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> float:
    """GlaS object-level F1 score (detection) of one image.

    A predicted object is a true positive when it covers more than half of the ground-truth object it overlaps most
    (the GlaS code's ``> 0.5``; the paper's text says "at least 50 %"; the strict form keeps every ground-truth object
    matched at most once); every other predicted object is a false positive; ground-truth objects without a true
    positive are false negatives. F1 = 2 TP / (2 TP + FP + FN).

    Args:
        pred: predicted instance map, spatial dims only (e.g. (H, W)); integer ids, 0 = background.
        gt: ground-truth instance map of the same shape.

    Returns:
        the F1 score in [0, 1]; 1 when neither map has an object, 0 when only one has.

    Raises:
        ValueError: shapes differ, or ids are negative or not whole numbers.
    """
    return pooled_object_f1(np.asarray([compute_object_detection_counts(pred, gt)]))


def compute_object_detection_counts(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> tuple[int, int, int]:
    """The GlaS detection counts of one image, ``(TP, FP, FN)``, with the matching of :func:`compute_object_f1`.

    Raises:
        ValueError: shapes differ, or ids are negative or not whole numbers.
    """
    o = ObjectOverlap.from_maps(pred, gt)
    matched = o.gt_of_pred >= 0
    covered = o.intersection[o.gt_of_pred[matched], np.flatnonzero(matched)] / o.gt_area[o.gt_of_pred[matched]]
    tp = int((covered > 0.5).sum())
    return tp, o.n_pred - tp, o.n_gt - tp


def pooled_object_f1(counts: np.ndarray) -> float:
    """Object F1 of several images pooled as the GlaS challenge scores a test part: ``2 TP / (2 TP + FP + FN)`` of the
    counts summed over the images (not the mean of the images' F1).

    Args:
        counts: ``(N, 3)`` per-image ``(TP, FP, FN)`` (:func:`compute_object_detection_counts`).

    Returns:
        the pooled F1; 1 when no image has an object in prediction or ground truth, NaN for no image.
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    if len(counts) == 0:
        return float("nan")
    tp, fp, fn = counts.sum(axis=0)
    return 1.0 if tp + fp + fn == 0 else float(2.0 * tp / (2.0 * tp + fp + fn))


def _weighted_both_ways(o: ObjectOverlap, per_gt: np.ndarray, per_pred: np.ndarray) -> float:
    """0.5 * (area-weighted mean over ground-truth objects + area-weighted mean over predicted objects)."""
    return 0.5 * (
        float(per_gt @ o.gt_area) / float(o.gt_area.sum()) + float(per_pred @ o.pred_area) / float(o.pred_area.sum())
    )


def _partner_dice(partners: np.ndarray, inter: np.ndarray, area: np.ndarray, other_area: np.ndarray) -> np.ndarray:
    """Dice of each object with its partner (index into the other map, -1 = none: Dice 0); inter: (n, n_other)."""
    out = np.zeros(len(partners), dtype=np.float64)
    hit = partners >= 0
    out[hit] = 2.0 * inter[np.flatnonzero(hit), partners[hit]] / (area[hit] + other_area[partners[hit]])
    return out


def compute_object_dice(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> float:
    """GlaS object-level Dice index of one image.

    ``0.5 * (sum_i g_i Dice(G_i, S*(G_i)) + sum_j s_j Dice(G*(S_j), S_j))`` over ground-truth objects ``G_i`` and
    predicted objects ``S_j``, with area weights ``g_i = |G_i| / sum |G|`` and ``s_j = |S_j| / sum |S|``;
    ``S*(G_i)`` is the predicted object that overlaps ``G_i`` most, ``G*(S_j)`` the ground-truth object that overlaps
    ``S_j`` most. An object that overlaps no object of the other map contributes Dice 0.

    Args:
        pred: predicted instance map, spatial dims only; integer ids, 0 = background.
        gt: ground-truth instance map of the same shape.

    Returns:
        the object Dice in [0, 1]; 1 when neither map has an object, 0 when only one has.

    Raises:
        ValueError: shapes differ, or ids are negative or not whole numbers.
    """
    o, edge = _overlap(pred, gt, 1.0, 0.0)
    if edge is not None:
        return edge

    per_gt = _partner_dice(o.pred_of_gt, o.intersection, o.gt_area, o.pred_area)
    per_pred = _partner_dice(o.gt_of_pred, o.intersection.T, o.pred_area, o.gt_area)
    return _weighted_both_ways(o, per_gt, per_pred)


def compute_object_hausdorff_distance(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> float:
    """GlaS object-level Hausdorff distance of one image, in pixels.

    ``0.5 * (sum_i g_i H(G_i, S*(G_i)) + sum_j s_j H(G*(S_j), S_j))`` with the weights and maximally overlapping
    partners of :func:`compute_object_dice`; ``H`` is the symmetric Hausdorff distance (Euclidean, over all pixels of
    both objects, as the GlaS code's ``Hausdorff``). An object that overlaps no object of the other map is compared
    with the object of the other map nearest to it by Hausdorff distance (as the GlaS code does; found with
    bounding-box and outline lower bounds, so only the closest candidates are measured exactly). Ties go to the
    smaller id.

    Args:
        pred: predicted instance map, spatial dims only; integer ids, 0 = background.
        gt: ground-truth instance map of the same shape.

    Returns:
        the object Hausdorff distance (pixels); 0 when neither map has an object, NaN when only one has.

    Raises:
        ValueError: shapes differ, or ids are negative or not whole numbers.
    """
    o, edge = _overlap(pred, gt, 0.0, float("nan"))
    if edge is not None:
        return edge
    cache: dict[tuple[int, int], float] = {}

    def distance(g: int, p: int) -> float:
        if (g, p) not in cache:
            cache[(g, p)] = o.hausdorff(g, p)
        return cache[(g, p)]

    def nearest(index: int, of_gt: bool) -> float:  # the object overlaps no object of the other map
        bound = o.hausdorff_lower_bound(index, of_gt)
        best, best_k = np.inf, -1
        for k in np.lexsort((np.arange(len(bound)), bound)):  # by bounding-box bound, then id
            if bound[k] > best:
                break
            pair = (index, int(k)) if of_gt else (int(k), index)
            if pair not in cache and o.boundary_hausdorff(*pair) > best:  # a tighter bound, from the outlines
                continue
            d = distance(*pair)
            if d < best or (d == best and k < best_k):
                best, best_k = d, int(k)
        return best

    per_gt = np.array(
        [distance(i, int(p)) if p >= 0 else nearest(i, True) for i, p in enumerate(o.pred_of_gt)], dtype=np.float64
    )
    per_pred = np.array(
        [distance(int(g), j) if g >= 0 else nearest(j, False) for j, g in enumerate(o.gt_of_pred)], dtype=np.float64
    )
    return _weighted_both_ways(o, per_gt, per_pred)


def compute_aggregated_jaccard_index(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> float:
    """Aggregated Jaccard index (AJI, Kumar et al. 2017, Algorithm 1) of one image.

    Each ground-truth object ``G_i`` is paired with the predicted object ``S_j`` of highest IoU with it (a predicted
    object may serve several ground-truth objects); ``|G_i ∩ S_j|`` adds to the intersection sum C and
    ``|G_i ∪ S_j|`` to the union sum U (``|G_i|`` alone when ``G_i`` overlaps no predicted object). Every predicted
    object paired with no ground-truth object adds its area to U. AJI = C / U.

    Arguments, errors and edge cases as for :func:`compute_object_f1`; returns AJI in [0, 1].
    """
    o, edge = _overlap(pred, gt, 1.0, 0.0)
    if edge is not None:
        return edge
    best = o.iou.argmax(axis=1)  # (n_gt,), first = smaller id on ties
    rows = np.arange(o.n_gt)
    hit = o.intersection[rows, best] > 0
    inter = o.intersection[rows[hit], best[hit]]
    union_sum = (o.gt_area[hit] + o.pred_area[best[hit]] - inter).sum() + o.gt_area[~hit].sum()
    used = np.zeros(o.n_pred, dtype=bool)
    used[best[hit]] = True
    union_sum += o.pred_area[~used].sum()
    return float(inter.sum()) / float(union_sum)


def compute_object_panoptic_quality(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> float:
    """Panoptic quality (PQ) of one image's objects (one class).

    Pairs with IoU > 0.5 are matches (unique by construction); PQ = sum of their IoUs / (TP + FP / 2 + FN / 2), with
    TP the matches, FP the unmatched predicted and FN the unmatched ground-truth objects. The matching and formula are
    those of ``monai.metrics.compute_panoptic_quality`` (``match_iou_threshold=0.5``, without its ``1e-6`` smoothing),
    computed from one overlap matrix instead of one full-image mask per object, so images with thousands of nuclei
    stay fast. Unlike MONAI's function (0), an image where neither map has an object scores 1.

    Arguments, errors and edge cases as for :func:`compute_object_f1`; returns PQ in [0, 1].
    """
    o, edge = _overlap(pred, gt, 1.0, 0.0)
    if edge is not None:
        return edge
    matched = o.iou[o.iou > 0.5]
    tp = len(matched)
    return float(matched.sum()) / (tp + 0.5 * (o.n_pred - tp) + 0.5 * (o.n_gt - tp))


class ObjectMetric(CumulativeIterationMetric):
    """Base of the object-level metrics: one score per image from a binary prediction and an instance label.

    The predicted objects are the connected components of the prediction's foreground (:func:`label_objects`), or, with
    ``pred_instances``, the objects of a predicted instance map (e.g. the watershed's of
    :class:`~medt_monai.transforms.InstancesFromProbabilities`, whose touching objects stay apart); the ground truth is
    an instance map. Per-image scores are kept in the buffer (``get_buffer()``, shape (N, 1), e.g.
    for ``MetricsSaver``'s per-image CSV); :meth:`aggregate` reduces them, by default to their mean over the images
    that have a score (NaN is skipped). Subclasses set ``score_fn``, a ``compute_*`` function of
    :mod:`medt_monai.metrics`.

    Args:
        connectivity: neighbourhood of a predicted object, see :func:`label_objects`; None = all neighbours
            (8-neighbourhood in 2D).
        min_size: predicted components smaller than this many pixels are dropped; 0 (default) keeps all.
        pred_instances: ``y_pred`` is an instance map ``(B, 1, *spatial)`` whose ids are the predicted objects
            (``connectivity`` is then unused).
        reduction: MONAI reduction of the per-image scores in :meth:`aggregate` (``"mean"``, ``"sum"``, ``"none"``,
            ...); NaN values are skipped.
        get_not_nans: :meth:`aggregate` also returns the number of images with a (non-NaN) score.

    Raises:
        ValueError: ``connectivity`` not None or >= 1, ``min_size`` negative.
    """

    score_fn: Callable[[NdarrayOrTensor, NdarrayOrTensor], float]

    def __init__(
        self,
        connectivity: int | None = None,
        min_size: int = 0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        pred_instances: bool = False,
    ) -> None:
        super().__init__()
        if connectivity is not None and (
            isinstance(connectivity, bool) or int(connectivity) != connectivity or connectivity < 1
        ):
            raise ValueError(f"connectivity must be None or an integer >= 1, got {connectivity!r}.")
        self.connectivity = connectivity
        self.min_size = min_object_size(min_size)
        self.pred_instances = pred_instances
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Score each image of a batch.

        Args:
            y_pred: (B, C, *spatial) binarised prediction. C == 1: non-zero is foreground; C > 1: one-hot (or scores)
                with channel 0 the background, a pixel is foreground where its argmax is not 0. With
                ``pred_instances``: (B, 1, *spatial) instance maps.
            y: (B, 1, *spatial) ground-truth instance maps (integer ids, 0 = background).

        Returns:
            (B, 1) float32 scores on ``y_pred``'s device.

        Raises:
            ValueError: fewer than 3 dims, ``y`` with more than one channel, or batch/spatial sizes that differ.
        """
        if y_pred.ndim < 3:
            raise ValueError(f"y_pred must be (batch, channels, *spatial), got shape {tuple(y_pred.shape)}.")
        if y.ndim != y_pred.ndim or y.shape[1] != 1:
            raise ValueError(f"y must be an instance map of shape (batch, 1, *spatial), got {tuple(y.shape)}.")
        if y.shape[0] != y_pred.shape[0] or y.shape[2:] != y_pred.shape[2:]:
            raise ValueError(
                f"y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must have the same batch and spatial sizes."
            )
        pred = convert_data_type(y_pred, np.ndarray)[0]
        gt = convert_data_type(y, np.ndarray)[0]
        if self.pred_instances:
            if pred.shape[1] != 1:
                raise ValueError(f"pred_instances: y_pred must be (batch, 1, *spatial) ids, got {tuple(pred.shape)}.")
            objects = [drop_small_objects(pred[b, 0].astype(np.int64), self.min_size) for b in range(len(pred))]
        else:
            fg = pred[:, 0] != 0 if pred.shape[1] == 1 else pred.argmax(axis=1) != 0
            objects = [label_objects(fg[b], self.connectivity, self.min_size) for b in range(len(fg))]
        scores = [self.score_fn(objects[b], gt[b, 0]) for b in range(len(objects))]
        return torch.tensor(scores, dtype=torch.float32, device=y_pred.device).reshape(len(scores), -1)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the per-image scores (NaN skipped).

        Args:
            reduction: overrides ``self.reduction``.

        Returns:
            the reduced score, and with ``get_not_nans`` the number of images that have a score. A mean over no
            scored image is NaN (MONAI's own metrics give 0 there, which would read as a perfect Hausdorff distance).

        Raises:
            ValueError: the buffer is not a tensor (nothing was computed).
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data)}.")
        reduction = look_up_option(reduction or self.reduction, MetricReduction)
        f, not_nans = do_metric_reduction(data, reduction)
        if reduction in (MetricReduction.MEAN, MetricReduction.MEAN_BATCH, MetricReduction.MEAN_CHANNEL):
            f = torch.where(not_nans > 0, f, torch.full_like(f, float("nan")))  # a mean of nothing is NaN, not 0
        return (f, not_nans) if self.get_not_nans else f


class ObjectF1Metric(ObjectMetric):
    """GlaS object-level F1 (detection) per image, :func:`compute_object_f1`; arguments as :class:`ObjectMetric`."""

    score_fn = staticmethod(compute_object_f1)


class ObjectDiceMetric(ObjectMetric):
    """GlaS object-level Dice per image, :func:`compute_object_dice`; arguments as :class:`ObjectMetric`."""

    score_fn = staticmethod(compute_object_dice)


class ObjectHausdorffDistanceMetric(ObjectMetric):
    """GlaS object-level Hausdorff distance (pixels) per image, :func:`compute_object_hausdorff_distance`.

    Arguments as :class:`ObjectMetric`. Images where only one of prediction and ground truth has objects score NaN and
    are left out of the mean (``get_not_nans=True`` counts the images that have a score).
    """

    score_fn = staticmethod(compute_object_hausdorff_distance)


class AggregatedJaccardIndexMetric(ObjectMetric):
    """Aggregated Jaccard index (Kumar et al. 2017) per image, :func:`compute_aggregated_jaccard_index`.

    Arguments as :class:`ObjectMetric`.
    """

    score_fn = staticmethod(compute_aggregated_jaccard_index)


class ObjectPanopticQualityMetric(ObjectMetric):
    """Panoptic quality per image (one class, IoU > 0.5 matches), :func:`compute_object_panoptic_quality`.

    Arguments as :class:`ObjectMetric`. Unlike ``monai.metrics.PanopticQualityMetric`` it takes a binary prediction
    (objects = connected components) and an instance map instead of instance + class channels, and builds one overlap
    matrix per image instead of one mask per object.
    """

    score_fn = staticmethod(compute_object_panoptic_quality)


class PooledObjectF1Metric(ObjectMetric):
    """GlaS object F1 pooled over images as the challenge scores a test part: the buffer holds each image's detection
    counts ``(TP, FP, FN)`` (shape (N, 3)), :meth:`aggregate` gives :func:`pooled_object_f1` of them. Arguments as
    :class:`ObjectMetric` (``reduction`` and ``get_not_nans`` unused)."""

    score_fn = staticmethod(compute_object_detection_counts)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:  # type: ignore[override]
        """The pooled F1 of every image so far, a 0-dim tensor."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data)}.")
        return torch.tensor(pooled_object_f1(data.detach().cpu().numpy()), dtype=torch.float32)
