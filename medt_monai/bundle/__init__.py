"""What only the bundle's configs (``bundle/configs``) need: the workflow's root folder and metric names, the checks a
workflow runs before it loads data, and the lock a training run holds on its folders.

The package never reads the bundle's files; the configs import this module, not the other way round.
"""

from __future__ import annotations

from medt_monai.bundle.checks import check_instance_labels, check_model_scale, check_workflow, size_divisor
from medt_monai.bundle.guard import LOCK_NAME, CheckpointGuard
from medt_monai.bundle.workflow import bundle_root, object_metrics_enabled, prefixed

__all__ = [
    "LOCK_NAME",
    "CheckpointGuard",
    "bundle_root",
    "check_instance_labels",
    "check_model_scale",
    "check_workflow",
    "object_metrics_enabled",
    "prefixed",
    "size_divisor",
]
