#!/usr/bin/env python
"""Convert an official GlaS or MoNuSeg download into the MedT layout the bundle reads.

Output: ``<out>/<split>/img/<name>.png`` (RGB), ``<out>/<split>/labelcol/<name>.png`` (uint8 0/255) and
``<out>/<split>/labelinst/<name>.png`` (instance maps: 0 background, one id per gland / nucleus; 8-bit, 16-bit
when there are more than 255 objects), i.e. ``dataset_splits("medt", root=<out>)`` / bundle ``--dataset medt
--data_dir <out>``.

- GlaS (https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/): ``--glas <unzipped folder>``;
  ``train_N`` -> ``train/``, ``testA_N`` and ``testB_N`` -> ``test/``; instance masks -> binary (and kept as
  ``labelinst/``).
  Cite Sirinukunwattana et al., Medical Image Analysis 2017, and Sirinukunwattana et al., IEEE TMI 2015.
  Research use only, no commercial use.
- MoNuSeg (https://monuseg.grand-challenge.org/Data/): ``--monuseg-train <folder>`` (with
  ``Tissue Images/`` and ``Annotations/``) and optionally ``--monuseg-test <folder>``; XML polygons
  are rasterised (masks and instance maps). Cite Kumar et al., IEEE TMI 2017 and 2020. CC BY-NC-SA 4.0.

The output is written into a temporary folder next to ``<out>`` and renamed at the end; on any
error the temporary folder is removed, so ``<out>`` is either complete or absent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from medt_monai.data import INSTANCE_KEY, glas_datalist, monuseg_datalist


def _write_split(items: list[dict], dest: Path) -> None:
    for sub in ("img", "labelcol", "labelinst"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for item in items:
        name = Path(item["image"]).stem
        try:
            with Image.open(item["image"]) as im:
                im.convert("RGB").save(dest / "img" / f"{name}.png")
            with Image.open(item["label"]) as m:
                mask = (np.asarray(m.convert("L")) > 0).astype(np.uint8) * 255
            with Image.open(item[INSTANCE_KEY]) as m:
                inst = np.asarray(m)
        except OSError as e:
            raise ValueError(f"{item['image']}: cannot convert ({e}).") from e
        Image.fromarray(mask, mode="L").save(dest / "labelcol" / f"{name}.png")
        inst = inst.astype(np.uint16 if inst.max() > 255 else np.uint8)  # 16-bit only for > 255 objects
        Image.fromarray(inst).save(dest / "labelinst" / f"{name}.png")


def prepare(
    out: str | Path,
    glas: str | Path | None = None,
    monuseg_train: str | Path | None = None,
    monuseg_test: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the official downloads into the MedT layout at ``out`` (atomically).

    Args:
        out: output folder (must not exist unless ``overwrite``).
        glas: unzipped official GlaS folder (``train_N.bmp`` ...).
        monuseg_train: official MoNuSeg training folder.
        monuseg_test: official MoNuSeg test folder (tif + xml side by side, or the training layout).
        overwrite: replace an existing ``out``.

    Raises:
        ValueError: neither or both of GlaS / MoNuSeg given, or a bad input file (names it).
        FileExistsError: ``out`` exists and not ``overwrite``.
    """
    if (glas is None) == (monuseg_train is None):
        raise ValueError("give exactly one of --glas or --monuseg-train.")
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: output folder exists; pass --overwrite to replace it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        masks = tmp / ".masks"
        if glas is not None:
            g = glas_datalist(glas, cache_dir=masks, verify="full")
            _write_split(g["train"], tmp / "train")
            if g["testA"] or g["testB"]:
                _write_split(g["testA"] + g["testB"], tmp / "test")
        else:
            _write_split(monuseg_datalist(monuseg_train, cache_dir=masks / "train", verify="full"), tmp / "train")
            if monuseg_test is not None:
                _write_split(monuseg_datalist(monuseg_test, cache_dir=masks / "test", verify="full"), tmp / "test")
        shutil.rmtree(masks, ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (MedT layout)")
    p.add_argument("--glas", help="unzipped official GlaS folder")
    p.add_argument("--monuseg-train", help="official MoNuSeg training folder")
    p.add_argument("--monuseg-test", help="official MoNuSeg test folder")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    try:
        out = prepare(a.out, a.glas, a.monuseg_train, a.monuseg_test, a.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
