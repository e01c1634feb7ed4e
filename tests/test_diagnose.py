"""scripts/diagnose.py: the stain-density probe on a hand-built image and a network that marks dark pixels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import diagnose  # noqa: E402


class DarkIsForeground(torch.nn.Module):
    """Foreground wherever the mean intensity of a pixel is below 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros_like(x[:, 0]), 0.5 - x.mean(1)], 1)


def test_optical_density_scale_by_hand():
    x = torch.tensor([0.25, 0.5, 1.0, 0.0])
    assert diagnose.scale_optical_density(x, 0.5).tolist() == pytest.approx([0.5, 0.5**0.5, 1.0, 1e-3**0.5])
    assert diagnose.scale_optical_density(x, 2.0).tolist() == pytest.approx([0.0625, 0.25, 1.0, 1e-6])


def test_stain_sensitivity_scores_the_split_with_each_density(tmp_path):
    # a white image with a grey (0.6) square that the label marks: dark enough to be found only at factor 2
    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:24, 8:24] = 153
    label = np.zeros((32, 32), np.uint8)
    label[8:24, 8:24] = 255
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(label).save(tmp_path / "a_mask.png")
    items = [{"image": str(tmp_path / "a.png"), "label": str(tmp_path / "a_mask.png")}]
    preprocessing = diagnose.bundle({"img_size": 32}).get_parsed_content("validate#preprocessing")
    samples = diagnose.network_inputs(preprocessing, items)
    report = diagnose.stain_sensitivity(DarkIsForeground(), samples, [0.5, 1.0, 2.0])
    # 0.6 ** 0.5 = 0.77 and 0.6 stay above 0.5 (nothing found: Dice 0); 0.6 ** 2 = 0.36 is found exactly (Dice 100)
    assert report == pytest.approx({0.5: 0.0, 1.0: 0.0, 2.0: 100.0})


def test_resolution_ceiling_by_hand():
    # a 64x64 mask whose left half is foreground survives the trip to 32x32 exactly (Dice 1); a one-pixel column
    # at 64x64 vanishes at 8x8 (Dice 0: 2 * 0 / (64 + 0))
    half = torch.zeros(64, 64, dtype=torch.bool)
    half[:, :32] = True
    column = torch.zeros(64, 64, dtype=torch.bool)
    column[:, 10] = True
    assert diagnose.resolution_ceiling([half], 32) == pytest.approx([1.0])
    assert diagnose.resolution_ceiling([column], 8) == pytest.approx([0.0])
