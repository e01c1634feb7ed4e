"""MONAI datalists (lists of ``{"image", "label"}`` dicts, plus ``"instance"`` where the data has instance labels)
for the supported data layouts."""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "dataset_splits",
    "medt_layout_datalist",
    "glas_datalist",
    "monuseg_datalist",
    "folder_datalist",
    "split_datalist",
    "image_size",
    "check_pairs",
    "INSTANCE_KEY",
]

#: datalist key of the ground-truth instance map (0 background, one id per gland / nucleus) where a data set has one
INSTANCE_KEY = "instance"

DATASET_NAMES = ("demo", "medt", "glas", "monuseg", "decathlon", "folder")
PIL_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif")
ITK_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm")
IMAGE_EXTENSIONS = PIL_EXTENSIONS + ITK_EXTENSIONS


def _ext(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _stem(path: Path) -> str:
    return path.name[: -len(_ext(path))] if _ext(path) else path.name


def image_size(path: str | Path, full: bool = False) -> tuple[int, ...]:
    """Return the spatial size of an image file from its header, in ITK order (width, height, ...).

    PIL formats are read lazily (header only) unless ``full``; NIfTI via nibabel's header;
    other ITK formats via ITK's image information.

    Args:
        path: the image file.
        full: also decode all pixel data (detects truncated files).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as an image, or is truncated (``full``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found.")
    ext = _ext(path)
    try:
        if ext in (".nii", ".nii.gz"):
            import nibabel as nib

            image = nib.load(str(path))
            if full:
                np.asanyarray(image.dataobj)
            return tuple(int(s) for s in image.shape if s > 1)[:3] or (1,)
        if ext in ITK_EXTENSIONS:
            import itk

            reader = itk.ImageFileReader.New(FileName=str(path))
            if full:
                reader.Update()
            else:
                reader.UpdateOutputInformation()
            size = reader.GetOutput().GetLargestPossibleRegion().GetSize()
            return tuple(int(s) for s in size if int(s) > 1)
        with Image.open(path) as im:
            if full:
                im.load()
            return tuple(int(s) for s in im.size)
    except (UnidentifiedImageError, OSError, RuntimeError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read as an image (corrupt, truncated or unsupported): {e}") from e


def check_pairs(datalist: Sequence[dict], verify: str = "header") -> None:
    """Check each ``image``/``label`` pair (and ``instance`` map where present): readable and of the same spatial size.

    Args:
        datalist: list of ``{"image": path, "label": path}`` dicts (optionally with ``"instance": path``).
        verify: "header" (read headers only, fast), "full" (decode every image, detects
            truncated files) or "none".

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is unreadable, or a mask's (or instance map's) size differs from its image's
            (the message names both files and sizes).
    """
    if verify not in ("header", "full", "none"):
        raise ValueError(f"verify must be 'header', 'full' or 'none', got {verify!r}.")
    if verify == "none":
        return
    for item in datalist:
        isize = image_size(item["image"], full=verify == "full")
        for key, what in (("label", "mask"), (INSTANCE_KEY, "instance map")):
            if key not in item:
                continue
            lsize = image_size(item[key], full=verify == "full")
            if isize[:2] != lsize[:2]:
                raise ValueError(
                    f"{what} {item[key]} has size {lsize[:2]} (W, H) but its image {item['image']} has size "
                    f"{isize[:2]}; {what}s must have the size of their image."
                )


def _list_images(folder: Path, what: str) -> dict[str, Path]:
    """Map file stem -> path for the image files in ``folder``; duplicate stems raise."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found.")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or _ext(p) not in IMAGE_EXTENSIONS:
            continue
        stem = _stem(p)
        if stem in found:
            raise ValueError(
                f"{folder}: duplicate name {stem!r} ({found[stem].name} and {p.name}); each name must be unique."
            )
        found[stem] = p
    if not found:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this {what} folder.")
    return found


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _pair(images: dict[str, Path], masks: dict[str, Path], mask_dir: Path, suffix: str = "") -> list[dict]:
    out = []
    for stem in sorted(images, key=_natural_key):
        mask = masks.get(stem + suffix)
        if mask is None:
            raise FileNotFoundError(
                f"mask missing for image {images[stem]}: expected {mask_dir / (stem + suffix)}.<ext> "
                f"(same name{' + ' + repr(suffix) if suffix else ''}, any of {', '.join(IMAGE_EXTENSIONS)})."
            )
        out.append({"image": str(images[stem]), "label": str(mask)})
    return out


def _add_instances(items: list[dict], instance_dir: Path) -> None:
    """Add ``"instance"`` (the file in ``instance_dir`` named like the image, any extension) to every item."""
    instances = _list_images(instance_dir, "instance label")
    for item in items:
        stem = _stem(Path(item["image"]))
        if stem not in instances:
            raise FileNotFoundError(
                f"instance label missing for image {item['image']}: expected {instance_dir / stem}.<ext> "
                f"(same name, any of {', '.join(IMAGE_EXTENSIONS)})."
            )
        item[INSTANCE_KEY] = str(instances[stem])


