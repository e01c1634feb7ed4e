"""The objects of a binary mask (its connected components), shared by the transforms and the metrics."""

from __future__ import annotations

import numbers

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_data_type
from skimage.measure import label as _connected_components
from skimage.segmentation import relabel_sequential

__all__ = ["as_numpy", "drop_small_objects", "label_objects", "min_object_size"]


def as_numpy(x: NdarrayOrTensor) -> np.ndarray:
    """``x`` (a tensor or an array) as a NumPy array."""
    return np.asarray(convert_data_type(x, np.ndarray)[0])


def min_object_size(min_size: object) -> int:
    """``min_size`` checked as a minimum object size in pixels: an integer >= 0 (a NumPy integer, or an integral float
    such as ``400.0`` as a command line may give it, counts; a boolean does not).

    Raises:
        ValueError: anything else.
    """
    if (
        isinstance(min_size, bool)
        or not isinstance(min_size, numbers.Real)
        or int(min_size) != min_size
        or min_size < 0
    ):
        raise ValueError(f"min_size must be an integer >= 0 (pixels), got {min_size!r}.")
    return int(min_size)


def label_objects(mask: NdarrayOrTensor, connectivity: int | None = None, min_size: int = 0) -> np.ndarray:
    """The objects of a binary mask: its connected components, numbered 1..N in raster order.

    Args:
        mask: binary mask (non-zero = foreground) with spatial dimensions only, e.g. (H, W).
        connectivity: which neighbours join a component, as in ``skimage.measure.label``: 1 = pixels sharing a
            face (4-neighbourhood in 2D) up to ``mask.ndim`` = sharing a face, edge or corner (8-neighbourhood in 2D).
            None: ``mask.ndim`` (skimage's and MATLAB ``bwlabel``'s default).
        min_size: components with fewer pixels than this become background before numbering; 0 keeps all.

    Returns:
        int32 label map of ``mask``'s shape, 0 = background, objects 1..N.

    Raises:
        ValueError: ``connectivity`` not in 1..``mask.ndim``, or ``min_size`` not an integer >= 0.
    """
    fg = as_numpy(mask) != 0
    if connectivity is not None and not 1 <= connectivity <= max(fg.ndim, 1):
        raise ValueError(f"connectivity must be None or in 1..{fg.ndim} for a {fg.ndim}D mask, got {connectivity}.")
    min_size = min_object_size(min_size)
    labels = _connected_components(fg, connectivity=connectivity).astype(np.int32, copy=False)
    if min_size > 1 and labels.max() > 0:
        labels = relabel_sequential(drop_small_objects(labels, min_size))[0].astype(np.int32, copy=False)
    return labels


def drop_small_objects(ids: np.ndarray, min_size: int) -> np.ndarray:
    """``ids`` (an instance map, 0 background) with the objects of fewer than ``min_size`` pixels set to background
    (the ids of the others unchanged); ``min_size`` 0 or 1 keeps every object.

    Raises:
        ValueError: ``min_size`` not an integer >= 0.
    """
    min_size = min_object_size(min_size)
    if min_size <= 1 or ids.max(initial=0) <= 0:
        return ids
    return np.where((np.bincount(ids.ravel()) < min_size)[ids], 0, ids)
