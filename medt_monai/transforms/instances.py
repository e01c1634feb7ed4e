"""Separate objects: a training target that marks the border between touching glands or nuclei, and the objects
recovered from a network's probabilities of that target by a marker-controlled watershed.

The target has three classes, :data:`BACKGROUND`, :data:`INTERIOR` and :data:`BOUNDARY`: every object of an instance
map is cut into its interior and a band of ``width`` pixels along its outline, so two objects that touch are
separated by their bands (the three-class target of FullNet, Qu et al. 2019, and the contour channel of DCAN, Chen et
al. 2016, as one softmax). From the probabilities of the three classes at the image's own size,
:class:`InstancesFromProbabilities` seeds one object per connected interior and floods the foreground from the seeds
over the boundary probability (MONAI's pathology ``Watershed``, i.e. scikit-image's), so the objects meet where the
network sees their border.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.apps.pathology.transforms import Watershed
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import FillHoles, MapTransform, Transform, Zoom
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage
from skimage.segmentation import find_boundaries

from medt_monai.transforms.array import source_name
from medt_monai.utils.objects import label_objects, min_object_size, object_sizes, relabel

__all__ = [
    "BACKGROUND",
    "INTERIOR",
    "BOUNDARY",
    "check_instance_map",
    "InstancesToBoundaryClasses",
    "InstancesFromProbabilities",
    "InstancesToBoundaryClassesd",
    "InstancesFromProbabilitiesd",
]

#: the class ids of the three-class target
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def check_instance_map(img: NdarrayOrTensor) -> np.ndarray:
    """``img`` as a ``(H, W)`` int64 array of object ids (0 background), or a ``ValueError`` naming its file.

    An instance map has one channel of integer ids >= 0 (8-, 16- or 32-bit, or floats holding integers); an RGB
    image, negative or fractional values are not one.
    """
    source = source_name(img)
    if img.ndim != 3 or img.shape[0] != 1:
        raise ValueError(
            f"{source}: an instance map has one channel of object ids, got shape {tuple(img.shape)} (an RGB or "
            "colour-coded image? save the ids as an 8- or 16-bit one-channel PNG or TIFF)."
        )
    ids = convert_to_numpy(img)[0]
    if not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise ValueError(f"{source}: an instance map holds integer object ids, this one holds fractional values.")
    if ids.size and ids.min() < 0:
        raise ValueError(f"{source}: object ids must be >= 0 (0 is background), found {int(ids.min())}.")
    return ids.astype(np.int64)


class InstancesToBoundaryClasses(Transform):
    """Instance map ``(1, H, W)`` -> the three-class target ``(1, H, W)``: :data:`BACKGROUND`, :data:`INTERIOR`, and
    :data:`BOUNDARY` for the pixels of an object within ``width`` pixels of its outline (next to the background or to
    another object, edge neighbours).

    Apply it at the network's scale (after resizing the instance map with nearest-neighbour interpolation), so that
    ``width`` is in the pixels the network sees; an object thinner than ``2 * width`` is all boundary.

    Args:
        width: width of the boundary band in pixels, >= 1.

    Raises:
        ValueError: ``width < 1``; an input that is not an instance map (see :func:`check_instance_map`).
    """

    def __init__(self, width: int = 2) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width (the boundary band, in pixels) must be an int >= 1, got {width!r}.")
        self.width = width

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        ids = check_instance_map(img)
        foreground = ids > 0
        band = find_boundaries(ids, connectivity=1, mode="inner") & foreground
        if self.width > 1:
            band = ndimage.binary_dilation(band, ndimage.generate_binary_structure(2, 1), self.width - 1) & foreground
        target = np.where(band, BOUNDARY, np.where(foreground, INTERIOR, BACKGROUND)).astype(np.uint8)
        return convert_to_dst_type(target[None], img, dtype=torch.float32)[0]


class InstancesFromProbabilities(Transform):
    """Probabilities of the three-class target ``(3, H, W)`` -> instance map ``(1, H, W)``, int32, 0 background.

    1. foreground: pixels whose background probability is below 0.5;
    2. seeds: the connected components (edge neighbours) of the pixels where :data:`INTERIOR` is the most probable
       class, each with at least ``min_seed_size`` pixels;
    3. the foreground flooded from the seeds over the :data:`BOUNDARY` probability (marker-controlled watershed), so
       two seeds that touch through a band of boundary pixels meet on its ridge; a foreground component without a
       seed becomes one object of its own;
    4. each object's holes filled (``fill_holes``), objects under ``min_size`` pixels removed, the ids renumbered
       1..N in raster order of first appearance.

    Run it at the image's own size, on probabilities (not labels) resized there, so the outlines are drawn at full
    resolution; or give it the network's probabilities with ``zoom``, which brings each channel there (bilinear, as
    MONAI's ``Zoom``) only when it is needed, so the three zoomed channels are never held at once (the same objects;
    for a full block of a slide, 0.3 GB of zoomed probabilities held at once becomes at most 0.2 GB).

    Args:
        min_size: objects with fewer pixels are removed; 0 keeps all.
        min_seed_size: seeds with fewer pixels are dropped before the flooding; 0 keeps all.
        fill_holes: fill the background enclosed by an object.
        zoom: the factor from the input's scale to the one the objects are found at; None or 1 finds them at the
            input's.

    Raises:
        ValueError: an input without 3 channels (the message names its file); ``min_size`` or ``min_seed_size`` not
            an integer >= 0.
    """

    def __init__(
        self, min_size: int = 0, min_seed_size: int = 0, fill_holes: bool = True, zoom: float | None = None
    ) -> None:
        self.min_size = min_object_size(min_size)
        self.min_seed_size = min_object_size(min_seed_size)
        self.fill_holes = FillHoles(connectivity=1) if fill_holes else None
        self.watershed = Watershed(connectivity=1, dtype=np.int32)
        self.zoom = None if zoom is None or float(zoom) == 1.0 else Zoom(float(zoom), mode="bilinear", keep_size=False)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(
                f"{source_name(img)}: expected the probabilities of background, interior and boundary (3, H, W), got "
                f"shape {tuple(img.shape)}; the network must be trained for instances (3 classes)."
            )
        # one channel at a time; interior is the argmax (the first of equal maxima), found without an index array
        background = _as_array(self._channel(img, BACKGROUND))
        foreground = background < 0.5
        interior = _as_array(self._channel(img, INTERIOR))
        seeds = (interior > background) & foreground
        del background
        boundary = self._channel(img, BOUNDARY)  # (1, H, W) of img's type: its meta data give the output's
        relief = _as_array(boundary)
        seeds &= interior >= relief
        del interior
        ids = self._flood(relief, foreground, label_objects(seeds, 1, self.min_seed_size))
        del seeds, foreground
        if self.fill_holes is not None:
            ids = np.asarray(self.fill_holes(ids[None]))[0]
        return convert_to_dst_type(_renumber(ids, self.min_size)[None], boundary, dtype=torch.int32)[0]

    def _channel(self, img: NdarrayOrTensor, channel: int) -> NdarrayOrTensor:
        """Channel ``channel`` of ``img`` as ``(1, H, W)``, zoomed by ``zoom``."""
        probabilities = img[channel : channel + 1]
        return probabilities if self.zoom is None else self.zoom(probabilities)

    def _flood(self, relief: np.ndarray, foreground: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Step 3, one foreground component at a time in its bounding box: a seeded one flooded from its seeds (the
        flooding never crosses the background, so these are the whole image's watershed ids, with the memory of the
        largest component instead of the image's: a slide's block, a third), an unseeded one a new object after the
        seeds' ids, in raster order. ``seeds`` (int32) becomes the ids, in place: a component reads and writes only its
        own pixels."""
        components = label_objects(foreground, 1)
        next_id = int(seeds.max(initial=0)) + 1
        for k, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None:
                continue
            mask = components[box] == k
            markers = np.where(mask, seeds[box], 0)
            if markers.any():
                seeds[box][mask] = np.asarray(self.watershed(relief[box][None], mask[None], markers[None]))[0][mask]
            else:
                seeds[box][mask] = next_id
                next_id += 1
        return seeds


