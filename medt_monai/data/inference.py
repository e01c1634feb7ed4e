"""Inputs and output names of inference on a folder: the image datalist, unreadable images set aside, unique names."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from monai.data.folder_layout import default_name_formatter

from medt_monai.data.images import IMAGE_EXTENSIONS, check_pairs

__all__ = ["ReadableImages", "UniqueOutputNames", "image_datalist"]

logger = logging.getLogger(__name__)


def image_datalist(
    folder: str | Path,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    output_dir: str | Path | None = None,
    output_postfix: str | Sequence[str] = "seg",
) -> list[dict]:
    """``{"image": path}`` items for the image files directly in ``folder`` (hidden files left out), sorted by path.

    When inference writes its masks into ``folder`` itself (``output_dir`` resolves to the same folder), the files
    named like those masks, ``<name>_<output_postfix>.<ext>``, are left out with a warning that names the folder:
    they are an earlier run's output, and segmenting them again would write ``<name>_seg_seg.png``.

    Args:
        folder: the folder of images to segment.
        extensions: the file name endings that count as images (case-insensitive).
        output_dir: the folder inference writes its masks to (the bundle's ``output_dir``), or None.
        output_postfix: what inference appends to an image's name for its mask (the bundle's ``output_postfix``,
            as MONAI's ``SaveImaged``), or several (the mask's and the instance map's).

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a folder.
        ValueError: ``folder`` holds no image files (the message lists the endings looked for), or ``output_dir`` is
            ``folder`` and ``output_postfix`` is empty (the masks would overwrite the images).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder of images not found (dataset_dir).")
    endings = tuple(e.lower() for e in extensions)
    files = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(endings)
    ]
    postfixes = [output_postfix] if isinstance(output_postfix, str) else list(output_postfix)
    own = _own_outputs(folder, files, output_dir, postfixes)
    named = " or ".join(f"*_{postfix}.<ext>" for postfix in postfixes)
    if own:
        logger.warning(
            f"{folder}: skipped {len(own)} file(s) named {named} (e.g. {own[0].name}): this folder is "
            f"also the output folder (output_dir), so they are taken for masks of an earlier inference run. Write the "
            f"masks to another output_dir to segment them."
        )
    items = [{"image": str(p)} for p in files if p not in own]
    if not items:
        skipped = f"; {len(own)} earlier output mask(s) {named} left out" if own else ""
        raise ValueError(f"{folder}: no image files ({', '.join(endings)}) in this folder (dataset_dir){skipped}.")
    return items


def _own_outputs(folder: Path, files: list[Path], output_dir: str | Path | None, postfixes: list[str]) -> list[Path]:
    """The ``files`` of ``folder`` that inference's own masks would be named like, when it writes into ``folder``.

    Raises:
        ValueError: ``output_dir`` is ``folder`` and ``output_postfix`` is empty.
    """
    if output_dir is None or Path(output_dir).expanduser().resolve() != folder.resolve():
        return []
    if not all(postfixes):
        raise ValueError(
            f"{folder}: output_dir is the folder of images (dataset_dir) and output_postfix is empty, so the masks "
            "would overwrite the images; set output_postfix (e.g. 'seg') or another output_dir."
        )
    return [p for p in files if _stem_and_ending(p.name)[0].endswith(tuple(f"_{postfix}" for postfix in postfixes))]


class ReadableImages:
    """Set aside the images of a datalist that cannot be read, so the others are processed, and report them at the end.

    :meth:`filter` decodes every image once (``verify="full"`` of :func:`~medt_monai.data.check_pairs`: a corrupt or
    truncated file is caught before inference starts), logs a warning for each one that fails and returns the others;
    :meth:`raise_if_skipped`, the last step of the bundle's inference, raises an error listing them, so the run exits
    non-zero after all readable images are done.

    Args:
        key: the datalist key of the image path.
    """

    def __init__(self, key: str = "image") -> None:
        self.key = key
        self.skipped: list[tuple[str, str]] = []

    def filter(self, datalist: Sequence[dict]) -> list[dict]:
        """The items of ``datalist`` whose image can be decoded; the others are recorded in :attr:`skipped`.

        Raises:
            ValueError: ``datalist`` is empty, or none of its images can be read (the message lists them).
        """
        if not datalist:
            raise ValueError("no images to segment: the datalist is empty.")
        readable = []
        for item in datalist:
            try:
                check_pairs([{"image": item[self.key]}], verify="full")
            except (OSError, ValueError) as e:
                self.skipped.append((str(item[self.key]), str(e)))
                logger.warning(f"skipped, cannot be read: {e}")
            else:
                readable.append(item)
        if not readable:
            raise ValueError(f"none of the {len(datalist)} images can be read:\n{self._listing()}")
        return readable

    def _listing(self) -> str:
        return "\n".join(f"  {reason}" for _, reason in self.skipped)

    def raise_if_skipped(self) -> None:
        """Raise ``RuntimeError`` listing the images :meth:`filter` set aside; nothing if there were none."""
        if self.skipped:
            raise RuntimeError(
                f"{len(self.skipped)} image(s) could not be read and were skipped (the others were processed):\n"
                f"{self._listing()}"
            )


def _stem_and_ending(path: str) -> tuple[str, str]:
    """File name without its extension as MONAI's ``create_file_basename`` strips it (one extension, ``.gz`` with the
    one before), and that extension."""
    stem, ending = os.path.splitext(os.path.basename(path))
    if ending == ".gz":
        stem, inner = os.path.splitext(stem)
        ending = inner + ending
    return stem, ending


class UniqueOutputNames:
    """``output_name_formatter`` for MONAI's ``SaveImage(d)``: inputs that share a name get distinct output names.

    MONAI names an output after its input's file name without the extension, so ``a.png`` and ``a.jpg`` would both
    write ``a_seg.png``. Here inputs whose name is unique keep MONAI's name; inputs that share a name keep their
    extension in it (``a_png_seg.png``, ``a_jpg_seg.png``), and inputs still not told apart (the same file name in
    two folders of a datalist) get a number as well (``a_png_2_seg.png``), in datalist order.

    Args:
        datalist: the inference datalist (the files to be saved).
        key: the datalist key of the image path.
    """

    def __init__(self, datalist: Sequence[dict], key: str = "image") -> None:
        paths = [str(item[key]) for item in datalist]
        stems = {p: _stem_and_ending(p) for p in paths}
        count = Counter(stem for stem, _ in stems.values())
        taken = {stem for stem, n in count.items() if n == 1}
        self.names: dict[str, str] = {}
        for path in dict.fromkeys(paths):
            stem, ending = stems[path]
            if count[stem] == 1:
                continue
            base = f"{stem}_{ending.lstrip('.').replace('.', '_')}" if ending else stem
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
            self.names[path] = name + ending  # the extension is what MONAI strips

    def __call__(self, metadict: dict, saver: object) -> dict:
        """MONAI's :func:`~monai.data.folder_layout.default_name_formatter` with the subject renamed if needed."""
        out = default_name_formatter(metadict, saver)
        out["subject"] = self.names.get(out["subject"], out["subject"])
        return out
