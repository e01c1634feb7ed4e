"""Training windows cut from montages of the training images on glass (``--training_crops montage``)."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Compose, EnsureTyped, RandFlipd

from medt_monai.data import MontageDataset, get_transforms, training_dataset
from medt_monai.inferers import GLASS_INTENSITY

# five images of one grey level each (0.1 ... 0.5), labels equal to 1 + their index, of different sizes
SHAPES = [(150, 100), (104, 155), (120, 130), (140, 90), (100, 100)]


def _data():
    return [
        {"image": torch.full((3, *shape), 0.1 * (k + 1)), "label": torch.full((1, *shape), float(k + 1))}
        for k, shape in enumerate(SHAPES)
    ]


def _levels(window):
    return {round(v, 4) for v in window["image"][0].unique().tolist()}


def test_every_window_holds_its_own_image_others_and_glass_with_labels_zero_on_glass():
    """Item ``i``'s window holds image ``i``, otherwise only other images and glass; label 0 exactly on the glass;
    over many draws the windows hold other images (montages) and glass (the gaps and the image alone)."""
    dataset = MontageDataset(_data(), Compose([EnsureTyped(["image", "label"])]), img_size=64, seed=3)
    assert len(dataset) == len(SHAPES)
    glass, all_levels = round(GLASS_INTENSITY, 4), set()
    for _ in range(40):
        for i in range(len(SHAPES)):
            window = dataset[i]
            assert window["image"].shape == (3, 64, 64) and window["label"].shape == (1, 64, 64)
            levels = _levels(window)
            assert round(0.1 * (i + 1), 4) in levels
            assert levels <= {glass} | {round(0.1 * (k + 1), 4) for k in range(len(SHAPES))}
            on_glass = window["image"][0] == window["image"][0].new_tensor(GLASS_INTENSITY)
            assert torch.equal(window["label"][0] == 0, on_glass)
            # the label is the image it lies on
            torch.testing.assert_close(window["label"][0][~on_glass], window["image"][0][~on_glass] * 10)
            all_levels |= levels
    assert all_levels == {glass} | {round(0.1 * (k + 1), 4) for k in range(len(SHAPES))}


def test_an_image_alone_sits_on_glass_and_the_montage_has_no_frame():
    """``p_alone=1``: only the item's image and glass; ``p_alone=0`` with no gap: images of at least a window's size
    tile the montage, so a window never holds glass beyond the smaller images' cells."""
    alone = MontageDataset(_data(), Compose([EnsureTyped(["image", "label"])]), img_size=64, p_alone=1.0, seed=0)
    for i in range(len(SHAPES)):
        assert _levels(alone[i]) <= {round(GLASS_INTENSITY, 4), round(0.1 * (i + 1), 4)}
    same = [{"image": torch.full((3, 80, 80), 0.1 * (k + 1)), "label": torch.ones(1, 80, 80)} for k in range(4)]
    tight = MontageDataset(same, Compose([EnsureTyped(["image", "label"])]), img_size=64, max_gap=0, p_alone=0.0)
    for _ in range(20):
        for i in range(4):
            assert round(GLASS_INTENSITY, 4) not in _levels(tight[i])


def test_windows_follow_the_seed_and_the_random_transforms_run_on_them():
    """The same seed cuts the same windows; the chain's random part (a flip) runs on the window, after the cache."""
    chain = Compose([EnsureTyped(["image", "label"]), RandFlipd(["image", "label"], prob=1.0, spatial_axis=0)])
    plain = Compose([EnsureTyped(["image", "label"])])
    a, b, c = (MontageDataset(_data(), t, img_size=64, seed=7) for t in (chain, chain, plain))
    for i in range(len(SHAPES)):
        wa, wb, wc = a[i], b[i], c[i]
        assert torch.equal(wa["image"], wb["image"]) and torch.equal(wa["label"], wb["label"])
        assert torch.equal(wa["image"], torch.flip(wc["image"], dims=[1]))


def test_a_montage_smaller_than_a_window_is_padded_with_glass():
    small = [{"image": torch.full((3, 10, 12), 0.1 * (k + 1)), "label": torch.ones(1, 10, 12)} for k in range(4)]
    dataset = MontageDataset(small, Compose([EnsureTyped(["image", "label"])]), img_size=64, p_alone=0.0, seed=0)
    window = dataset[0]
    assert window["image"].shape == (3, 64, 64)
    assert round(GLASS_INTENSITY, 4) in _levels(window) and round(0.1, 4) in _levels(window)


def test_bad_settings_are_named():
    plain = Compose([EnsureTyped(["image", "label"])])
    with pytest.raises(ValueError, match="at least 4 training items, got 3"):
        MontageDataset(_data()[:3], plain)
    with pytest.raises(ValueError, match="p_alone in"):
        MontageDataset(_data(), plain, p_alone=1.5)
    with pytest.raises(ValueError, match="training_crops must be one of 'image', 'montage', got 'tiles'"):
        training_dataset(_data(), plain, training_crops="tiles")
    with pytest.raises(ValueError, match="needs image_scale"):
        get_transforms("train", training_crops="montage")
    with pytest.raises(ValueError, match="crops_per_image=1"):
        get_transforms("train", image_scale=0.2, crops_per_image=2, training_crops="montage")


def test_montage_chain_has_no_crops_and_training_dataset_picks_the_dataset():
    """``get_transforms("train", training_crops="montage")`` leaves the cropping to the dataset; ``training_dataset``
    gives MONAI's ``CacheDataset`` for image crops and a :class:`MontageDataset` for montages."""
    from monai.data import CacheDataset
    from monai.transforms import RandSpatialCropd

    image_chain = get_transforms("train", image_scale=0.2)
    montage_chain = get_transforms("train", image_scale=0.2, training_crops="montage")
    assert any(isinstance(t, RandSpatialCropd) for t in image_chain.transforms)
    assert not any(isinstance(t, RandSpatialCropd) for t in montage_chain.transforms)
    plain = Compose([EnsureTyped(["image", "label"])])
    assert type(training_dataset(_data(), plain)) is CacheDataset
    assert isinstance(training_dataset(_data(), plain, training_crops="montage", img_size=64), MontageDataset)
