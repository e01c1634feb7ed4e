"""What the bundle's configs (``bundle/configs``) compute from the running workflow: its root folder, the names of
its metrics, and whether the object metrics can run."""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["bundle_root", "prefixed", "object_metrics_enabled"]


def _first_config_file(argv: Sequence[str]) -> str | None:
    """The first file of ``--config_file VALUE`` / ``--config_file=VALUE`` in ``argv``; VALUE is one path or a list of
    paths written as a Python literal (``"['train.json','evaluate.json']"``), as ``monai.bundle run`` reads it."""
    for index, arg in enumerate(argv):
        if arg == "--config_file" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if value.lstrip().startswith(("[", "(")):
            files = ast.literal_eval(value)
            return str(files[0]) if files else None
        return value
    return None


def bundle_root(argv: Sequence[str] = ()) -> str:
    """The absolute path of the bundle whose configs a command line runs, wherever the working directory is.

    The configs' default ``bundle_root`` is ``$medt_monai.bundle.bundle_root(sys.argv)``: for ``python -m monai.bundle
    run ... --config_file X`` (also under ``torchrun``), the folder MONAI itself takes for the bundle's root (it finds
    ``metadata.json`` and ``logging.conf`` beside X): the parent of the ``configs`` folder holding X, or X's folder when
    it is not called ``configs``. Without ``--config_file`` in ``argv`` (MONAI Label, a ``ConfigParser`` in a script),
    the working directory, the model zoo's ``"bundle_root": "."``. ``--bundle_root`` overrides it as usual.

    Args:
        argv: the command line's arguments.
    """
    config_file = _first_config_file(argv)
    if config_file is None:
        return os.path.abspath(".")
    folder = Path(config_file).expanduser().absolute().parent
    return os.path.abspath(folder.parent if folder.name == "configs" else folder)


def prefixed(prefix: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with every name preceded by ``prefix + "_"``: the names the engines log, save and write to CSV.

    The configs define each metric handler once under a plain name (``mean_dice``, ``object_f1``, ...);
    ``metric_prefix`` makes them ``val_mean_dice`` during training and ``test_mean_dice`` in ``evaluate.json``.
    """
    return {f"{prefix}_{name}": metric for name, metric in metrics.items()}


def object_metrics_enabled(datalist: Sequence[Mapping], key: str = "instance") -> bool:
    """Whether the object-level metrics can run on ``datalist``: every item has a ground-truth instance map at ``key``.

    When they cannot, one INFO line on the ``medt_monai.bundle`` logger says that they are skipped and why (the
    bundle's ``evaluate.json`` then reports the pixel metrics only).

    Args:
        datalist: the evaluated items (dicts with ``"image"``, ``"label"`` and, where the data has them, ``key``).
        key: the datalist key of the instance maps.
    """
    missing = sum(1 for item in datalist if key not in item)
    if missing:
        logging.getLogger("medt_monai.bundle").info(
            f"object-level metrics (object F1/Dice/Hausdorff, AJI, PQ) skipped: {missing} of {len(datalist)} "
            f"evaluated images have no instance label ('{key}'); this data set provides none."
        )
    return missing == 0 and len(datalist) > 0
