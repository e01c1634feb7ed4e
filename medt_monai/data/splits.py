"""Seeded train / validation / test (or k-fold) splits, and the splits of each supported data layout by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medt_monai.data.decathlon import decathlon_sections
from medt_monai.data.demo import make_demo_dataset
from medt_monai.data.folder import folder_datalist, medt_layout_datalist
from medt_monai.data.glas import glas_datalist
from medt_monai.data.images import natural_key
from medt_monai.data.monuseg import monuseg_datalist

__all__ = [
    "DATASET_NAMES",
    "RECIPE_DEFAULTS",
    "dataset_splits",
    "recipe_default",
    "split_datalist",
]

DATASET_NAMES = ("demo", "medt", "glas", "monuseg", "decathlon", "folder")
#: what the bundle's ``train.json`` learns a data set with unless told (``--output``, ``--image_scale``,
#: ``--training_crops``): GlaS glands as separate objects, with every image zoomed by 0.2 (0.62 -> 3.1 um/px, so that
#: slides are read at the same scale), trained on windows of montages of the images on glass (so that a tile and its
#: slide give the same objects), as decided by cross-validation (docs/research/recipes.md, "twenty-fourth" and
#: "twenty-sixth round"); every other data set: :data:`RECIPE_FALLBACKS`.
RECIPE_DEFAULTS = {"glas": {"output": "instances", "image_scale": 0.2, "training_crops": "montage"}}
#: the recipe of a data set without an entry in :data:`RECIPE_DEFAULTS`: the semantic mask of images squeezed to
#: ``img_size`` (one crop, the whole image)
RECIPE_FALLBACKS = {"output": "semantic", "image_scale": None, "training_crops": "image"}


def recipe_default(name: str, key: str) -> str | float | None:
    """``train.json``'s default ``key`` (``"output"``, ``"image_scale"``, ``"training_crops"``) for data set ``name``:
    :data:`RECIPE_DEFAULTS`, else :data:`RECIPE_FALLBACKS`.

    Raises:
        KeyError: a ``key`` that is not a recipe setting.
    """
    if key not in RECIPE_FALLBACKS:
        raise KeyError(f"{key!r} is not a recipe setting; one of {', '.join(map(repr, RECIPE_FALLBACKS))}.")
    return RECIPE_DEFAULTS.get(str(name).lower(), {}).get(key, RECIPE_FALLBACKS[key])


def split_datalist(
    items: Sequence[dict],
    val_fraction: float = 0.15,
    test_fraction: float = 0.0,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int = 0,
) -> dict[str, list[dict]]:
    """Seeded split of a datalist into train / validation / test (or k-fold train / validation).

    Items are ordered by image path, then permuted with ``numpy.random.default_rng(seed)``. The
    test part (``round(test_fraction * n)`` items) is taken first; validation comes only from the
    rest. With ``num_folds`` the rest is cut into ``num_folds`` folds and fold ``fold`` is the
    validation set (``val_fraction`` is then ignored).

    Raises:
        ValueError: fractions outside [0, 1) or summing to >= 1, bad fold arguments, or too few items.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: each in [0, 1), sum < 1.")
    ordered = sorted(items, key=lambda d: natural_key(str(d["image"])))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    n_test = int(round(test_fraction * len(shuffled)))
    test, rest = shuffled[:n_test], shuffled[n_test:]
    if num_folds is not None:
        if num_folds < 2 or not 0 <= fold < num_folds:
            raise ValueError(f"num_folds={num_folds}, fold={fold}: need num_folds >= 2 and 0 <= fold < num_folds.")
        if len(rest) < num_folds:
            raise ValueError(f"{len(rest)} items cannot make {num_folds} folds.")
        folds = np.array_split(np.arange(len(rest)), num_folds)
        val_idx = set(folds[fold].tolist())
        val = [rest[i] for i in sorted(val_idx)]
        train = [rest[i] for i in range(len(rest)) if i not in val_idx]
    else:
        n_val = int(round(val_fraction * len(shuffled)))
        if val_fraction > 0:
            n_val = max(n_val, 1)
        val, train = rest[:n_val], rest[n_val:]
    if not train:
        raise ValueError(f"{len(items)} items leave no training data after the validation/test split.")
    key = lambda d: natural_key(str(d["image"]))  # noqa: E731
    return {"train": sorted(train, key=key), "validation": sorted(val, key=key), "test": sorted(test, key=key)}


def _medt_splits(root: Path, val_fraction, test_fraction, seed, num_folds, fold, verify) -> dict[str, list[dict]]:
    if not (root / "train").is_dir():
        raise FileNotFoundError(
            f"{root}: no train/ folder; the MedT layout is <root>/train/img + <root>/train/labelcol."
        )
    train = medt_layout_datalist(root / "train", verify)
    val = medt_layout_datalist(root / "val", verify) if (root / "val" / "img").is_dir() else None
    test = medt_layout_datalist(root / "test", verify) if (root / "test" / "img").is_dir() else None
    return _carve_missing(train, val, test, val_fraction, test_fraction, seed, num_folds, fold, val_of_whole=True)


