"""Datalists and datasets on the real GlaS / MoNuSeg data in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medt_monai.data as D

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
GLAS = SHARED / "glas"
MONUSEG = SHARED / "monuseg"

pytestmark = pytest.mark.realdata


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"real data not found at {path.resolve()} (see ../shared/data/README.md)")


def test_glas_train_pairs():
    _need(GLAS / "train")
    items = D.medt_layout_datalist(GLAS / "train")
    assert len(items) == 85
    s = D.dataset_splits("glas", root=GLAS, seed=0)
    assert sum(len(v) for v in s.values()) == 85 and len(s["validation"]) > 0 and len(s["test"]) > 0
    xf = D.get_transforms("eval", img_size=128)
    for item in items[::17]:
        label = xf(item)["label"]
        assert set(label.unique().tolist()) == {0.0, 1.0}


def test_glas_masks_binary_all():
    _need(GLAS / "train")
    for item in D.medt_layout_datalist(GLAS / "train"):
        assert set(np.unique(np.asarray(Image.open(item["label"]))).tolist()) <= {0, 255}, item["label"]


def test_glas_cache_dataset_shape_dtype():
    _need(GLAS / "train")
    s = D.dataset_splits("glas", root=GLAS, seed=0)
    ds = D.get_dataset(s["train"][:6], D.get_transforms("train", img_size=128, in_channels=3))
    out = ds[0]
    assert out["image"].shape == (3, 128, 128) and out["image"].dtype == torch.float32
    assert out["label"].shape == (1, 128, 128) and out["label"].dtype == torch.float32
    assert set(out["label"].unique().tolist()) <= {0.0, 1.0}


def test_monuseg_xml_reproduces_masks():  # all 14 test XMLs, ~10 s
    _need(MONUSEG / "test" / "xml")
    xmls = sorted((MONUSEG / "test" / "xml").glob("*.xml"))
    assert len(xmls) == 14
    for xml in xmls:
        ref = np.asarray(Image.open(MONUSEG / "test" / "labelcol" / f"{xml.stem}.png")) > 0
        ours = D.rasterize_xml(xml, ref.shape) > 0
        iou = (ref & ours).sum() / (ref | ours).sum()
        assert iou >= 0.85, (xml.name, iou)
