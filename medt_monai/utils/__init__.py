"""The package's bottom layer: helpers that import nothing else from ``medt_monai``, e.g. the atomic file writes of
:mod:`medt_monai.utils.files`."""

from __future__ import annotations

from medt_monai.utils.files import (
    atomic_copy,
    atomic_output,
    atomic_save_png,
    atomic_save_tiff,
    atomic_write_text,
    fsync_dir,
    previous_path,
)
from medt_monai.utils.memory import release_freed_memory

__all__ = [
    "atomic_copy",
    "atomic_output",
    "atomic_save_png",
    "atomic_save_tiff",
    "atomic_write_text",
    "fsync_dir",
    "previous_path",
    "release_freed_memory",
]
