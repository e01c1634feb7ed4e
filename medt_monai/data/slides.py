"""Whole-slide images in blocks at the model's scale: MONAI's ``WSIReader`` (OpenSlide backend by default) reads
each block at the pyramid level nearest the training images' micrometres per pixel, and the block is zoomed to the
model's scale as they were.

The slide's tissue (found at a low-resolution level: saturated, not white glass) falls into pieces, each covered as a
tile is: square *cores* of ``block_size - 2 * margin`` pixels at the model's scale from the piece's corner, each block
its core with a ``margin`` on every side inside the piece, so an object cut by a core's edge is seen whole by the
block whose core holds its centroid, and kept by that block only (:func:`medt_monai.utils.geojson.object_features`'
``keep_box``). Past a piece's box the windows read glass, as past a tile's edge. Memory is bounded by one block
whatever the slide's size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, WSIReader
from monai.transforms import MapTransform, Zoom
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

from medt_monai.utils.files import atomic_output
from medt_monai.utils.memory import release_freed_memory

__all__ = [
    "SLIDE_EXTENSIONS",
    "LoadSlideBlockd",
    "TissueMask",
    "open_slide",
    "slide_blocks",
    "slide_geometry",
    "slide_datalist",
    "slide_mpp",
    "tissue_mask",
    "tissue_pieces",
    "refine_piece",
    "write_pyramidal_tiff",
]

#: whole-slide formats OpenSlide reads (and pyramidal TIFF, which the ``tifffile`` backend reads too)
SLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
#: the tissue mask's longest side at most (pixels)
_TISSUE_SIZE = 2048
#: rows of a block read at once (its RGBA and RGB copies in the reader are this many rows, not the whole block)
_READ_ROWS = 512
#: saturation that is tissue whatever Otsu's threshold says, and below which nothing is (glass, JPEG noise)
_MIN_SATURATION = 0.07


def slide_datalist(dataset_dir: str | Path | None = None, slide: str | Path | None = None) -> list[dict]:
    """``[{"image": path}, ...]``: the one ``slide``, or every slide of ``dataset_dir`` (sorted, by
    :data:`SLIDE_EXTENSIONS`; not recursive).

    Raises:
        FileNotFoundError: ``slide`` or ``dataset_dir`` does not exist.
        ValueError: ``dataset_dir`` holds no slide (the message lists the extensions), or neither argument is given.
    """
    if slide is not None:
        slide = Path(slide)
        if not slide.is_file():
            raise FileNotFoundError(f"slide {slide} does not exist.")
        return [{"image": str(slide)}]
    if dataset_dir is None:
        raise ValueError("give a folder of slides (--dataset_dir) or one slide (--slide).")
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"slide folder {folder} does not exist.")
    slides = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_EXTENSIONS)
    if not slides:
        raise ValueError(f"{folder}: no slide found (extensions {', '.join(SLIDE_EXTENSIONS)}).")
    return [{"image": str(p)} for p in slides]


def open_slide(path: str | Path, backend: str = "openslide") -> tuple[WSIReader, object]:
    """MONAI's ``WSIReader`` and the opened slide, or an error naming the file and the problem.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an extension that is not a slide format, or a file the backend cannot read (corrupt, truncated,
            unsupported).
        ImportError: the OpenSlide backend is not installed (the message says how to install it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"slide {path} does not exist.")
    if path.suffix.lower() not in SLIDE_EXTENSIONS:
        raise ValueError(f"{path}: not a whole-slide format (extensions {', '.join(SLIDE_EXTENSIONS)}).")
    try:
        reader = WSIReader(backend=backend)
    except (ImportError, RuntimeError) as e:
        raise ImportError(
            f"reading {path} needs the {backend!r} backend: pip install 'medt-monai[slides]' "
            "(openslide-python and openslide-bin)."
        ) from e
    try:
        wsi = reader.read(str(path))
        reader.get_size(wsi, 0)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a whole-slide image ({type(e).__name__}: {e}).") from e
    return reader, wsi


