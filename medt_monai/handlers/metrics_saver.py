"""MONAI's ``MetricsSaver`` plus one table of all metrics per image and their means per group of images."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.handlers import MetricsSaver
from monai.utils import IgniteInfo, min_version, optional_import, string_list_all_gather

from medt_monai.utils.files import atomic_write_text

idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["GroupedMetricsSaver"]

ALL = "all"


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if len(kept) else float("nan")


class GroupedMetricsSaver(MetricsSaver):
    """``monai.handlers.MetricsSaver`` that also writes all saved metric details side by side, per image and per group.

    Besides MetricsSaver's files (``metrics.csv``, ``<metric>_raw.csv``, ``<metric>_summary.csv``) it writes, at
    the end of each evaluation and atomically, two CSV files (fields quoted where needed, e.g. a file name with a
    comma, as :mod:`csv` readers expect):

    - ``metrics_per_image.csv``: ``filename``, ``group``, then one column per metric (the per-image value; for
      multi-channel details the mean over channels, as the ``mean`` column of ``<metric>_raw.csv``);
    - ``metrics_by_group.csv``: ``group``, ``images``, then each metric's mean over the group's images (NaN values
      skipped, as in ``metrics.csv``), one row per group that has images and a last row ``all``. A metric of
      ``pooled`` is instead pooled over the group's images by its function (the GlaS challenge's object F1 of a test
      part, from the images' detection counts), in both tables (an image's row: pooled over that image alone).

    Args:
        save_dir: folder of the files.
        metrics: as ``MetricsSaver``.
        metric_details: the metrics (names in ``engine.state.metric_details``) of ``<metric>_raw.csv`` and of the two
            tables; ``"*"`` for all of them.
        batch_transform: as ``MetricsSaver``: gets the images' meta data (file names) from ``engine.state.batch``.
        summary_ops: as ``MetricsSaver``.
        save_rank: as ``MetricsSaver``.
        delimiter: as ``MetricsSaver``.
        output_type: as ``MetricsSaver`` (``"csv"``).
        groups: group name -> regular expression searched in each image's file name (without folders), e.g.
            ``{"testA": "^testA_", "testB": "^testB_"}`` for the GlaS test parts. An image belongs to the first
            group whose expression matches; images matching none appear only in ``all``. None: only ``all``.
        pooled: metric name -> function of the ``(N, C)`` per-image details of N images that pools them into one
            value, e.g. ``{"test_object_f1_pooled": medt_monai.metrics.pooled_object_f1}``.

    Raises:
        ValueError: ``metric_details`` is None, a group is named ``"all"``, or an expression does not compile.
    """

    def __init__(
        self,
        save_dir: str,
        metrics: str | Sequence[str] | None = "*",
        metric_details: str | Sequence[str] | None = "*",
        batch_transform: Callable = lambda x: x,
        summary_ops: str | Sequence[str] | None = None,
        save_rank: int = 0,
        delimiter: str = ",",
        output_type: str = "csv",
        groups: Mapping[str, str] | None = None,
        pooled: Mapping[str, Callable[[np.ndarray], float]] | None = None,
    ) -> None:
        if metric_details is None:
            raise ValueError("GroupedMetricsSaver needs metric_details (metric names or '*'), got None.")
        super().__init__(
            save_dir=save_dir,
            metrics=metrics,
            metric_details=metric_details,
            batch_transform=batch_transform,
            summary_ops=summary_ops,
            save_rank=save_rank,
            delimiter=delimiter,
            output_type=output_type,
        )
        self.pooled = dict(pooled or {})
        self.groups: dict[str, re.Pattern] = {}
        for name, pattern in (groups or {}).items():
            if name == ALL:
                raise ValueError(f"group name {ALL!r} is reserved for the row of all images; choose another name.")
            try:
                self.groups[str(name)] = re.compile(pattern)
            except re.error as e:
                raise ValueError(f"group {name!r}: {pattern!r} is not a valid regular expression ({e}).") from e

    def group_of(self, filename: str) -> str:
        """The group of an image file (first matching expression), or ``"all"`` when none matches."""
        base = os.path.basename(filename)
        return next((name for name, rx in self.groups.items() if rx.search(base)), ALL)

    def __call__(self, engine: Engine) -> None:
        """Write MetricsSaver's files, then ``metrics_per_image.csv`` and ``metrics_by_group.csv``.

        Raises:
            ValueError: a metric has a different number of per-image values than there are file names.
        """
        super().__call__(engine)
        images = string_list_all_gather(strings=self._filenames) if idist.get_world_size() > 1 else self._filenames
        if idist.get_rank() != self.save_rank:
            return
        wanted = self.metric_details or ()
        columns: dict[str, np.ndarray] = {}
        for name, values in getattr(engine.state, "metric_details", {}).items():
            if name in wanted or "*" in wanted:
                v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
                columns[name] = v.reshape(len(v), -1).astype(np.float64) if v.ndim else v.reshape(1, 1)
        if not columns:
            return
        for name, col in columns.items():
            if len(col) != len(images):
                raise ValueError(f"metric {name!r} has {len(col)} per-image values for {len(images)} images.")
        group = [self.group_of(f) for f in images]
        rows = [["filename", "group", *columns]]
        for i, (filename, name) in enumerate(zip(images, group)):
            rows.append([filename, name, *(f"{self._reduce(m, c[i : i + 1]):.4f}" for m, c in columns.items())])
        save_dir = Path(self.save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        self._write_csv(save_dir / "metrics_per_image.csv", rows)
        table = [["group", "images", *columns]]
        for name in [*self.groups, ALL]:
            member = np.array([name == ALL or g == name for g in group], dtype=bool)
            if member.any():
                means = (f"{self._reduce(m, c[member]):.4f}" for m, c in columns.items())
                table.append([name, str(int(member.sum())), *means])
        self._write_csv(save_dir / "metrics_by_group.csv", table)

    def _reduce(self, name: str, details: np.ndarray) -> float:
        """One value of metric ``name`` from the ``(n, C)`` details of n images: pooled, or the mean over the images of
        each image's mean over the channels (NaN skipped)."""
        if name in self.pooled:
            return float(self.pooled[name](details))
        return _nanmean(np.array([_nanmean(row) for row in details]))

    def _write_csv(self, path: Path, rows: Sequence[Sequence[str]]) -> None:
        """Write ``rows`` to ``path`` with :mod:`csv`, atomically, each line ending in a line feed.

        A field holding the delimiter, a quote or a line break (an image file name with a comma) is quoted, so it reads
        back as one field with ``csv.reader`` / ``csv.DictReader`` or pandas.

        Args:
            path: the CSV file.
            rows: the header, then the rows, as strings.
        """
        text = io.StringIO()
        csv.writer(text, delimiter=self.deli, lineterminator="\n").writerows(rows)
        atomic_write_text(path, text.getvalue(), newline="")
