"""Collect the objects of a slide's blocks and write them as one QuPath GeoJSON file per slide (and, optionally, as an
instance label image of the slide at a chosen downsample)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from monai.utils import convert_to_numpy

from medt_monai.utils.files import atomic_save_tiff
from medt_monai.utils.geojson import OBJECT_TYPES, FeatureSpool, draw_labels, label_image, object_features
from medt_monai.utils.objects import label_objects

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SlideObjectsWriter"]


class SlideObjectsWriter:
    """Write ``<output_dir>/<slide name>.geojson``, a ``FeatureCollection`` of the slide's objects, as soon as every
    block of the slide (:func:`medt_monai.data.slide_blocks`) has gone through the engine.

    Each iteration's decollated batch holds the blocks (``"slide"``, ``"location"``, ``"extent"``, ``"core"``,
    ``"mpp"``, ``"num_blocks"``) and its output the block's objects at the model's scale: ``instance_key`` (a network trained for
    instances) or, failing that, the connected foreground components of ``pred_key``. Only the objects whose centroid
    lies in a block's core are kept, so each object comes once. Memory does not grow with the number of objects: each
    block's features go to a temporary file (:class:`~medt_monai.utils.geojson.FeatureSpool`) and its label image,
    if asked for, is drawn as the block comes; the block's instance map and mask (``instance_key``, ``pred_key``) are
    then removed from the engine's output, which ignite would otherwise hold while the next block is read and run
    (handlers that need them go before this one). Files are written atomically; a slide without tissue (no block) gets an
    empty collection from :meth:`finish`, which the workflow calls after the engine's run.

    Args:
        output_dir: where the files go (must exist and be writable).
        slides: every slide of the run (paths), so that those without blocks get their empty file.
        object_type, class_name, color, tolerance: see :func:`medt_monai.utils.geojson.object_features`.
        instance_key, pred_key: keys of the engine's output.
        connectivity: components of a semantic mask: 1 (edge neighbours) or 2.
        properties: kept in each collection's ``"properties"`` (e.g. the model's scale), beside the slide's name.
        label_downsample: also write ``<output_dir>/<slide name>_labels.tif``, the objects as an instance label image
            (0 background, object ``k`` of the GeoJSON as ``k``; uint16, uint32 past 65535 objects) with one pixel per
            ``label_downsample`` level-0 pixels and its micrometres per pixel recorded; None writes none.
        geometry: with ``label_downsample``, each slide's level-0 ``(height, width)`` and micrometres per level-0
            pixel by path (:func:`medt_monai.data.slide_geometry`).

    Raises:
        ValueError: an unknown ``object_type``; ``label_downsample`` that is not a number > 0, or without the
            ``geometry`` of every slide.
    """

    def __init__(
        self,
        output_dir: str | Path,
        slides: Sequence[str] = (),
        object_type: str = "detection",
        class_name: str = "gland",
        color: Sequence[int] = (0, 160, 0),
        tolerance: float = 0.5,
        instance_key: str = "pred_instances",
        pred_key: str = "pred",
        connectivity: int = 1,
        properties: dict | None = None,
        label_downsample: float | None = None,
        geometry: Mapping[str, tuple[Sequence[int], float]] | None = None,
    ) -> None:
        if object_type not in OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {', '.join(map(repr, OBJECT_TYPES))}, got {object_type!r}.")
        if label_downsample is not None and (
            isinstance(label_downsample, bool)
            or not isinstance(label_downsample, (int, float))
            or label_downsample <= 0
        ):
            raise ValueError(
                f"label_downsample (--label_downsample: level-0 pixels per pixel of the label image) must be a number "
                f"> 0 or None, got {label_downsample!r}."
            )
        self.geometry = {str(k): v for k, v in (geometry or {}).items()}
        if label_downsample is not None and set(map(str, slides)) - set(self.geometry):
            raise ValueError("label_downsample needs the geometry (level-0 size, um/px) of every slide.")
        self.output_dir = Path(output_dir)
        self.slides = [str(s) for s in slides]
        self.style = {"object_type": object_type, "class_name": class_name, "color": color, "tolerance": tolerance}
        self.instance_key, self.pred_key = instance_key, pred_key
        self.connectivity = connectivity
        self.properties = dict(properties or {})
        self.label_downsample = label_downsample
        self.logger = logging.getLogger(__name__)
        self._spools: dict[str, FeatureSpool] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._seen: dict[str, int] = {}
        self.written: list[Path] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        for spool in self._spools.values():  # an earlier run's unfinished slides (their files were not written)
            spool.close()
        self._spools, self._labels, self._seen, self.written = {}, {}, {}, []
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, slide: str) -> Path:
        """``<output_dir>/<slide name without extension>.geojson``."""
        return self.output_dir / f"{Path(slide).stem}.geojson"

    def labels_path_of(self, slide: str) -> Path:
        """``<output_dir>/<slide name without extension>_labels.tif``."""
        return self.output_dir / f"{Path(slide).stem}_labels.tif"

    def _instances(self, output: dict) -> np.ndarray:
        if output.get(self.instance_key) is not None:
            return convert_to_numpy(output[self.instance_key])[0]
        return label_objects(convert_to_numpy(output[self.pred_key])[0] > 0, self.connectivity)

    def __call__(self, engine: Engine) -> None:
        for block, output in zip(engine.state.batch, engine.state.output):
            slide = str(block["slide"])
            instances = self._instances(output)
            location, core = [float(v) for v in block["location"]], [float(v) for v in block["core"]]
            # level-0 pixels per output pixel: the block's level-0 extent over the output's shape
            extent = [float(v) for v in block["extent"]]
            scale = (extent[0] / instances.shape[0], extent[1] / instances.shape[1])
            features = object_features(
                instances, origin=location, scale=scale, mpp=float(block["mpp"]), keep_box=core, **self.style
            )
            self._add(slide, features)
            # ignite keeps the last output until the next iteration ends: drop the block's maps (at the tiles'
            # resolution, hundreds of MB) now, so they are not held while the next block is read and run
            for key in (self.instance_key, self.pred_key):
                output.pop(key, None)
            del instances
            self._seen[slide] = self._seen.get(slide, 0) + 1
            if self._seen[slide] == int(block["num_blocks"]):
                self._write(slide)

    def _add(self, slide: str, features: list[dict]) -> None:
        if slide not in self._spools:
            self._spools[slide] = FeatureSpool(dir=self.output_dir)
            if self.label_downsample is not None:
                self._labels[slide] = label_image([], self.geometry[slide][0], self.label_downsample)
        spool = self._spools[slide]
        if self.label_downsample is not None:
            self._labels[slide] = draw_labels(
                self._labels[slide], features, self.label_downsample, first_id=spool.count + 1
            )
        spool.extend(features)

    def _write(self, slide: str) -> None:
        if slide not in self._spools:  # no block, or no tissue
            self._add(slide, [])
        spool, labels = self._spools.pop(slide), self._labels.pop(slide, None)
        path = self.path_of(slide)
        try:
            spool.write(path, slide=Path(slide).name, **self.properties)
        finally:
            spool.close()
        self.written.append(path)
        if labels is not None:
            atomic_save_tiff(labels, self.labels_path_of(slide), mpp=self.geometry[slide][1] * self.label_downsample)
            self.written.append(self.labels_path_of(slide))
        self.logger.info(f"{path}: {spool.count} objects")

    def finish(self) -> None:
        """Write the empty collections of the slides without tissue (no block), after the engine's run (which MONAI
        skips altogether when no slide has a block)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for slide in self.slides:
            if slide not in self._seen:
                self._write(slide)