def slide_mpp(reader: WSIReader, wsi, path: str | Path, mpp: float | None = None) -> float:
    """Micrometres per level-0 pixel: ``mpp`` when given (``--mpp``), else the slide's own (mean of x and y).

    Raises:
        ValueError: the slide records no resolution and ``mpp`` is None, or ``mpp`` is not positive.
    """
    if mpp is not None:
        if not float(mpp) > 0:
            raise ValueError(f"--mpp (micrometres per level-0 pixel of {path}) must be > 0, got {mpp!r}.")
        return float(mpp)
    try:
        own = [float(v) for v in reader.get_mpp(wsi, 0)]
    except Exception:
        own = []
    if len(own) != 2 or not all(math.isfinite(v) and v > 0 for v in own):
        raise ValueError(
            f"{path}: the slide records no micrometres per pixel; give it with --mpp (e.g. 0.25 at 40x, 0.5 at 20x)."
        )
    return sum(own) / 2


def slide_geometry(
    path: str | Path, backend: str = "openslide", mpp: float | None = None
) -> tuple[tuple[int, int], float]:
    """The slide's level-0 ``(height, width)`` and micrometres per level-0 pixel (``mpp`` overriding its own).

    Raises:
        ValueError: see :func:`open_slide` and :func:`slide_mpp`.
    """
    reader, wsi = open_slide(path, backend)
    height, width = (int(v) for v in reader.get_size(wsi, 0))
    return (height, width), slide_mpp(reader, wsi, path, mpp)


def _level_for(reader: WSIReader, wsi, mpp0: float, model_mpp: float, training_mpp: float | None = None) -> int:
    """Among the levels at least as fine as ``model_mpp`` (level 0 if none is): the one nearest ``training_mpp`` in
    log scale (the finer on a tie), or, ``training_mpp`` None, the coarsest."""
    level_mpp = [mpp0 * float(reader.get_downsample_ratio(wsi, lv)) for lv in range(reader.get_level_count(wsi))]
    fine_enough = [0] + [lv for lv in range(1, len(level_mpp)) if level_mpp[lv] <= model_mpp * 1.001]
    if training_mpp is None:
        return fine_enough[-1]
    return min(fine_enough, key=lambda lv: abs(math.log(level_mpp[lv] / training_mpp)))


class TissueMask(NamedTuple):
    """:func:`tissue_mask`'s answer: ``mask[i, j]`` covers level-0 pixels ``[i * downsample, (i + 1) * downsample)``
    in each direction; a pixel is tissue where its HSV saturation exceeds ``threshold``."""

    mask: np.ndarray
    downsample: float
    threshold: float


