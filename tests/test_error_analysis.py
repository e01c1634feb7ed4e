"""scripts/error_analysis.py: per-image, boundary-band and gland-size scores on hand-built masks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import error_analysis  # noqa: E402


def _case(tmp_path: Path) -> tuple[list[dict], dict[str, Path]]:
    """One 40x60 image with a large gland (20x20 = 400 px) and a small one (4x4 = 16 px); two prediction folders."""
    truth = np.zeros((40, 60), np.uint8)
    inst = np.zeros_like(truth)
    inst[5:25, 5:25] = 1
    inst[30:34, 40:44] = 2
    truth[inst > 0] = 255
    for sub in ("img", "labelcol", "labelinst"):
        (tmp_path / sub).mkdir()
    Image.fromarray(truth).save(tmp_path / "labelcol" / "a.png")
    Image.fromarray(inst).save(tmp_path / "labelinst" / "a.png")
    Image.fromarray(truth).convert("RGB").save(tmp_path / "img" / "a.png")
    perfect, misses_small = tmp_path / "perfect", tmp_path / "misses_small"
    perfect.mkdir(), misses_small.mkdir()
    Image.fromarray(truth).save(perfect / "a_seg.png")
    pred = truth.copy()
    pred[30:34, 40:44] = 0
    Image.fromarray(pred).save(misses_small / "a_seg.png")
    items = [{"image": str(tmp_path / "img" / "a.png"), "label": str(tmp_path / "labelcol" / "a.png")}]
    return items, {"perfect": perfect, "misses small": misses_small}


def test_scores_by_hand(tmp_path):
    items, preds = _case(tmp_path)
    summary, per_image = error_analysis.analyse(items, preds, band=1, bins=(100, 1000))
    assert per_image["a"]["perfect"] == 1.0
    # Dice = 2 * 400 / (400 + 416)
    assert per_image["a"]["misses small"] == pytest.approx(800 / 816)
    assert summary["perfect"]["found"] == [1, 1, 0] and summary["perfect"]["total"] == [1, 1, 0]
    assert summary["misses small"]["found"] == [0, 1, 0]
    # the whole 4x4 gland lies in the 1-pixel band around its own outline: its band Dice is 0 for the missed gland
    band = error_analysis.boundary_band(np.asarray(Image.open(items[0]["label"])) > 0, 1)
    assert band[30:34, 40:44].all() and not band[15, 15]
    assert summary["misses small"]["boundary"][0] < 1.0 and summary["perfect"]["boundary"][0] == 1.0
    text = error_analysis.markdown(summary, per_image, band=1, bins=(100, 1000))
    assert "| misses small | 98.04 |" in text and "| a | 100.00 | 98.04 |" in text


def test_missing_or_mis_sized_mask_names_the_file(tmp_path):
    items, preds = _case(tmp_path)
    (preds["perfect"] / "a_seg.png").unlink()
    with pytest.raises(FileNotFoundError, match="a_seg.png"):
        error_analysis.analyse(items, preds, band=1, bins=(100, 1000))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(preds["perfect"] / "a_seg.png")
    with pytest.raises(ValueError, match="a_seg.png: mask"):
        error_analysis.analyse(items, preds, band=1, bins=(100, 1000))
