"""Flip test-time augmentation (``medt_monai.inferers.FlipInferer``), used by the bundle's ``--tta true`` (and with
``--tta_rotations true`` the 90-degree rotations too)."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from medt_monai.inferers import FlipInferer


def _position_net(x: torch.Tensor) -> torch.Tensor:
    """Not flip-equivariant: the output depends on where a pixel is (adds a horizontal ramp)."""
    ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x[:, :1])
    return torch.cat([x[:, :1] * 2 + ramp, -x[:, :1]], dim=1)


def test_flip_average_equals_the_hand_computed_mean_of_the_four_flips():
    x = torch.randn(2, 3, 8, 6)
    expected = (
        _position_net(x)
        + _position_net(x.flip(2)).flip(2)
        + _position_net(x.flip(3)).flip(3)
        + _position_net(x.flip(2, 3)).flip(2, 3)
    ) / 4
    out = FlipInferer()(x, _position_net)
    assert out.shape == (2, 2, 8, 6)
    torch.testing.assert_close(out, expected)
    # by hand for channel 0 (2x + ramp): each flip is undone, so 2x stays and the ramp j, j, W-1-j, W-1-j averages
    # to (W - 1) / 2 everywhere
    torch.testing.assert_close(out[:, 0], 2 * x[:, 0] + (6 - 1) / 2)


def test_transpose_averages_the_eight_symmetries_of_the_square():
    x = torch.randn(2, 3, 8, 6)  # not square: each transposed copy is 6x8 and is swapped back
    flips = ((), (2,), (3,), (2, 3))
    expected = sum(_position_net(x.flip(f)).flip(f) if f else _position_net(x) for f in flips)
    xt = x.transpose(2, 3)
    expected = expected + sum(
        (_position_net(xt.flip(f)).flip(f) if f else _position_net(xt)).transpose(2, 3) for f in flips
    )
    out = FlipInferer(transpose=True)(x, _position_net)
    assert out.shape == (2, 2, 8, 6)
    torch.testing.assert_close(out, expected / 8)
    # by hand for channel 0 (2x + a ramp along the last axis): the 4 plain copies average the ramp to (W - 1) / 2,
    # the 4 transposed ones run it along the height, (H - 1) / 2
    torch.testing.assert_close(out[:, 0], 2 * x[:, 0] + ((6 - 1) / 2 + (8 - 1) / 2) / 2)


def test_flip_equivariant_network_gives_the_plain_output():
    conv = torch.nn.Conv2d(3, 2, kernel_size=1)
    x = torch.randn(1, 3, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(FlipInferer()(x, conv), SimpleInferer()(x, conv))


def test_wraps_a_sliding_window_inferer():
    conv = torch.nn.Conv2d(3, 2, kernel_size=3, padding=1)
    x = torch.randn(1, 3, 40, 28)
    window = SlidingWindowInferer(roi_size=(16, 16), sw_batch_size=2, overlap=0.25)
    with torch.no_grad():
        out = FlipInferer(window)(x, conv)
        manual = sum(window(x.flip(d), conv).flip(d) if d else window(x, conv) for d in ((), (2,), (3,), (2, 3))) / 4
    assert out.shape == (1, 2, 40, 28)
    torch.testing.assert_close(out, manual)


def test_rejects_zero_spatial_dims_and_transpose_of_one_axis():
    with pytest.raises(ValueError, match="spatial_dims"):
        FlipInferer(spatial_dims=0)
    with pytest.raises(ValueError, match="transpose needs at least 2 spatial axes"):
        FlipInferer(spatial_dims=1, transpose=True)


def test_sliding_windows_pad_small_images_by_reflection_at_any_size():
    """``network_size_inferer`` with ``image_scale``: windows of 16 over images of 12x10 (torch reflects them) and 5x3
    (under half a window: NumPy's repeated reflection); the network sees what reflection padding gives, the output
    has the image's size."""
    import numpy as np

    from medt_monai.inferers import ReflectSlidingWindowInferer, network_size_inferer

    inferer = network_size_inferer(16, image_scale=0.5)
    assert isinstance(inferer, ReflectSlidingWindowInferer)
    seen = []

    def net(x):
        seen.append(x.clone())
        return x * 2

    for shape in ((12, 10), (5, 3)):
        seen.clear()
        x = torch.rand(1, 2, *shape)
        out = inferer(x, net)
        assert out.shape == x.shape
        torch.testing.assert_close(out, 2 * x)
        d = [16 - s for s in shape]
        expected = np.pad(
            x.numpy(), [(0, 0), (0, 0), (d[0] // 2, d[0] - d[0] // 2), (d[1] // 2, d[1] - d[1] // 2)], "reflect"
        )
        torch.testing.assert_close(seen[0], torch.as_tensor(expected))


def test_networks_trained_on_montages_see_glass_past_the_image():
    """``training_crops="montage"``: a 10x10 image of zeros in windows of 16 reads glass around it; a network that
    answers every pixel with its window's mean gives 156 / 256 of the glass intensity (a hand count: 256 pixels, 100
    of them image); an unknown ``training_crops`` is named."""
    import pytest

    from medt_monai.inferers import GLASS_INTENSITY, network_size_inferer

    inferer = network_size_inferer(16, image_scale=0.5, training_crops="montage")
    out = inferer(torch.zeros(1, 1, 10, 10), lambda x: x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone())
    assert out.shape == (1, 1, 10, 10)
    torch.testing.assert_close(out, torch.full_like(out, GLASS_INTENSITY * 156 / 256))
    with pytest.raises(ValueError, match="training_crops must be one of 'image', 'montage', got 'glass'"):
        network_size_inferer(16, image_scale=0.5, training_crops="glass")