def _as_array(channel: NdarrayOrTensor) -> np.ndarray:
    """A ``(1, H, W)`` channel as a float32 ``(H, W)`` NumPy array (a view of a float32 CPU tensor, not a copy)."""
    return convert_to_numpy(channel, dtype=np.float32)[0]


def _renumber(ids: np.ndarray, min_size: int = 0) -> np.ndarray:
    """``ids`` ``(H, W)`` (int32) with the objects under ``min_size`` pixels removed and the others renumbered 1..N
    in the raster order of each object's first pixel (0 stays background), in place: the first pixel is on the top
    row of the object's bounding box, so no sort of the image is needed."""
    small = object_sizes(ids) < min_size
    firsts = []
    for object_id, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is not None and not small[object_id]:
            row = box[0].start
            firsts.append((row, box[1].start + int(np.argmax(ids[row, box[1]] == object_id)), object_id))
    lut = np.zeros(len(small), dtype=np.int32)
    lut[[object_id for *_, object_id in sorted(firsts)]] = np.arange(1, len(firsts) + 1, dtype=np.int32)
    return relabel(ids, lut, out=ids)


class InstancesToBoundaryClassesd(MapTransform):
    """Dictionary version of :class:`InstancesToBoundaryClasses`: the instance map at ``keys`` becomes the target at
    ``label_key`` (the instance map itself is left as it is).

    Args:
        keys: the key of the instance map.
        label_key: where the target is written.
        width: see :class:`InstancesToBoundaryClasses`.
    """

    def __init__(self, keys: KeysCollection = "instance", label_key: str = "label", width: int = 2) -> None:
        super().__init__(keys)
        self.label_key = label_key
        self.converter = InstancesToBoundaryClasses(width)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.label_key] = self.converter(d[key])
        return d


class InstancesFromProbabilitiesd(MapTransform):
    """Dictionary version of :class:`InstancesFromProbabilities`: the probabilities at ``keys`` give the instance map at
    ``instance_key``; ``keys`` becomes the foreground mask ``(1, H, W)`` of those objects (1 where an object is), so
    a mask written or scored from ``keys`` and the instances agree pixel for pixel.

    Args:
        keys: the key of the ``(3, H, W)`` probabilities.
        instance_key: where the instance map is written.
        min_size, min_seed_size, fill_holes, zoom: see :class:`InstancesFromProbabilities`.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        instance_key: str = "pred_instances",
        min_size: int = 0,
        min_seed_size: int = 0,
        fill_holes: bool = True,
        zoom: float | None = None,
    ) -> None:
        super().__init__(keys)
        self.instance_key = instance_key
        self.converter = InstancesFromProbabilities(min_size, min_seed_size, fill_holes, zoom)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            instances = self.converter(d[key])
            d[self.instance_key] = instances
            d[key] = convert_to_dst_type(instances > 0, instances, dtype=torch.float32)[0]
        return d
