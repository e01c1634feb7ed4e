"""Flip test-time augmentation (``medt_monai.inferers.FlipInferer``), used by the bundle's ``--tta true`` (and with
``--tta_rotations true`` the 90-degree rotations too)."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from medt_monai.inferers import FlipInferer, TransposedInferer


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


def _window_rows(x: torch.Tensor) -> torch.Tensor:
    """Depends on where the window falls: each pixel's row inside its window."""
    rows = torch.arange(x.shape[-2], dtype=x.dtype).view(1, 1, -1, 1)
    return rows.expand(x.shape[0], 1, *x.shape[-2:]).clone()


def test_grid_shifts_average_the_window_grids_by_hand():
    """Windows of 128 at a quarter overlap step 96 px; ``shifts=2`` adds the grids moved by 48 px. On a 128x128
    image the unmoved grid is one window (a pixel in row r reads r); moved by 48 rows the image is padded to 176 and
    run as windows at 0 and 48 (constant weights), so row r reads (r + 48 + r) / 2 for r < 80 and r below. Averaged
    over the four grids (two moved along the rows): r + 12 for r < 80, r from 80 on."""
    from medt_monai.inferers import GridShiftInferer

    window = SlidingWindowInferer(roi_size=(128, 128), sw_batch_size=4, overlap=0.25, mode="constant", cval=0.5)
    inferer = GridShiftInferer(window, shifts=2)
    assert inferer.offsets(2) == [(0, 0), (0, 48), (48, 0), (48, 48)]
    out = inferer(torch.rand(1, 3, 128, 128), _window_rows)
    assert out.shape == (1, 1, 128, 128)
    r = torch.arange(128.0)
    torch.testing.assert_close(out[0, 0], torch.where(r < 80, r + 12, r)[:, None].expand(128, 128))
    torch.testing.assert_close(GridShiftInferer(window, shifts=1)(torch.rand(1, 3, 128, 128), _window_rows)[0, 0],
                               r[:, None].expand(128, 128))  # fmt: skip


def test_grid_shifts_pad_as_the_windows_do():
    """The moved grids read glass before a montage-trained network's image and a reflection before an image-trained
    one's; a pointwise network gives its plain output either way, on images smaller than a window too."""
    import numpy as np

    from medt_monai.inferers import GLASS_INTENSITY, GridShiftInferer, network_size_inferer

    seen = []

    def net(x):
        seen.append(x.clone())
        return x * 2

    x = torch.rand(1, 2, 12, 10)
    for crops in ("montage", "image"):
        inferer = network_size_inferer(16, image_scale=0.5, training_crops=crops, grid_shifts=2)
        assert isinstance(inferer, GridShiftInferer) and inferer.offsets(2)[-1] == (6, 6)  # step 12, half of it
        seen.clear()
        torch.testing.assert_close(inferer(x, net), 2 * x)
        moved = seen[-1][:1]  # the last grid (moved by 6 rows and 6 columns): its first window, at the top-left
        if crops == "montage":
            assert torch.all(moved[..., :6, :] == GLASS_INTENSITY) and torch.all(moved[..., :, :6] == GLASS_INTENSITY)
        else:
            reflected = np.pad(x.numpy(), [(0, 0), (0, 0), (6, 0), (6, 0)], "reflect")
            torch.testing.assert_close(moved, torch.as_tensor(reflected)[..., :16, :16])
    assert not isinstance(network_size_inferer(16, image_scale=0.5, grid_shifts=1), GridShiftInferer)


def test_grid_shifts_name_bad_values():
    from medt_monai.inferers import GridShiftInferer, network_size_inferer

    window = SlidingWindowInferer(roi_size=(16, 16))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="shifts \\(window grids per axis\\) must be an int >= 1"):
            GridShiftInferer(window, bad)
    with pytest.raises(ValueError, match="need a SlidingWindowInferer, got SimpleInferer"):
        GridShiftInferer(SimpleInferer(), 2)
    with pytest.raises(ValueError, match="'constant' or 'reflect'; got 'replicate'"):
        GridShiftInferer(SlidingWindowInferer(roi_size=(16, 16), padding_mode="replicate"), 2)
    with pytest.raises(ValueError, match="shifts \\(window grids per axis\\) must be an int >= 1, got 0"):
        network_size_inferer(16, image_scale=0.5, grid_shifts=0)
    # a whole image squeezed to the network's size has no window grid (weights of bundles 0.13-0.14, the paper recipe)
    assert isinstance(network_size_inferer(16, image_scale=None, grid_shifts=2), SimpleInferer)


def test_transposed_inferer_runs_the_network_on_the_swapped_axes():
    """Slide blocks ((C, H, W) from WSIReader) reach the network as PNG tiles do ((C, W, H) from PILReader)."""
    x = torch.randn(2, 3, 8, 6)
    out = TransposedInferer(SimpleInferer())(x, _position_net)
    assert out.shape == (2, 2, 8, 6)
    # by hand: the ramp the network adds along the last axis of what it sees runs along the height of the input
    torch.testing.assert_close(out[:, 0], 2 * x[:, 0] + torch.arange(8.0)[:, None])
    torch.testing.assert_close(out[:, 1], -x[:, 0])
    # flips inside: the flip average of the transposed input, swapped back
    torch.testing.assert_close(
        TransposedInferer(FlipInferer())(x, _position_net),
        FlipInferer()(x.transpose(2, 3), _position_net).transpose(2, 3),
    )
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        TransposedInferer(SimpleInferer())(torch.randn(1, 3, 4, 4, 4), _position_net)
