"""File-writing primitives: files are written through a temporary file in their folder and a rename, never half-written.

This module is the package's bottom layer: it imports nothing from ``medt_monai``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "atomic_copy",
    "atomic_output",
    "atomic_save_png",
    "atomic_save_tiff",
    "atomic_write_text",
    "fsync_dir",
    "previous_path",
]


def fsync_dir(folder: str | Path) -> None:
    """Flush ``folder``'s directory entries to disk (after a rename into it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_file(dest: Path, suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``dest``'s folder, with the permissions ``open()`` would give a new file (mkstemp's are
    0600, which the rename would hand on to ``dest``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


def previous_path(path: str | Path) -> Path:
    """``models/model.pt`` -> ``models/model_previous.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_previous{path.suffix}")


@contextmanager
def atomic_output(dest: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path in ``dest``'s folder to write the whole file to; renamed to ``dest`` when the block ends
    without an error, removed when it raises (``dest`` is then untouched: the old file, or none).

    Args:
        dest: the file to write; its folder must exist.
        suffix: of the temporary name (writers that pick the format from the extension need it).
    """
    dest = Path(dest)
    fd, tmp = _temporary_file(dest, suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(src: str | Path, dest: str | Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary file in ``dest``'s folder (written, fsynced, renamed).

    ``dest`` is never half-written: until the rename it is the old file (or absent); a failed copy (a full disk) leaves
    it untouched and removes the temporary file.

    Raises:
        OSError: the copy failed; the message names both files.
    """
    src, dest = Path(src), Path(dest)
    try:
        with atomic_output(dest) as tmp:
            with open(tmp, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out)
                out.flush()
                os.fsync(out.fileno())
            shutil.copystat(src, tmp)
        fsync_dir(dest.parent)
    except OSError as e:
        raise OSError(e.errno, f"cannot copy {src} to {dest} ({e.strerror or e}); {dest} is unchanged") from e


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", newline: str | None = None) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename (never half-written).

    Args:
        path: the file to write; its folder must exist.
        text: the whole content.
        encoding: text encoding of the file.
        newline: as :func:`open`; ``""`` writes line endings as they are in ``text`` (what :mod:`csv` output needs).
    """
    with atomic_output(path) as tmp, open(tmp, "w", encoding=encoding, newline=newline) as f:
        f.write(text)


def atomic_save_png(arr: np.ndarray, dest: str | Path) -> None:
    """Save a mask as PNG via a temporary file in the same folder + rename (never half-written).

    8-bit when every value fits (0/255 masks, instance maps with < 256 objects), else 16-bit.

    Args:
        arr: 2D array of non-negative integers.
        dest: the ``.png`` file to write; its folder must exist.

    Raises:
        ValueError: a value exceeds 65535 (does not fit a 16-bit PNG).
    """
    dest = Path(dest)
    if arr.size and int(arr.max()) > 65535:
        raise ValueError(f"{dest}: {int(arr.max())} instances do not fit a 16-bit PNG.")
    if arr.max(initial=0) <= 255:
        im = Image.fromarray(arr.astype(np.uint8), mode="L")
    else:
        im = Image.fromarray(arr.astype(np.uint16))
    with atomic_output(dest, suffix=".png") as tmp:
        im.save(tmp, format="PNG")


def atomic_save_tiff(arr: np.ndarray, dest: str | Path, mpp: float | None = None) -> None:
    """Save a 2D array (e.g. a label image) as a zlib-compressed TIFF via a temporary file in the same folder + rename
    (never half-written); tiled when larger than one 256 x 256 tile, so viewers read it piecewise.

    Args:
        arr: 2D array; its dtype is kept (uint16 / uint32 object ids).
        dest: the ``.tif`` file to write; its folder must exist.
        mpp: micrometres per pixel of ``arr``, recorded as the TIFF's resolution (pixels per centimetre).
    """
    import tifffile  # scikit-image's dependency

    dest = Path(dest)
    options = {"compression": "zlib"}
    if min(arr.shape[:2]) > 256:
        options["tile"] = (256, 256)
    if mpp:
        options.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    with atomic_output(dest, suffix=".tif") as tmp:
        tifffile.imwrite(tmp, arr, **options)