def tissue_mask(reader: WSIReader, wsi) -> TissueMask:
    """Where the slide has tissue, at low resolution.

    Read from the coarsest level (in chunks, every n-th pixel, at most 2048 pixels a side): a pixel is tissue where its
    HSV saturation exceeds Otsu's threshold of the slide's saturations (at least 0.07), so white glass and grey
    background are not; specks smaller than 5x5 mask pixels are dropped and small gaps closed.
    """
    level = reader.get_level_count(wsi) - 1
    height, width = (int(v) for v in reader.get_size(wsi, level))
    ratio = float(reader.get_downsample_ratio(wsi, level))
    step = max(1, math.ceil(max(height, width) / _TISSUE_SIZE))
    chunk = step * max(1, 2048 // step)
    rows = []
    for y in range(0, height, chunk):
        row = []
        for x in range(0, width, chunk):
            size = (min(chunk, height - y), min(chunk, width - x))
            location = (int(round(y * ratio)), int(round(x * ratio)))
            data, _ = reader.get_data(wsi, location=location, size=size, level=level)
            row.append(np.moveaxis(np.asarray(data)[:3, ::step, ::step], 0, -1))
        rows.append(np.concatenate(row, axis=1))
    thumbnail = np.concatenate(rows, axis=0)
    saturation = rgb2hsv(thumbnail)[..., 1]
    threshold = _MIN_SATURATION
    if saturation.max() > saturation.min():
        threshold = max(threshold, float(threshold_otsu(saturation)))
    mask = ndimage.binary_closing(saturation > threshold, iterations=2)
    mask = ndimage.binary_opening(mask, np.ones((5, 5), bool))
    return TissueMask(mask, ratio * step, threshold)


def _overlap(a: Sequence[int], b: Sequence[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def tissue_pieces(tissue: TissueMask, shape: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Level-0 ``(y0, x0, y1, x1)`` boxes of the slide's pieces of tissue, coarse: the boxes of the mask's connected
    components (8 neighbours), one mask pixel wider on every side, those that overlap or touch merged until none does
    (in the slide of level-0 ``shape``); sorted. :func:`refine_piece` takes each to its tissue's first and last rows
    and columns."""
    mask = tissue.mask
    boxes = [
        (rows.start, cols.start, rows.stop, cols.stop)
        for rows, cols in ndimage.find_objects(ndimage.label(mask, np.ones((3, 3), bool))[0])
    ]
    boxes = [(max(0, r0 - 1), max(0, c0 - 1), r1 + 1, c1 + 1) for r0, c0, r1, c1 in boxes]
    while True:  # boxes drawn filled: those that overlap or touch are one component, whose box may reach another
        canvas = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), bool)
        for r0, c0, r1, c1 in boxes:
            canvas[r0:r1, c0:c1] = True
        merged = [
            (rows.start, cols.start, rows.stop, cols.stop)
            for rows, cols in ndimage.find_objects(ndimage.label(canvas)[0])
        ]
        if len(merged) == len(boxes):
            break
        boxes = merged
    height, width = shape
    ds = tissue.downsample
    return sorted(
        (math.floor(r0 * ds), math.floor(c0 * ds), min(height, math.ceil(r1 * ds)), min(width, math.ceil(c1 * ds)))
        for r0, c0, r1, c1 in boxes
    )


def _tissue_pixels(
    reader: WSIReader, wsi, location: Sequence[int], size: Sequence[int], level: int, threshold: float
) -> np.ndarray:
    """Which of the level's ``size`` pixels from level-0 ``location`` are tissue (HSV saturation above ``threshold``),
    ``(rows, cols)`` bool, read in chunks of at most 4096 pixels along the longer side."""
    downsample = float(reader.get_downsample_ratio(wsi, level))
    (y0, x0), (rows, cols) = location, size
    along = 0 if rows >= cols else 1
    parts = []
    for start in range(0, size[along], 4096):
        length = min(4096, size[along] - start)
        offset = round(start * downsample)
        at, extent = ((y0 + offset, x0), (length, cols)) if along == 0 else ((y0, x0 + offset), (rows, length))
        data, _ = reader.get_data(wsi, location=at, size=extent, level=level)
        parts.append(rgb2hsv(np.moveaxis(np.asarray(data)[:3], 0, -1))[..., 1] > threshold)
    return np.concatenate(parts, axis=along)


def refine_piece(
    reader: WSIReader, wsi, box: Sequence[int], level: int, threshold: float, depth: int
) -> tuple[int, int, int, int]:
    """``box`` (level-0 ``(y0, x0, y1, x1)``) shrunk to the first and last rows and columns at ``level`` that hold a
    tissue pixel (HSV saturation above ``threshold``), each looked for within ``depth`` level-0 pixels of the box's
    edge (strips read in chunks: memory stays small whatever the piece's size); an edge without tissue there stays."""
    downsample = float(reader.get_downsample_ratio(wsi, level))
    steps = max(1, round(depth / downsample))  # the strip's depth in pixels at the level

    def tissue(location: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        return _tissue_pixels(reader, wsi, location, size, level, threshold)

    y0, x0, y1, x1 = (int(v) for v in box)
    rows, cols = max(1, round((y1 - y0) / downsample)), max(1, round((x1 - x0) / downsample))
    depth_rows, depth_cols = min(steps, rows), min(steps, cols)
    top = np.flatnonzero(tissue((y0, x0), (depth_rows, cols)).any(axis=1))
    bottom_start = rows - depth_rows
    bottom = np.flatnonzero(tissue((y0 + round(bottom_start * downsample), x0), (depth_rows, cols)).any(axis=1))
    new_y0 = y0 + round(top[0] * downsample) if top.size else y0
    new_y1 = min(y1, y0 + round((bottom_start + bottom[-1] + 1) * downsample)) if bottom.size else y1
    if new_y1 <= new_y0:
        new_y0, new_y1 = y0, y1
    rows = max(1, round((new_y1 - new_y0) / downsample))
    left = np.flatnonzero(tissue((new_y0, x0), (rows, depth_cols)).any(axis=0))
    right_start = cols - depth_cols
    right = np.flatnonzero(tissue((new_y0, x0 + round(right_start * downsample)), (rows, depth_cols)).any(axis=0))
    new_x0 = x0 + round(left[0] * downsample) if left.size else x0
    new_x1 = min(x1, x0 + round((right_start + right[-1] + 1) * downsample)) if right.size else x1
    if new_x1 <= new_x0:
        new_x0, new_x1 = x0, x1
    return new_y0, new_x0, new_y1, new_x1


def _core_edges(start: int, stop: int, core: float, pad: float) -> list[int]:
    """The edges of a piece's cores along one axis (level-0 pixels from ``start`` to ``stop``): every block, its core
    with ``pad`` on each side inside the piece, is at most ``core + 2 * pad`` long, and the first and last cores, which
    need no context past the piece's edge, take that context's place (the first block is a whole block as soon as the
    piece is longer than one)."""
    inner = stop - start - 2 * pad
    count = max(1, math.ceil(inner / core)) if inner > 0 else 1
    return [start] + [start + round(pad + k * core) for k in range(1, count)] + [stop]


def slide_blocks(
    path: str | Path,
    model_mpp: float,
    block_size: int = 1024,
    margin: int = 128,
    mpp: float | None = None,
    backend: str = "openslide",
    tissue_only: bool = True,
    region: Sequence[int] | None = None,
    level: int | None = None,
    training_mpp: float | None = None,
) -> list[dict]:
    """The blocks of one slide, each a dict for :class:`LoadSlideBlockd` (the slide's path at ``"image"``):

    - ``"slide"``: the slide's path again (``"image"`` becomes the block's pixels);
    - ``"location"``: level-0 ``(y, x)`` of the block's top-left corner; ``"level"``, ``"size"``: the pyramid level
      read and the block's size there ``(h, w)``; ``"extent"``: that size in level-0 pixels; ``"zoom"``: the factor
      from that level to the model's scale;
    - ``"core"``: level-0 ``(y0, x0, y1, x1)`` of the block's core: the objects whose centroid lies there are this
      block's; ``"mpp"``: micrometres per level-0 pixel; ``"block_index"``, ``"num_blocks"``: its rank in the slide.

    With ``tissue_only`` the slide is cut into its pieces of tissue (:func:`tissue_pieces`, each box refined to its
    tissue at the level read, :func:`refine_piece`), and each piece is covered as a tile is: its cores form a grid
    from the piece's corner, and its blocks do not reach past its box, so the windows start at the tissue's corner and
    read glass beyond it wherever the piece lies on the slide (a piece gets the objects it gets as a separate image).
    Without it the whole slide is one piece. A slide without tissue has no block.

    Args:
        path: the slide.
        model_mpp: micrometres per pixel the network works at.
        block_size: the block's side at the model's scale (pixels).
        margin: context around the core at the model's scale (pixels); objects up to about this size come out whole.
        mpp: micrometres per level-0 pixel, overriding the slide's own.
        backend: ``WSIReader`` backend (``"openslide"``, ``"tifffile"``, ``"cucim"``).
        tissue_only: only the pieces of tissue, each on its own grid; False: the whole slide on one grid.
        region: only this part of the slide, level-0 ``(x, y, width, height)`` as QuPath and OpenSlide give it: the
            blocks are the whole slide's blocks that overlap it, read and run as for the whole slide, and their cores
            are cut to it, so the objects are the whole slide's objects whose centroid lies in the region. None: the
            whole slide.
        level: the pyramid level to read; None: among the levels at least as fine as ``model_mpp``, the one nearest
            ``training_mpp``, or the coarsest if that is None (see ``training_mpp``).
        training_mpp: micrometres per pixel of the images the network was trained on (GlaS: 0.62). The level read by
            default is the one nearest it, so that the slide's pixels are zoomed to the model's scale as the training
            images were (a coarser level is another resampling, which moves about 5 % of the objects).

    Raises:
        ValueError: ``block_size <= 2 * margin``; a ``region`` that is not 4 numbers or lies outside the slide; see
            :func:`open_slide` and :func:`slide_mpp`.
    """
    if block_size <= 2 * margin or margin < 0:
        raise ValueError(f"block_size ({block_size}) must exceed twice the margin ({margin}) >= 0.")
    reader, wsi = open_slide(path, backend)
    mpp0 = slide_mpp(reader, wsi, path, mpp)
    height, width = (int(v) for v in reader.get_size(wsi, 0))
    top0, left0, bottom0, right0 = 0, 0, height, width
    if region is not None:
        if len(region) != 4 or region[2] <= 0 or region[3] <= 0:
            raise ValueError(
                f"{path}: region must be level-0 (x, y, width, height) with a positive size, got {region}."
            )
        left0, top0 = max(0, int(region[0])), max(0, int(region[1]))
        right0, bottom0 = min(width, int(region[0]) + int(region[2])), min(height, int(region[1]) + int(region[3]))
        if right0 <= left0 or bottom0 <= top0:
            raise ValueError(f"{path}: region {tuple(region)} lies outside the slide ({width} x {height} at level 0).")
    if level is None:
        level = _level_for(reader, wsi, mpp0, model_mpp, training_mpp)
    elif not 0 <= int(level) < reader.get_level_count(wsi):
        raise ValueError(f"{path}: level {level} does not exist (the slide has {reader.get_level_count(wsi)} levels).")
    level = int(level)
    downsample = float(reader.get_downsample_ratio(wsi, level))
    factor = model_mpp / mpp0  # level-0 pixels per pixel at the model's scale
    core = (block_size - 2 * margin) * factor
    pad = margin * factor
    wanted = (top0, left0, bottom0, right0)
    if tissue_only:
        tissue = tissue_mask(reader, wsi)
        depth = math.ceil(4 * tissue.downsample)  # the mask's edge lies within a mask pixel or two of the tissue's
        pieces = [
            refine_piece(reader, wsi, box, level, tissue.threshold, depth)
            for box in tissue_pieces(tissue, (height, width))
            if _overlap(box, wanted)  # a piece outside the region: refined or not, none of its cores is kept
        ]
    else:
        tissue, pieces = None, [(0, 0, height, width)]
    blocks = []
    # each piece's one grid of cores, from its corner: a region takes the cells it overlaps, each read and run exactly
    # as for the whole slide, and keeps the part of the core inside it, so it gets the whole slide's objects there
    for py0, px0, py1, px1 in pieces:
        row_edges, col_edges = _core_edges(py0, py1, core, pad), _core_edges(px0, px1, core, pad)
        for (y0, y1), (x0, x1) in itertools.product(zip(row_edges, row_edges[1:]), zip(col_edges, col_edges[1:])):
            kept = [max(y0, top0), max(x0, left0), min(y1, bottom0), min(x1, right0)]
            if kept[0] >= kept[2] or kept[1] >= kept[3]:
                continue
            if tissue is not None:
                ds = tissue.downsample
                if not tissue.mask[int(y0 // ds) : math.ceil(y1 / ds), int(x0 // ds) : math.ceil(x1 / ds)].any():
                    continue
            top, left = max(py0, round(y0 - pad)), max(px0, round(x0 - pad))
            bottom, right = min(py1, round(y1 + pad)), min(px1, round(x1 + pad))
            size = (max(1, round((bottom - top) / downsample)), max(1, round((right - left) / downsample)))
            blocks.append(
                {
                    "image": str(path),
                    "slide": str(path),
                    "location": [top, left],
                    "level": level,
                    "size": list(size),
                    "extent": [size[0] * downsample, size[1] * downsample],
                    "zoom": downsample / factor,
                    "core": kept,
                    "mpp": mpp0,
                }
            )
    for index, block in enumerate(blocks):
        block.update(block_index=index, num_blocks=len(blocks))
    return blocks


class LoadSlideBlockd(MapTransform):
    """Read a block of :func:`slide_blocks` into ``keys`` as a ``(3, h, w)`` float32 ``MetaTensor`` in [0, 1] at the
    model's scale (MONAI's ``Zoom``, bilinear, as :func:`~medt_monai.transforms.network_size_transform` zooms tiles).

    The last slide opened stays open, so the blocks of a slide in a row read it once. Memory: the heap's freed pages
    go back to the system first (:func:`~medt_monai.utils.release_freed_memory`), the block is read in strips of rows
    into one uint8 array and zoomed one channel at a time, so a read adds about the block's uint8 size plus one float
    channel to what the process holds.

    Args:
        keys: the key of the slide's path (replaced by the block).
        backend: ``WSIReader`` backend.
    """

    def __init__(self, keys: KeysCollection = "image", backend: str = "openslide") -> None:
        super().__init__(keys)
        self.backend = backend
        self._open: tuple[str, WSIReader, object] | None = None

    def _slide(self, path: str):
        if self._open is None or self._open[0] != path:
            self._open = (path, *open_slide(path, self.backend))
        return self._open[1:]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            reader, wsi = self._slide(path)
            release_freed_memory()  # the previous block's post-processing, freed but kept by the heap
            (height, width), (top, left) = (int(v) for v in d["size"]), (int(v) for v in d["location"])
            downsample = float(reader.get_downsample_ratio(wsi, int(d["level"])))
            # read in strips of rows into one uint8 array: the reader's RGBA and RGB copies stay a strip's size. A
            # strip starts on the level's pixel grid only where the level's downsample is a whole number (a level-0
            # row maps to a level row); elsewhere the block is read at once, as a strip would be resampled otherwise
            strip_rows = _READ_ROWS if downsample == round(downsample) else height
            region = np.empty((3, height, width), np.uint8)
            for y in range(0, height, strip_rows):
                rows = min(strip_rows, height - y)
                try:
                    strip, _ = reader.get_data(
                        wsi, location=(top + round(y * downsample), left), size=(rows, width), level=d["level"]
                    )
                except Exception as e:
                    raise ValueError(
                        f"{path}: cannot read the block at level-0 (y, x) {tuple(d['location'])} ({type(e).__name__}: "
                        f"{e}); the slide may be truncated."
                    ) from e
                region[:, y : y + rows] = np.asarray(strip)[:3]
            zoom = Zoom(zoom=float(d["zoom"]), mode="bilinear", keep_size=False)
            # one channel at a time in float: the peak stays near the uint8 region's size, not 4x it times 3
            channels = [
                torch.as_tensor(zoom(torch.from_numpy(region[c]).to(torch.float32).div_(255.0)[None])) for c in range(3)
            ]
            del region
            d[key] = MetaTensor(torch.cat(channels).clamp_(0, 1), meta={"filename_or_obj": path})
        return d


def write_pyramidal_tiff(
    path: str | Path, image: np.ndarray, mpp: float, levels: int = 3, tile: int = 256, compression: str = "zlib"
) -> Path:
    """Write ``image`` ``(H, W, 3)`` uint8 as a tiled pyramidal TIFF that OpenSlide reads as a slide: level ``k`` is
    downsampled ``2**k`` (every other pixel), the resolution is recorded as ``mpp`` micrometres per level-0 pixel.
    Written through a temporary file and a rename. Needs ``tifffile`` (and ``imagecodecs`` for ``"jpeg"``).

    Used by the demo slide, the tests and the slide benchmark.
    """
    import tifffile

    path = Path(path)
    pixels_per_cm = 1e4 / mpp
    with atomic_output(path, suffix=path.suffix) as tmp, tifffile.TiffWriter(tmp, bigtiff=image.nbytes > 2**31) as tiff:
        for level in range(levels):
            step = 2**level
            tiff.write(
                np.ascontiguousarray(image[::step, ::step]),
                tile=(tile, tile),
                compression=compression,
                photometric="rgb",
                resolution=(pixels_per_cm / step, pixels_per_cm / step),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
            )
    return path
