"""What the bundle's configs (``bundle/configs``) ask of the running MONAI bundle workflow."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["bundle_root", "prefixed"]


def bundle_root() -> str:
    """The absolute path of the bundle whose configs ``monai.bundle run`` is running, wherever the working directory is.

    It is the folder MONAI itself takes for the bundle's root (``ConfigWorkflow.run`` puts it on ``sys.path``; the
    default ``metadata.json`` and ``logging.conf`` are found beside the config): the parent of the ``configs`` folder
    that holds the (first) config file, or that folder itself when it is not called ``configs``. Used as the configs'
    default ``bundle_root``; ``--bundle_root`` overrides it as usual (the model zoo's checks and MONAI Label pass it).
    Evaluated outside a ``ConfigWorkflow`` (a bare ``ConfigParser``), it is the working directory, the model zoo's
    ``"bundle_root": "."``.
    """
    from monai.bundle import ConfigWorkflow

    # config expressions are evaluated inside the workflow's initialize() / run(): find that workflow up the stack
    frame = inspect.currentframe()
    try:
        while frame is not None:
            workflow = frame.f_locals.get("self")
            if isinstance(workflow, ConfigWorkflow):
                root = workflow.config_root_path
                return os.path.abspath(root.parent if root.name == "configs" else root)
            frame = frame.f_back
    finally:
        del frame  # no reference cycle through this frame
    return os.path.abspath(".")


def prefixed(prefix: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with every name preceded by ``prefix + "_"``: the names the engines log, save and write to CSV.

    The configs define each metric handler once under a plain name (``mean_dice``, ``object_f1``, ...);
    ``metric_prefix`` makes them ``val_mean_dice`` during training and ``test_mean_dice`` in ``evaluate.json``.
    """
    return {f"{prefix}_{name}": metric for name, metric in metrics.items()}
