"""A built-in, licence-clean synthetic H&E-like gland segmentation set (no download)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_demo_dataset", "make_demo_slide", "default_data_dir", "DEMO_SPLITS", "DEMO_SLIDE_MPP"]

#: split name -> number of images (their sizes cycle through ``_SIZES``)
DEMO_SPLITS: dict[str, int] = {"train": 40, "val": 10, "test": 10}
_SIZES = ((128, 128), (128, 128), (128, 128), (128, 160))  # (H, W); every 4th image is 128x160
_COMPLETE = ".complete"
#: micrometres per level-0 pixel of the demo slide: GlaS's (20x), the demo tiles being enlarged 5x to it
DEMO_SLIDE_MPP = 0.62
_VERSION = "2"  # 2: labelinst/ added


def default_data_dir() -> Path:
    """Return the demo data folder: ``$MEDT_MONAI_DATA_DIR`` if set, else ``~/.cache/medt_monai/demo``."""
    env = os.environ.get("MEDT_MONAI_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medt_monai" / "demo"


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid bilinearly upsampled to (h, w)."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((gw * cell, gh * cell), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)[:h, :w]


def _dots(rng: np.random.Generator, h: int, w: int, density: float, radius: float) -> np.ndarray:
    """Binary map of small round 'nuclei' placed uniformly with the given density (per pixel)."""
    n = rng.poisson(density * h * w)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w), dtype=bool)
    for cy, cx in zip(rng.uniform(0, h, n), rng.uniform(0, w, n)):
        y0, y1, x0, x1 = int(max(cy - 3, 0)), int(min(cy + 4, h)), int(max(cx - 3, 0)), int(min(cx + 4, w))
        out[y0:y1, x0:x1] |= (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= radius**2
    return out


def _render(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one (RGB uint8 image, uint8 0/255 mask, uint8 gland instance map) triple."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # stroma: eosin pink with low-frequency texture, scattered nuclei and white gaps (not glands)
    tex = _smooth_noise(rng, h, w, 8)
    stroma = np.array([232, 150, 190], np.float32) * (0.85 + 0.25 * tex[..., None])
    img = stroma.copy()
    gaps = _smooth_noise(rng, h, w, 24) > 0.82
    img[gaps] = np.array([240, 228, 236], np.float32)
    mask = np.zeros((h, w), dtype=bool)
    dist_min = np.full((h, w), np.inf, dtype=np.float32)
    deepest = np.zeros((h, w), dtype=np.uint8)  # per pixel, the gland with the smallest d (relative radius) so far
    for gland in range(1, int(rng.integers(1, 5)) + 1):
        cy, cx = rng.uniform(0.15 * h, 0.85 * h), rng.uniform(0.15 * w, 0.85 * w)
        a, b = rng.uniform(0.10, 0.25) * min(h, w), rng.uniform(0.10, 0.25) * min(h, w)
        ang = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / a
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / b
        theta = np.arctan2(v, u)
        wobble = 1.0 + sum(rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
        d = np.sqrt(u**2 + v**2) / wobble  # < 1 inside the gland
        deepest[d < dist_min] = gland
        dist_min = np.minimum(dist_min, d)
    mask = dist_min < 1.0
    # instances: each foreground pixel belongs to the gland it lies deepest in; ids 1..n in raster order of appearance
    ids = deepest[mask]
    _, first = np.unique(ids, return_index=True)
    lut = np.zeros(256, dtype=np.uint8)
    lut[ids[np.sort(first)]] = np.arange(1, len(first) + 1, dtype=np.uint8)
    instances = np.where(mask, lut[deepest], 0).astype(np.uint8)
    lumen = dist_min < rng.uniform(0.45, 0.65)
    epi = mask & ~lumen
    # epithelium: purple cytoplasm with a ring of dark nuclei; lumen: pale, like the stroma gaps
    img[epi] = np.array([170, 95, 175], np.float32) * (0.9 + 0.2 * tex[epi][:, None])
    img[lumen] = np.array([238, 225, 235], np.float32) * (0.95 + 0.1 * tex[lumen][:, None])
    ring = epi & (dist_min > 0.75)
    nuclei = (_dots(rng, h, w, 0.02, 1.8) & ring) | (_dots(rng, h, w, 0.004, 1.6) & ~mask)
    img[nuclei] = np.array([80, 40, 120], np.float32)
    img += rng.normal(0, 12, img.shape).astype(np.float32)  # pixel noise
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img, (mask.astype(np.uint8) * 255), instances


def _is_complete(root: Path, seed: int) -> bool:
    marker = root / _COMPLETE
    return marker.is_file() and marker.read_text().strip() == f"version={_VERSION} seed={seed}"


def make_demo_dataset(root: str | Path | None = None, seed: int = 0) -> Path:
    """Generate (once) the built-in synthetic demo segmentation set in the MedT folder layout.

    ``<root>/{train,val,test}/img/<name>.png`` (RGB uint8, H&E-like: pink textured stroma with
    white gaps and scattered nuclei; glands are purple epithelium rings with dark nuclei around a
    pale lumen), ``<root>/{split}/labelcol/<name>.png`` (uint8 0/255 gland masks) and
    ``<root>/{split}/labelinst/<name>.png`` (uint8 gland instance maps: 0 background, glands 1..n; where
    glands overlap, each pixel belongs to the gland it lies deepest in, relative to the gland's size). 40/10/10
    images, 128×128 with every fourth image 128 (H) × 160 (W). Colour alone does not separate
    glands (lumen and stroma gaps share a colour; nuclei occur in both), shape and context do.
    Deterministic for a given ``seed`` (no download, no internet). Idempotent: a complete
    set (marker file ``.complete`` with the same seed) returns at once. Written atomically into a
    temporary sibling folder that is renamed at the end, so an interrupted run leaves nothing
    half-written at ``root``.

    Args:
        root: output folder; None: ``$MEDT_MONAI_DATA_DIR`` or ``~/.cache/medt_monai/demo``.
        seed: random seed of the generator.

    Returns:
        the root folder.

    Raises:
        FileExistsError: ``root`` exists, is not empty and is not a demo set made by this function.
    """
    root = Path(root).expanduser() if root is not None else default_data_dir()
    if _is_complete(root, seed):
        return root
    if root.exists() and any(root.iterdir()) and not (root / _COMPLETE).is_file():
        raise FileExistsError(
            f"{root}: folder exists and is not a demo data set made by make_demo_dataset; choose another root."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for split_idx, (split, count) in enumerate(DEMO_SPLITS.items()):
            (tmp / split / "img").mkdir(parents=True)
            (tmp / split / "labelcol").mkdir(parents=True)
            (tmp / split / "labelinst").mkdir(parents=True)
            for i in range(count):
                rng = np.random.default_rng([seed, split_idx, i])
                h, w = _SIZES[i % len(_SIZES)]
                img, mask, instances = _render(rng, h, w)
                name = f"{split}_{i:03d}.png"
                Image.fromarray(img, mode="RGB").save(tmp / split / "img" / name)
                Image.fromarray(mask, mode="L").save(tmp / split / "labelcol" / name)
                Image.fromarray(instances, mode="L").save(tmp / split / "labelinst" / name)
        (tmp / "LICENSE.txt").write_text(
            "Synthetic images generated by medt_monai.data.make_demo_dataset; no patient data. "
            "Public domain (CC0 1.0).\n"
        )
        (tmp / _COMPLETE).write_text(f"version={_VERSION} seed={seed}\n")
        if root.exists():  # an older/other-seed demo set: replace it
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(root, seed):  # another process finished first
            return root
        raise
    return root


def make_demo_slide(root: str | Path | None = None, seed: int = 0) -> Path:
    """Write (once) ``<root>/slides/demo_slide.tif``: the demo set's 10 test images enlarged 5x (nearest) on white
    glass, in 2 rows of 5 with a glass gap between them, as a 3-level tiled pyramidal TIFF at
    :data:`DEMO_SLIDE_MPP` micrometres per pixel (about 1.4k x 4.1k pixels); what ``inference_wsi.json`` reads by
    default.

    Args:
        root: the demo set's folder (made if missing), as :func:`make_demo_dataset`.
        seed: the demo set's seed.

    Returns:
        the slide's path.
    """
    from medt_monai.data.slides import write_pyramidal_tiff
    from medt_monai.inferers import GLASS_RGB

    root = make_demo_dataset(root, seed)
    path = root / "slides" / "demo_slide.tif"
    if path.is_file():
        return path
    cell, gap, enlarge = (128 * 5, 160 * 5), 64, 5
    names = sorted((root / "test" / "img").glob("*.png"))
    montage = np.full((2 * cell[0] + 3 * gap, 5 * cell[1] + 6 * gap, 3), GLASS_RGB, np.uint8)
    for k, name in enumerate(names[:10]):
        tile = np.asarray(Image.open(name).convert("RGB")).repeat(enlarge, 0).repeat(enlarge, 1)
        y, x = gap + (k // 5) * (cell[0] + gap), gap + (k % 5) * (cell[1] + gap)
        montage[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    path.parent.mkdir(exist_ok=True)
    return write_pyramidal_tiff(path, montage, DEMO_SLIDE_MPP)