def folder_datalist(
    image_dir: str | Path,
    mask_dir: str | Path,
    mask_suffix: str = "",
    verify: str = "header",
    instance_dir: str | Path | None = None,
) -> list[dict]:
    """Datalist of a generic image folder and mask folder matched by file name (extension may differ).

    Args:
        image_dir: folder of images (PNG, BMP, TIFF, JPEG, NIfTI, NRRD, MHA, ...).
        mask_dir: folder of masks named like their image (plus ``mask_suffix`` before the extension).
        mask_suffix: e.g. "_mask" for ``a.png`` / ``a_mask.png``.
        verify: see :func:`check_pairs`.
        instance_dir: optional folder of ground-truth instance maps (0 background, one integer id per object) named
            like their image; they become the items' ``"instance"`` (for the object-level metrics).

    Raises:
        FileNotFoundError: a folder is missing, or an image has no mask (or no instance map with ``instance_dir``).
        ValueError: empty folder, duplicate names, unreadable file, or size mismatch (names the file).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    items = _pair(_list_images(image_dir, "image"), _list_images(mask_dir, "mask"), mask_dir, mask_suffix)
    if instance_dir is not None:
        _add_instances(items, Path(instance_dir))
    check_pairs(items, verify)
    return items


def medt_layout_datalist(split_dir: str | Path, verify: str = "header") -> list[dict]:
    """Datalist of one split of the MedT layout: ``<split_dir>/img/*`` + ``<split_dir>/labelcol/*`` (same names).

    Instance labels, where the split has them, become the items' ``"instance"``: ``<split_dir>/labelinst/*``
    (instance maps named like the images, e.g. GlaS gland ids), else ``<split_dir>/xml/<name>.xml`` (MoNuSeg
    polygons, rasterised once into instance maps under ``<split_dir>/.medt_monai_cache/`` or the user cache).

    Raises:
        FileNotFoundError, ValueError: see :func:`folder_datalist`; a broken XML file names the file.
    """
    split_dir = Path(split_dir)
    inst_dir = split_dir / "labelinst"
    items = folder_datalist(
        split_dir / "img", split_dir / "labelcol", verify=verify, instance_dir=inst_dir if inst_dir.is_dir() else None
    )
    xml_dir = split_dir / "xml"
    if not inst_dir.is_dir() and xml_dir.is_dir():
        cache = _default_cache(split_dir, "instances")
        for item in items:
            img = Path(item["image"])
            xml = xml_dir / f"{_stem(img)}.xml"
            if not xml.is_file():
                raise FileNotFoundError(f"annotation missing for image {img}: expected {xml}.")
            item[INSTANCE_KEY] = str(_cached_instances(xml, img, cache))
    return items


def _default_cache(root: Path, name: str) -> Path:
    """A writable cache folder for derived masks: ``<root>/.medt_monai_cache/<name>`` or the user cache.

    A ``root`` without any write permission bit counts as read-only even for a user who could write there (root).
    """
    cand = root / ".medt_monai_cache" / name
    try:
        if root.stat().st_mode & 0o222 or cand.is_dir():
            cand.mkdir(parents=True, exist_ok=True)
            if os.access(cand, os.W_OK):
                return cand
    except OSError:
        pass
    import hashlib

    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    cand = Path.home() / ".cache" / "medt_monai" / f"{name}-{digest}"
    cand.mkdir(parents=True, exist_ok=True)
    return cand


def _atomic_save_png(arr: np.ndarray, dest: Path) -> None:
    """Save a mask as PNG via a temporary file in the same folder + rename (never half-written).

    8-bit when every value fits (0/255 masks, instance maps with < 256 objects), else 16-bit.
    """
    if arr.size and int(arr.max()) > 65535:
        raise ValueError(f"{dest}: {int(arr.max())} instances do not fit a 16-bit PNG.")
    if arr.max(initial=0) <= 255:
        im = Image.fromarray(arr.astype(np.uint8), mode="L")
    else:
        im = Image.fromarray(arr.astype(np.uint16))
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".png", dir=dest.parent)
    os.close(fd)
    try:
        im.save(tmp, format="PNG")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached_instances(xml: Path, image: Path, cache: Path) -> Path:
    """The instance map of a MoNuSeg XML file for ``image``, rasterised once into ``cache`` (redone when older)."""
    from medt_monai.data.monuseg import rasterize_xml_instances

    dest = cache / f"{_stem(image)}_instances.png"
    if not dest.is_file() or dest.stat().st_mtime < xml.stat().st_mtime:
        w, h = image_size(image)[:2]
        _atomic_save_png(rasterize_xml_instances(xml, (h, w)), dest)
    return dest


def _binary_from_instances(path: Path) -> np.ndarray:
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
        verify: see :func:`check_pairs`.

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
    cache = Path(cache_dir) if cache_dir is not None else _default_cache(root, "glas")
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[dict]] = {"train": [], "testA": [], "testB": []}
    pat = re.compile(r"^(train|testA|testB)_(\d+)\.bmp$", re.IGNORECASE)
    files = sorted((p for p in root.iterdir() if pat.match(p.name)), key=lambda p: _natural_key(p.name))
    for img in files:
        split = pat.match(img.name).group(1)  # type: ignore[union-attr]
        split = {"train": "train", "testa": "testA", "testb": "testB"}[split.lower()]
        anno = img.with_name(img.stem + "_anno" + img.suffix)
        if not anno.is_file():
            raise FileNotFoundError(f"mask missing for image {img}: expected {anno}.")
        dest = cache / f"{img.stem}.png"
        if not dest.is_file() or dest.stat().st_mtime < anno.stat().st_mtime:
            _atomic_save_png(_binary_from_instances(anno), dest)
        out[split].append({"image": str(img), "label": str(dest), INSTANCE_KEY: str(anno)})
    if not out["train"]:
        raise ValueError(f"{root}: no train_N.bmp files; not the official GlaS layout.")
    for items in out.values():
        check_pairs(items, verify)
    return out


def monuseg_datalist(root: str | Path, cache_dir: str | Path | None = None, verify: str = "header") -> list[dict]:
    """Datalist of an official MoNuSeg download: ``Tissue Images/*.tif`` + ``Annotations/*.xml``.

    Also accepts a folder holding the ``.tif`` and ``.xml`` files side by side (the official test
    download). Each XML is rasterised once (:func:`medt_monai.data.rasterize_xml_instances`) into an
    instance map (``"instance"``, one id per nucleus) and its 0/255 mask (``"label"``), PNGs under
    ``cache_dir`` (default ``<root>/.medt_monai_cache/monuseg``), written atomically.

    Raises:
        FileNotFoundError: ``root`` missing, or an image without its XML.
        ValueError: no images, unreadable image, or broken XML (names the file).
    """
    root = Path(root)
    img_dir, xml_dir = root / "Tissue Images", root / "Annotations"
    if not img_dir.is_dir():
        img_dir = xml_dir = root
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: MoNuSeg folder not found.")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png") and p.is_file())
    if not images:
        raise ValueError(f"{img_dir}: no .tif images; expected the official MoNuSeg layout 'Tissue Images/*.tif'.")
    cache = Path(cache_dir) if cache_dir is not None else _default_cache(root, "monuseg")
    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for img in images:
        xml = xml_dir / f"{img.stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"annotation missing for image {img}: expected {xml}.")
        instances = _cached_instances(xml, img, cache)
        dest = cache / f"{img.stem}.png"
        if not dest.is_file() or dest.stat().st_mtime < instances.stat().st_mtime:
            with Image.open(instances) as im:
                _atomic_save_png((np.asarray(im) > 0).astype(np.uint8) * 255, dest)
        items.append({"image": str(img), "label": str(dest), INSTANCE_KEY: str(instances)})
    check_pairs(items, verify)
    return items


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
    ordered = sorted(items, key=lambda d: _natural_key(str(d["image"])))
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
    key = lambda d: _natural_key(str(d["image"]))  # noqa: E731
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
    """Train / validation / test datalists (``{"image": str, "label": str}`` dicts) for a data layout.

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
        verify: file checks before returning, see :func:`check_pairs`.

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
        from medt_monai.data.demo import make_demo_dataset

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
    # decathlon
    import json

    from monai.data import load_decathlon_datalist

    if not root.is_file():
        raise FileNotFoundError(f"{root}: for 'decathlon', root must be the datalist JSON file.")
    try:
        sections = json.loads(root.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{root}: not valid JSON ({e}).") from e
    if "training" not in sections:
        raise ValueError(f"{root}: no 'training' section; not a Decathlon-style datalist.")
    train = load_decathlon_datalist(str(root), True, "training")
    val = load_decathlon_datalist(str(root), True, "validation") if sections.get("validation") else None
    test = load_decathlon_datalist(str(root), False, "test") if sections.get("test") else None
    for items in (train, val or [], test or []):
        for item in items:
            if INSTANCE_KEY in item:  # resolved like "image" and "label" (MONAI resolves only those)
                item[INSTANCE_KEY] = os.path.normpath(os.path.join(root.parent, item[INSTANCE_KEY]))
            if not Path(item["image"]).is_file():
                raise FileNotFoundError(f"{root}: image {item['image']} not found.")
            for k in ("label", INSTANCE_KEY):
                if k in item and not Path(item[k]).is_file():
                    raise FileNotFoundError(f"{root}: {k} {item[k]} (for {item['image']}) not found.")
    check_pairs(train + (val or []) + [t for t in (test or []) if "label" in t or INSTANCE_KEY in t], verify)
    return _carve_missing(train, val, test, val_fraction, test_fraction, seed, num_folds, fold)
