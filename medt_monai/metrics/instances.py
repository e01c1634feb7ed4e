"""Objects for the object-level metrics: instances of a binary mask, overlaps of two instance maps, Hausdorff distances.

Everything works on label maps of any number of spatial dimensions (no channel dimension), 0 = background. The
per-object work is vectorised: areas and pairwise intersections come from one ``numpy.bincount`` over the pixel
pairs, Hausdorff distances from KD-trees of object boundaries, queried only with the pixels of one object that lie
outside the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from monai.config import NdarrayOrTensor
from scipy import ndimage
from scipy.spatial import cKDTree

from medt_monai.utils.objects import as_numpy as _as_numpy

__all__ = ["ObjectOverlap"]

_BLOCK = 8  # side of the pixel blocks of _max_distance


def _max_distance(points: np.ndarray, tree: cKDTree, offset: np.ndarray) -> float:
    """Exact ``max`` over the True pixels of ``points`` (a mask whose pixel 0 is at ``offset``) of the distance to the
    nearest point of ``tree``; 0 for an empty mask.

    Large masks are cut into blocks of ``_BLOCK`` pixels per side; one pixel per block is measured, and only blocks
    whose bound (that distance + the block's diagonal: the distance is 1-Lipschitz) exceeds the largest measured
    distance are measured pixel by pixel.
    """
    n = int(np.count_nonzero(points))
    if n == 0:
        return 0.0
    if n <= 8 * _BLOCK**2:  # small: measuring every pixel is cheaper than the blocks
        return float(tree.query(np.argwhere(points) + offset)[0].max())
    ndim, b = points.ndim, _BLOCK
    padded = np.pad(points, [(0, -size % b) for size in points.shape])
    grid = [size // b for size in padded.shape]
    # (g0, b, g1, b, ...) -> (g0, g1, ..., b, b, ...) -> (blocks, b**ndim)
    blocks = padded.reshape([v for g in grid for v in (g, b)])
    blocks = blocks.transpose([*range(0, 2 * ndim, 2), *range(1, 2 * ndim, 2)]).reshape(-1, b**ndim)
    occupied = np.flatnonzero(blocks.any(axis=1))
    corner = np.stack(np.unravel_index(occupied, grid), axis=1) * b + offset  # (m, ndim) first pixel of each block
    first = np.stack(np.unravel_index(blocks[occupied].argmax(axis=1), (b,) * ndim), axis=1)
    measured = tree.query(corner + first)[0]
    best = float(measured.max())
    open_blocks = occupied[measured + (b - 1) * np.sqrt(ndim) > best]
    if len(open_blocks):
        inner = np.argwhere(blocks[open_blocks])  # (k, 2): block row, position in block
        pixels = np.stack(np.unravel_index(open_blocks[inner[:, 0]], grid), axis=1) * b + offset
        pixels += np.stack(np.unravel_index(inner[:, 1], (b,) * ndim), axis=1)
        best = max(best, float(tree.query(pixels)[0].max()))
    return best


def _sequential(labels: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """Renumber the ids of an instance map to 1..n (order kept, 0 stays background); returns (map, n)."""
    if labels.dtype == bool:
        labels = labels.astype(np.int32)
    elif labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{what}: instance ids must be whole numbers, got non-integer values.")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"{what}: instance map must have an integer dtype, got {labels.dtype}.")
    if labels.size == 0:
        return labels.astype(np.int32), 0
    low, top = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"{what}: instance ids must be >= 0 (0 = background), got {low}.")
    if top <= 4 * labels.size + 1024:  # ids small enough for a lookup table
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=top + 1)[1:]) + 1
        if len(present) == top:  # already 1..n
            return labels, top
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
        return lut[labels], len(present)
    ids, inverse = np.unique(labels, return_inverse=True)
    seq = inverse.reshape(labels.shape).astype(np.int32)
    if ids[0] != 0:
        seq += 1
    return seq, int((ids > 0).sum())


@dataclass(frozen=True)
class ObjectOverlap:
    """Areas and pairwise intersections of the objects of a predicted and a ground-truth instance map.

    Build it with :meth:`from_maps`. Objects are indexed 0..n-1 in the order of their ids (``pred`` and ``gt`` hold
    them renumbered 1..n). Where an object overlaps several objects of the other map equally, the one with the
    smaller id counts as its maximally overlapping partner (``numpy.argmax`` takes the first).

    Attributes:
        pred: predicted instance map renumbered 1..n_pred (0 background).
        gt: ground-truth instance map renumbered 1..n_gt.
        pred_area: (n_pred,) pixels per predicted object.
        gt_area: (n_gt,) pixels per ground-truth object.
        intersection: (n_gt, n_pred) pixels shared by each pair.
    """

    pred: np.ndarray
    gt: np.ndarray
    pred_area: np.ndarray
    gt_area: np.ndarray
    intersection: np.ndarray

    @classmethod
    def from_maps(cls, pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> ObjectOverlap:
        """Overlaps of two instance maps of the same shape (integer ids, 0 = background, ids need not be consecutive).

        Raises:
            ValueError: the shapes differ, or ids are negative or not whole numbers.
        """
        p, g = _as_numpy(pred), _as_numpy(gt)
        if p.shape != g.shape:
            raise ValueError(f"prediction and ground truth must have the same shape, got {p.shape} and {g.shape}.")
        p, n_p = _sequential(p, "prediction")
        g, n_g = _sequential(g, "ground truth")
        pairs = g.ravel().astype(np.int64) * (n_p + 1) + p.ravel()
        joint = np.bincount(pairs, minlength=(n_g + 1) * (n_p + 1)).reshape(n_g + 1, n_p + 1)
        return cls(pred=p, gt=g, pred_area=joint[:, 1:].sum(0), gt_area=joint[1:].sum(1), intersection=joint[1:, 1:])

    @property
    def n_pred(self) -> int:
        return len(self.pred_area)

    @property
    def n_gt(self) -> int:
        return len(self.gt_area)

    @cached_property
    def iou(self) -> np.ndarray:
        """(n_gt, n_pred) intersection over union of each pair."""
        union = self.gt_area[:, None] + self.pred_area[None, :] - self.intersection
        return self.intersection / np.maximum(union, 1)

    @cached_property
    def gt_of_pred(self) -> np.ndarray:
        """(n_pred,) index of the ground-truth object each predicted object overlaps most, -1 where it overlaps none."""
        return self._best(self.intersection)

    @cached_property
    def pred_of_gt(self) -> np.ndarray:
        """(n_gt,) index of the predicted object each ground-truth object overlaps most, -1 where it overlaps none."""
        return self._best(self.intersection.T)

    @staticmethod
    def _best(inter: np.ndarray) -> np.ndarray:  # inter: (n_partners, n_objects)
        if inter.shape[0] == 0:
            return np.full(inter.shape[1], -1, dtype=np.int64)
        best = inter.argmax(axis=0)
        return np.where(inter[best, np.arange(inter.shape[1])] > 0, best, -1)

    @cached_property
    def _boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounding boxes, (n, ndim) start and stop rows of ground-truth objects then predicted objects."""
        boxes = [
            [(s.start, s.stop) for s in sl]
            for lab, n in ((self.gt, self.n_gt), (self.pred, self.n_pred))
            for sl in ndimage.find_objects(lab, max_label=n)
        ]
        arr = np.asarray(boxes, dtype=np.int64).reshape(len(boxes), self.gt.ndim, 2)
        return arr[..., 0], arr[..., 1]

    def hausdorff(self, gt_index: int, pred_index: int) -> float:
        """Symmetric Hausdorff distance (pixels, Euclidean, over all pixels of both objects) of one pair.

        The nearest pixel of an object to a pixel outside it always lies on the object's inner boundary, so each
        direction queries a KD-tree of the other object's boundary with the pixels that lie outside the other object
        (see :func:`_max_distance` for how most of them are skipped exactly).
        """
        start, stop = self._boxes
        j = self.n_gt + pred_index
        lows, highs = np.minimum(start[gt_index], start[j]), np.maximum(stop[gt_index], stop[j])
        crop = tuple(slice(lo, hi) for lo, hi in zip(lows, highs))
        g = self.gt[crop] == gt_index + 1
        p = self.pred[crop] == pred_index + 1
        return max(_max_distance(p & ~g, self._tree(gt_index), lows), _max_distance(g & ~p, self._tree(j), lows))

    def boundary_hausdorff(self, gt_index: int, pred_index: int) -> float:
        """A lower bound of :meth:`hausdorff` for two objects that do not overlap: the Hausdorff distance of their
        inner boundaries (exact unless one object encloses the other)."""
        g, p = self._edges[gt_index], self._edges[self.n_gt + pred_index]
        return float(max(self._tree(gt_index).query(p)[0].max(), self._tree(self.n_gt + pred_index).query(g)[0].max()))

    @cached_property
    def _edges(self) -> list[np.ndarray]:
        """Inner boundary pixels (global (n, ndim) coordinates) of every ground-truth then every predicted object:
        the object's pixels with a face neighbour that is not theirs."""
        edges = []
        for lab, n in ((self.gt, self.n_gt), (self.pred, self.n_pred)):
            mask = np.zeros(lab.shape, dtype=bool)
            for axis in range(lab.ndim):
                step = np.diff(lab, axis=axis) != 0
                lo = [slice(None)] * lab.ndim
                hi = [slice(None)] * lab.ndim
                lo[axis], hi[axis] = slice(None, -1), slice(1, None)
                mask[tuple(lo)] |= step
                mask[tuple(hi)] |= step
            mask &= lab > 0
            coords, ids = np.argwhere(mask), lab[mask]
            order = np.argsort(ids, kind="stable")
            edges += np.split(coords[order], np.cumsum(np.bincount(ids, minlength=n + 1)[1:])[:-1])
        return edges

    @cached_property
    def _trees(self) -> dict[int, cKDTree]:
        return {}

    def _tree(self, index: int) -> cKDTree:
        """KD-tree of the boundary pixels of object ``index`` (ground truth 0..n_gt-1, then predicted), cached."""
        if index not in self._trees:
            self._trees[index] = cKDTree(self._edges[index])
        return self._trees[index]

    def hausdorff_lower_bound(self, index: int, of_gt: bool) -> np.ndarray:
        """Lower bounds of the Hausdorff distance of one object to every object of the other map, from bounding boxes.

        A point of one object at a box face beyond the other box's face is at least that far from every point of the
        other object, so ``max`` over axes of ``|start_a - start_b|`` and ``|(stop_a - 1) - (stop_b - 1)|`` bounds the
        distance from below.

        Args:
            index: the object's index (in the ground truth if ``of_gt``, else in the prediction).
            of_gt: whether ``index`` is a ground-truth object (bounds to all predicted objects) or a predicted one.

        Returns:
            (n_pred,) if ``of_gt`` else (n_gt,) lower bounds.
        """
        start, stop = self._boxes
        me = index if of_gt else self.n_gt + index
        others = slice(self.n_gt, None) if of_gt else slice(0, self.n_gt)
        gap = np.maximum(np.abs(start[others] - start[me]), np.abs(stop[others] - stop[me]))
        return gap.max(axis=1).astype(np.float64)
