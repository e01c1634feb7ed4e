"""The objects of a binary mask (its connected components), shared by the transforms and the metrics."""

from __future__ import annotations

import numbers

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_data_type
from scipy import ndimage

__all__ = ["as_numpy", "drop_small_objects", "label_objects", "min_object_size", "object_sizes", "relabel"]

#: pixels per step of the chunked passes over an id map (:func:`object_sizes`, :func:`relabel`): their temporaries
#: stay a few MB instead of an int64 copy of the map (0.2 GB for a slide's 26-Mpx block)
_CHUNK = 1 << 20


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
    structure = ndimage.generate_binary_structure(fg.ndim, connectivity or fg.ndim)
    labels, count = ndimage.label(fg, structure, output=np.int32)  # numbered in raster order, as skimage's label
    if min_size > 1 and count > 0:
        kept = object_sizes(labels, count) >= min_size
        kept[0] = False
        lut = np.zeros(count + 1, dtype=np.int32)
        lut[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)  # the kept ones renumbered, order unchanged
        relabel(labels, lut, out=labels)
    return labels


def object_sizes(ids: np.ndarray, max_id: int | None = None) -> np.ndarray:
    """Pixels of each id 0..``max_id`` (default: the largest in ``ids``) of an id map (integers >= 0): the
    ``np.bincount`` of ``ids``, counted a chunk at a time."""
    flat = np.ravel(ids)
    max_id = int(flat.max(initial=0)) if max_id is None else int(max_id)
    sizes = np.zeros(max_id + 1, dtype=np.int64)
    for start in range(0, flat.size, _CHUNK):
        sizes += np.bincount(flat[start : start + _CHUNK], minlength=max_id + 1)
    return sizes


def relabel(ids: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``lut[ids]`` (ids mapped through a lookup table, in ``lut``'s type) a chunk at a time; ``out=ids`` maps in
    place, without a second map of the image's size."""
    if out is None:
        out = np.empty(ids.shape, dtype=lut.dtype)
    flat_ids, flat_out = ids.reshape(-1), out.reshape(-1)
    if out.shape != ids.shape or not np.shares_memory(flat_out, out):
        raise ValueError(f"relabel: out must be a contiguous array of the ids' shape {ids.shape}.")
    for start in range(0, flat_ids.size, _CHUNK):
        flat_out[start : start + _CHUNK] = lut[flat_ids[start : start + _CHUNK]]
    return out


def drop_small_objects(ids: np.ndarray, min_size: int) -> np.ndarray:
    """``ids`` (an instance map, 0 background) with the objects of fewer than ``min_size`` pixels set to background
    (the ids of the others unchanged); ``min_size`` 0 or 1 keeps every object.

    Raises:
        ValueError: ``min_size`` not an integer >= 0.
    """
    min_size = min_object_size(min_size)
    max_id = int(ids.max(initial=0)) if min_size > 1 else 0
    if max_id <= 0:
        return ids
    lut = np.arange(max_id + 1, dtype=ids.dtype)
    lut[object_sizes(ids, max_id) < min_size] = 0
    return relabel(ids, lut)
