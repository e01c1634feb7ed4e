"""Where the masks derived from a data set's annotations (GlaS, MoNuSeg) are cached."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["default_cache"]


def default_cache(root: Path, name: str) -> Path:
    """A writable cache folder for derived masks: ``<root>/.medt_monai_cache/<name>`` or the user cache.

    A ``root`` without any write permission bit counts as read-only even for a user who could write there (root).

    Args:
        root: the data set's folder.
        name: the cache's name, e.g. ``"glas"``.

    Returns:
        the folder, created: ``<root>/.medt_monai_cache/<name>``, else ``~/.cache/medt_monai/<name>-<hash of root>``.
    """
    cand = root / ".medt_monai_cache" / name
    try:
        if root.stat().st_mode & 0o222 or cand.is_dir():
            cand.mkdir(parents=True, exist_ok=True)
            if os.access(cand, os.W_OK):
                return cand
    except OSError:
        pass
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    cand = Path.home() / ".cache" / "medt_monai" / f"{name}-{digest}"
    cand.mkdir(parents=True, exist_ok=True)
    return cand
