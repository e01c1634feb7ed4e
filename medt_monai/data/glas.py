"""The official GlaS download (Warwick-QU): BMP images and their ``_anno`` instance maps, converted once into binary
masks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medt_monai.data.cache import default_cache
from medt_monai.data.images import INSTANCE_KEY, check_pairs, natural_key
from medt_monai.utils.files import atomic_save_png

__all__ = ["GLAS_MPP", "glas_datalist"]

#: micrometres per pixel of the GlaS images (20x objective, Zeiss MIRAX MIDI scanner)
GLAS_MPP = 0.62


def _binary_from_instances(path: Path) -> np.ndarray:
    """The 0/255 foreground mask of an instance map image (any channel non-zero)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read annotation image (corrupt or truncated): {e}") from e
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return ((arr > 0).astype(np.uint8)) * 255


def glas_datalist(
    root: str | Path, cache_dir: str | Path | None = None, verify: str = "header"
) -> dict[str, list[dict]]:
    """Datalists of the official GlaS download (Warwick-QU): ``train_N.bmp`` + ``train_N_anno.bmp``, ``testA_N``, ``testB_N``.

    The ``*_anno.bmp`` instance label maps (0 background, 1..N gland ids) are converted once into
    binary 0/255 PNG masks under ``cache_dir`` (default ``<root>/.medt_monai_cache/glas``, or the
    user cache when ``root`` is read-only), each written atomically. ``Grade.csv`` is not needed.

    Args:
        root: folder holding the BMP files (the unpacked ``Warwick QU Dataset (Released 2016_07_08)``).
        cache_dir: where the binary masks go.
        verify: see :func:`~medt_monai.data.check_pairs`.

    Returns:
        {"train": [...], "testA": [...], "testB": [...]}; "image" is the BMP, "label" the binary mask,
        "instance" the original instance map.

    Raises:
        FileNotFoundError: ``root`` missing, or an image without its ``_anno`` file.
        ValueError: no ``train_*.bmp`` found, unreadable file, or size mismatch.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: GlaS folder not found.")
    cache = Path(cache_dir) if cache_dir is not None else default_cache(root, "glas")
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[dict]] = {"train": [], "testA": [], "testB": []}
    pat = re.compile(r"^(train|testA|testB)_(\d+)\.bmp$", re.IGNORECASE)
    files = sorted((p for p in root.iterdir() if pat.match(p.name)), key=lambda p: natural_key(p.name))
    for img in files:
        split = pat.match(img.name).group(1)  # type: ignore[union-attr]
        split = {"train": "train", "testa": "testA", "testb": "testB"}[split.lower()]
        anno = img.with_name(img.stem + "_anno" + img.suffix)
        if not anno.is_file():
            raise FileNotFoundError(f"mask missing for image {img}: expected {anno}.")
        dest = cache / f"{img.stem}.png"
        if not dest.is_file() or dest.stat().st_mtime < anno.stat().st_mtime:
            atomic_save_png(_binary_from_instances(anno), dest)
        out[split].append({"image": str(img), "label": str(dest), INSTANCE_KEY: str(anno)})
    if not out["train"]:
        raise ValueError(f"{root}: no train_N.bmp files; not the official GlaS layout.")
    for items in out.values():
        check_pairs(items, verify)
    return out