def _carve_missing(
    train: list[dict],
    val: list[dict] | None,
    test: list[dict] | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    num_folds: int | None,
    fold: int,
    val_of_whole: bool = False,
) -> dict[str, list[dict]]:
    """Splits of a layout that may lack validation and/or test sets: a missing test set is carved from ``train`` first
    (so validation never comes from test), then k-fold over train + validation, or a missing validation set carved from
    what is left of ``train`` (``val_fraction`` of the remaining training images, or of train + test with
    ``val_of_whole``, at most 90 % of them)."""
    if test is None:
        s = split_datalist(train, 0.0, test_fraction, seed)
        train, test = s["train"], s["test"]
    if num_folds is not None:
        s = split_datalist(train + (val or []), 0.0, 0.0, seed, num_folds, fold)
        return {"train": s["train"], "validation": s["validation"], "test": test}
    if val is None:
        fraction = (
            min(val_fraction * (len(train) + len(test)) / max(len(train), 1), 0.9) if val_of_whole else val_fraction
        )
        s = split_datalist(train, fraction, 0.0, seed)
        train, val = s["train"], s["validation"]
    return {"train": train, "validation": val, "test": test}


def dataset_splits(
    name: str,
    root: str | Path | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int = 0,
    verify: str = "header",
) -> dict[str, list[dict]]:
    """Train / validation / test datalist of a data layout (lists of ``{"image": str, "label": str}`` dicts).

    Items also carry ``"instance"`` (a ground-truth instance map: 0 background, one id per object, for the
    object-level metrics of :mod:`medt_monai.metrics`) where the data set has them: GlaS (official ``*_anno.bmp``,
    or ``labelinst/`` in the MedT layout), MoNuSeg (rasterised XML polygons, official layout or ``xml/`` in the MedT
    layout), the demo set, ``<root>/instances/`` of a ``"folder"`` layout, and ``"instance"`` entries of a
    Decathlon datalist (paths relative to the JSON's folder).

    Layouts (``name``):

    - ``"demo"``: the built-in synthetic set (:func:`make_demo_dataset` at ``root``); its own splits.
    - ``"medt"``: ``<root>/{train,val,test}/{img,labelcol}/`` (the original MedT code's layout).
      Existing ``val/`` and ``test/`` are used; a missing one is carved out of ``train/`` with
      ``test_fraction`` / ``val_fraction`` (fractions of all images), seeded.
    - ``"glas"``: official GlaS download (``train_N.bmp`` / ``train_N_anno.bmp``); test is
      testA + testB; validation carved out of train. A root in the MedT layout is accepted too.
    - ``"monuseg"``: official MoNuSeg download (``Tissue Images/*.tif`` + ``Annotations/*.xml``,
      rasterised and cached once); or the MedT layout (``<root>/train/img`` ...).
    - ``"decathlon"``: ``root`` is a Decathlon-style datalist JSON (MONAI's
      ``load_decathlon_datalist``; paths relative to the JSON's folder). Its ``validation`` and
      ``test`` sections are used when present (test entries may lack labels), else carved out
      of ``training``.
    - ``"folder"``: ``<root>/images/`` + ``<root>/masks/`` matched by file name.

    Validation never comes from the test split. With ``num_folds`` the non-test data is cut into
    seeded folds and fold ``fold`` is validation.

    Args:
        name: one of ``DATASET_NAMES``.
        root: data folder (JSON file for "decathlon"); for "demo" None means the default cache.
        val_fraction: fraction of all images for validation when carved.
        test_fraction: fraction of all images for test when carved.
        seed: split seed.
        num_folds: k of k-fold cross-validation, or None.
        fold: validation fold index in [0, num_folds).
        verify: file checks before returning, see :func:`~medt_monai.data.check_pairs`.

    Returns:
        {"train": [...], "validation": [...], "test": [...]}.

    Raises:
        ValueError: unknown ``name`` (lists the valid ones), bad fractions/folds, bad files.
        FileNotFoundError: missing folder, file or mask (names it).
    """
    key = str(name).lower()
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset name {name!r}; valid names: {', '.join(DATASET_NAMES)}.")
    if key == "demo":
        return _medt_splits(make_demo_dataset(root), val_fraction, test_fraction, seed, num_folds, fold, verify)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root (the data folder, or the JSON file for 'decathlon').")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: data root not found (dataset {name!r}).")
    if key == "medt" or (key in ("glas", "monuseg") and (root / "train" / "img").is_dir()):
        return _medt_splits(root, val_fraction, test_fraction, seed, num_folds, fold, verify)
    if key == "glas":
        g = glas_datalist(root, verify=verify)
        test = g["testA"] + g["testB"]
        pool = len(g["train"]) + len(test)
        vf = val_fraction * pool / len(g["train"]) if num_folds is None else 0.0
        s = split_datalist(g["train"], min(vf, 0.9), 0.0, seed, num_folds, fold)
        return {"train": s["train"], "validation": s["validation"], "test": test}
    if key == "monuseg":
        return split_datalist(monuseg_datalist(root, verify=verify), val_fraction, test_fraction, seed, num_folds, fold)
    if key == "folder":
        instances = root / "instances"
        return split_datalist(
            folder_datalist(root / "images", root / "masks", verify=verify,
                            instance_dir=instances if instances.is_dir() else None),
            val_fraction, test_fraction, seed, num_folds, fold,
        )  # fmt: skip
    train, val, test = decathlon_sections(root, verify)
    return _carve_missing(train, val, test, val_fraction, test_fraction, seed, num_folds, fold)
