"""Datalists, transforms, demo set and bad-input handling, on small fixtures the tests create."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped, Invertd, LoadImaged, Resized, ScaleIntensityRanged
from PIL import Image

import medt_monai.data as D
from medt_monai.data.images import image_size
from medt_monai.transforms import (
    MaskToLabel,
    MaskToLabeld,
    RemoveSmallComponents,
    RemoveSmallComponentsd,
    ScaleIntensityFullRange,
    ScaleIntensityFullRanged,
    ToChannels,
    ToChannelsd,
    mask_postprocessing,
)
from medt_monai.utils.files import atomic_save_png

# ---------------------------------------------------------------- helpers


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def _pair_folder(root: Path, names: list[str], size: tuple[int, int] = (24, 32), img="images", msk="masks") -> Path:
    rng = np.random.default_rng(0)
    for n in names:
        _png(root / img / f"{n}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        m = np.zeros(size, np.uint8)
        m[4:12, 5:20] = 255
        _png(root / msk / f"{n}.png", m)
    return root


def _mt(arr, name: str = "/data/x.png") -> MetaTensor:
    return MetaTensor(torch.as_tensor(arr), meta={"filename_or_obj": name})


# ---------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    "c_in,channels,expect_c", [(1, 3, 3), (1, 1, 1), (2, 1, 1), (2, 3, 3), (3, 3, 3), (3, 1, 1), (4, 3, 3), (4, 1, 1)]
)
def test_to_channels_shapes(c_in, channels, expect_c):
    x = torch.randint(0, 255, (c_in, 5, 6)).to(torch.uint8)
    out = ToChannelsd("image", channels=channels)({"image": _mt(x)})["image"]
    assert out.shape == (expect_c, 5, 6) and out.dtype == torch.float32


def test_to_channels_values():
    rgb = torch.tensor([255.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(ToChannels(1)(rgb), torch.full((1, 2, 2), 0.299 * 255))
    rgba = torch.cat([rgb, torch.zeros(1, 2, 2)])
    assert torch.equal(ToChannels(3)(rgba), rgb.float())  # alpha dropped, colours unchanged
    gray16 = torch.full((1, 2, 2), 60000, dtype=torch.int32)
    out = ToChannels(3)(gray16)
    assert out.shape == (3, 2, 2) and float(out.max()) == 60000.0  # no clipping of 16-bit data


def test_to_channels_errors_name_file():
    with pytest.raises(ValueError, match=r"/data/five\.tif.*5 channels"):
        ToChannels(3)(_mt(torch.zeros(5, 4, 4), "/data/five.tif"))
    with pytest.raises(ValueError, match=r"/data/flat\.png.*channel-first"):
        ToChannels(3)(_mt(torch.zeros(4, 4), "/data/flat.png"))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        ToChannels(2)


def test_mask_to_label_scales():
    for arr in ([0, 255], [0, 1], [0, 65535]):
        out = MaskToLabel()(torch.tensor(arr, dtype=torch.float32).view(1, 1, 2))
        assert out.tolist() == [[[0.0, 1.0]]]
    noisy = torch.tensor([0, 3, 20, 120, 140, 240, 255], dtype=torch.float32).view(1, 1, -1)  # JPEG-like
    assert MaskToLabel()(noisy).flatten().tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert MaskToLabel(threshold=0.05)(noisy).flatten().tolist() == [0, 0, 1, 1, 1, 1, 1]
    inst = torch.tensor([0, 1, 2, 17], dtype=torch.float32).view(1, 1, -1)  # instance ids
    assert MaskToLabel(threshold=None)(inst).flatten().tolist() == [0, 1, 1, 1]
    assert MaskToLabel(binary=False)(inst).flatten().tolist() == [0, 1, 2, 17]
    with pytest.raises(ValueError, match="threshold"):
        MaskToLabel(threshold=1.5)


def test_mask_to_label_colour_masks():
    rgb = torch.zeros(3, 2, 2)
    rgb[0, 0, 0] = 255  # red foreground pixel
    rgb[1, 1, 1] = 200  # green foreground pixel
    out = MaskToLabeld("label")({"label": rgb})["label"]
    assert out.shape == (1, 2, 2) and out.flatten().tolist() == [1, 0, 0, 1]
    rgba = torch.cat([rgb, torch.full((1, 2, 2), 255.0)])
    assert MaskToLabel()(rgba).flatten().tolist() == [1, 0, 0, 1]
    with pytest.raises(ValueError, match=r"/m/col\.png.*binary=False"):
        MaskToLabel(binary=False)(_mt(rgb, "/m/col.png"))


def test_mask_to_label_jpeg_noisy_file(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32]
    m = (((yy - 15.3) ** 2 + (xx - 17.1) ** 2) < 81).astype(np.uint8) * 255
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=60)
    noisy = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert len(np.unique(noisy)) > 2  # really JPEG-noisy
    out = MaskToLabel()(torch.as_tensor(noisy[None].astype(np.float32)))
    assert torch.equal(out[0].bool(), torch.as_tensor(m > 0))


def test_remove_small_components_clears_specks_and_keeps_the_classes_of_the_rest():
    label = torch.zeros(1, 8, 10)
    label[0, 0:3, 0:3] = 1  # 9 px of class 1
    label[0, 0:2, 6:8] = 2  # 4 px of class 2 ...
    label[0, 2, 6] = 1  # ... touching 1 px of class 1: one 5-px component
    label[0, 5, 5] = label[0, 6, 6] = 1  # a diagonal pair: 2 px with 8 neighbours, two 1-px ones with 4
    kept = RemoveSmallComponentsd("pred", min_size=5)({"pred": _mt(label, "/p/a.png")})["pred"]
    assert isinstance(kept, MetaTensor) and kept.meta["filename_or_obj"] == "/p/a.png"
    expected = label.clone()
    expected[0, 5:7, 5:7] = 0
    assert torch.equal(kept, expected)  # the 5-px two-class component stays whole, with both classes
    assert torch.equal(RemoveSmallComponents(6)(label)[0, 0:3, 6:8], torch.zeros(3, 2))  # the 5-px one goes too
    assert RemoveSmallComponents(2)(label)[0, 5:7, 5:7].sum() == 2  # 8-connected pair: 2 px, not fewer than 2
    assert RemoveSmallComponents(2, connectivity=1)(label)[0, 5:7, 5:7].sum() == 0  # two 1-px components
    assert torch.equal(RemoveSmallComponents(0)(label), label)
    assert torch.equal(RemoveSmallComponents(6.0)(label), RemoveSmallComponents(6)(label))  # as a command line gives it
    assert torch.equal(RemoveSmallComponents(np.int64(6))(label), RemoveSmallComponents(6)(label))
    for bad in (-1, 2.5, True, "6", None):  # the object metrics' rule (medt_monai.metrics.instances.min_object_size)
        with pytest.raises(ValueError, match="min_size must be an integer >= 0"):
            RemoveSmallComponents(bad)
    with pytest.raises(ValueError, match="connectivity must be None, 1 or 2"):
        RemoveSmallComponents(5, connectivity=3)
    with pytest.raises(ValueError, match=r"/p/b\.png: expected a one-channel 2D label map"):
        RemoveSmallComponents(5)(_mt(torch.zeros(2, 8, 10), "/p/b.png"))  # one-hot


def test_mask_postprocessing_gives_the_mask_at_the_image_size_with_holes_filled_and_specks_removed():
    """The bundle's one chain from logits to the written/scored mask (evaluate.json, inference.json)."""
    pre = Compose([Resized("image", spatial_size=(8, 8))])
    fg = torch.zeros(8, 8)
    fg[1:6, 1:6] = 1  # a 25-px square ...
    fg[3, 3] = 0  # ... with a 1-px hole
    fg[7, 7] = 1  # a 1-px speck

    def run(image: torch.Tensor, foreground: torch.Tensor, **options) -> torch.Tensor:
        d = pre({"image": _mt(image, "/p/a.png")})
        d["pred"] = torch.stack([1 - foreground, foreground]) * 4.0 - 2.0  # logits of +-2
        return mask_postprocessing(pre, **options)(d)["pred"]

    same_size = torch.zeros(3, 8, 8)  # the resize is the identity: exact masks
    assert torch.equal(run(same_size, fg), fg[None])  # the argmax, nothing removed by default
    expected = fg.clone()
    expected[3, 3], expected[7, 7] = 1, 0
    assert torch.equal(run(same_size, fg, fill_holes="true", min_size=2), expected[None])  # a command line's "true"
    only_filled, only_cleaned = run(same_size, fg, fill_holes=True), run(same_size, fg, min_size=25)
    assert only_filled[0, 3, 3] == 1 and only_filled[0, 7, 7] == 1
    assert only_cleaned.sum() == 0  # the square has 24 px without its hole
    assert run(same_size, fg, fill_holes=True, min_size=25).sum() == 25  # filled first, then counted
    # the probabilities go back through the resize: a 6 x 10 image gets a 6 x 10 mask
    assert torch.equal(run(torch.zeros(3, 6, 10), torch.ones(8, 8)), torch.ones(1, 6, 10))


def test_network_size_crops_give_several_aligned_crops_per_image_flattened_into_the_batch():
    from monai.data import DataLoader, Dataset

    from medt_monai.transforms import network_size_crops, network_size_transform

    image = torch.arange(3 * 40 * 60, dtype=torch.float32).reshape(3, 40, 60)
    items = [{"image": image + 1000 * i, "label": image[:1] + 1000 * i} for i in range(2)]  # label: image's channel 0
    chain = Compose(
        [network_size_transform(["image", "label"], 16, image_scale=0.5, mode="nearest")]
        + network_size_crops(["image", "label"], 16, image_scale=0.5, num_crops=3)
    )
    crops = chain(items[0])
    assert isinstance(crops, list) and len(crops) == 3  # zoomed to 20x30, then 3 random 16x16 crops
    for crop in crops:
        assert crop["image"].shape == (3, 16, 16) and crop["label"].shape == (1, 16, 16)
        assert torch.equal(crop["label"][0], crop["image"][0])  # image and label cut at the same place
    assert len({tuple(c["image"][0, 0, :2].tolist()) for c in crops}) > 1  # not one crop three times
    batch = next(iter(DataLoader(Dataset(items, chain), batch_size=2)))
    assert batch["image"].shape == (6, 3, 16, 16)  # 2 images x 3 crops
    single = Compose([network_size_transform("image", 16, image_scale=0.5)] + network_size_crops("image", 16, 0.5))
    assert single({"image": image})["image"].shape == (3, 16, 16)  # num_crops=1: one dict, as before
    assert network_size_crops("image", 16) == [] and network_size_crops("image", 16, 0.5, np.int64(2))
    with pytest.raises(ValueError, match=r"num_crops=2 \(--crops_per_image\) needs image_scale"):
        network_size_crops("image", 16, None, num_crops=2)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match=r"crops_per_image\) must be a positive integer"):
            network_size_crops("image", 16, 0.5, num_crops=bad)


# ---------------------------------------------------------------- demo set


def test_demo_dataset(tmp_path):
    root = D.make_demo_dataset(tmp_path / "demo", seed=0)
    counts = {s: len(list((root / s / "img").glob("*.png"))) for s in ("train", "val", "test")}
    assert counts == {"train": 40, "val": 10, "test": 10}
    sizes = set()
    for img in (root / "train" / "img").glob("*.png"):
        im, m = Image.open(img), Image.open(root / "train" / "labelcol" / img.name)
        assert im.mode == "RGB" and m.mode == "L" and im.size == m.size
        vals = set(np.unique(np.asarray(m)).tolist())
        assert vals <= {0, 255} and 255 in vals
        inst = np.asarray(Image.open(root / "train" / "labelinst" / img.name))
        assert np.array_equal(inst > 0, np.asarray(m) > 0)  # the glands of the mask, numbered 1..n
        assert set(np.unique(inst).tolist()) == set(range(int(inst.max()) + 1))
        sizes.add(im.size)
    assert sizes == {(128, 128), (160, 128)}
    # idempotent: second call returns immediately without rewriting
    mtime = (root / "train" / "img" / "train_000.png").stat().st_mtime_ns
    assert D.make_demo_dataset(root, seed=0) == root
    assert (root / "train" / "img" / "train_000.png").stat().st_mtime_ns == mtime
    # deterministic
    other = D.make_demo_dataset(tmp_path / "demo2", seed=0)
    for rel in ("train/img/train_007.png", "test/labelcol/test_003.png"):
        assert (root / rel).read_bytes() == (other / rel).read_bytes()
    seed1 = D.make_demo_dataset(tmp_path / "demo3", seed=1)
    assert (root / "train/img/train_000.png").read_bytes() != (seed1 / "train/img/train_000.png").read_bytes()


def test_demo_dataset_default_dir_and_atomicity(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDT_MONAI_DATA_DIR", str(tmp_path / "env_demo"))
    assert D.default_data_dir() == tmp_path / "env_demo"
    calls = {"n": 0}
    real_save = Image.Image.save

    def failing_save(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 7:
            raise OSError("disk full (simulated)")
        return real_save(self, *a, **k)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        D.make_demo_dataset()
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temp folder left
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert D.make_demo_dataset() == tmp_path / "env_demo"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="busy"):
        D.make_demo_dataset(tmp_path / "busy")


# ---------------------------------------------------------------- data layouts and splits


def test_unknown_name():
    with pytest.raises(ValueError, match="demo, medt, glas, monuseg, decathlon, folder"):
        D.dataset_splits("kaggle", root=".")


def test_demo_splits(tmp_path):
    s = D.dataset_splits("demo", root=tmp_path / "d")
    assert {k: len(v) for k, v in s.items()} == {"train": 40, "validation": 10, "test": 10}
    assert all(set(d) == {"image", "label", "instance"} for v in s.values() for d in v)
    assert all(Path(d["instance"]).parent.name == "labelinst" for v in s.values() for d in v)


def test_medt_layout_carving_and_kfold(tmp_path):
    _pair_folder(tmp_path, [f"im{i}" for i in range(20)], img="train/img", msk="train/labelcol")
    s = D.dataset_splits("medt", root=tmp_path, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert {k: len(v) for k, v in s.items()} == {"train": 12, "validation": 4, "test": 4}
    names = [{d["image"] for d in s[k]} for k in ("train", "validation", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert D.dataset_splits("medt", root=tmp_path, val_fraction=0.2, test_fraction=0.2, seed=3) == s
    assert D.dataset_splits("medt", root=tmp_path, val_fraction=0.2, test_fraction=0.2, seed=4) != s
    vals = []
    for fold in range(4):
        f = D.dataset_splits("medt", root=tmp_path, test_fraction=0.2, seed=3, num_folds=4, fold=fold)
        assert f["test"] == s["test"]  # test fixed; validation never from test
        assert not ({d["image"] for d in f["validation"]} & {d["image"] for d in f["test"]})
        assert len(f["train"]) + len(f["validation"]) == 16
        vals += [d["image"] for d in f["validation"]]
    assert len(vals) == len(set(vals)) == 16  # folds partition the non-test data
    with pytest.raises(ValueError, match="num_folds"):
        D.dataset_splits("medt", root=tmp_path, num_folds=4, fold=4)


def test_medt_layout_existing_splits(tmp_path):
    _pair_folder(tmp_path, ["a", "b", "c"], img="train/img", msk="train/labelcol")
    _pair_folder(tmp_path, ["d"], img="val/img", msk="val/labelcol")
    _pair_folder(tmp_path, ["e", "f"], img="test/img", msk="test/labelcol")
    s = D.dataset_splits("medt", root=tmp_path)
    assert [Path(d["image"]).name for d in s["validation"]] == ["d.png"]
    assert [Path(d["image"]).name for d in s["test"]] == ["e.png", "f.png"]
    assert len(s["train"]) == 3


def test_medt_layout_instance_labels(tmp_path):
    _pair_folder(tmp_path, ["a", "b"], img="train/img", msk="train/labelcol")
    s = D.dataset_splits("medt", root=tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert all("instance" not in d for d in s["train"])  # no labelinst/: no instance key
    inst = np.zeros((24, 32), np.uint8)
    inst[4:12, 5:12], inst[4:12, 12:20] = 1, 2  # two touching glands
    _png(tmp_path / "train" / "labelinst" / "a.png", inst)
    with pytest.raises(FileNotFoundError, match=r"instance label missing for image .*b\.png"):
        D.dataset_splits("medt", root=tmp_path, val_fraction=0.0, test_fraction=0.0)
    _png(tmp_path / "train" / "labelinst" / "b.bmp", inst)  # any extension
    s = D.dataset_splits("medt", root=tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert [Path(d["instance"]).name for d in s["train"]] == ["a.png", "b.bmp"]
    _png(tmp_path / "train" / "labelinst" / "b.bmp", inst[:20])
    with pytest.raises(ValueError, match=r"instance map .*b\.bmp has size"):
        D.dataset_splits("medt", root=tmp_path, val_fraction=0.0, test_fraction=0.0)


def test_medt_layout_monuseg_xml_instances(tmp_path):
    square, triangle = [(10, 5), (30, 5), (30, 25), (10, 25)], [(40, 40), (59.5, 40), (40, 59.5)]
    _png(tmp_path / "test" / "img" / "a.png", np.zeros((64, 64, 3), np.uint8))
    _png(tmp_path / "test" / "labelcol" / "a.png", np.zeros((64, 64), np.uint8))
    (tmp_path / "test" / "xml").mkdir()
    (tmp_path / "test" / "xml" / "a.xml").write_text(_XML.format(regions=_region(1, square) + _region(2, triangle)))
    item = D.medt_layout_datalist(tmp_path / "test")[0]
    inst = np.asarray(Image.open(item["instance"]))
    assert set(np.unique(inst).tolist()) == {0, 1, 2} and inst[15, 20] == 1 and inst[45, 45] == 2
    assert np.array_equal(inst, D.rasterize_xml_instances(tmp_path / "test" / "xml" / "a.xml", (64, 64)))


def test_instance_maps_with_many_objects_are_16_bit_and_load_exactly(tmp_path):
    from monai.transforms import LoadImage

    inst = (np.arange(40 * 50).reshape(40, 50) % 300).astype(np.int32)
    atomic_save_png(inst, tmp_path / "inst.png")
    with Image.open(tmp_path / "inst.png") as im:
        assert im.mode.startswith("I")  # 16-bit
    loaded = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.int32)(tmp_path / "inst.png")
    assert np.array_equal(np.asarray(loaded[0]).T, inst)  # MONAI's PIL reader gives (W, H)


def test_folder_layout_instances(tmp_path):
    _pair_folder(tmp_path, ["a", "b", "c"])
    assert all("instance" not in d for v in D.dataset_splits("folder", root=tmp_path).values() for d in v)
    for n in "abc":
        _png(tmp_path / "instances" / f"{n}.png", np.ones((24, 32), np.uint8))
    s = D.dataset_splits("folder", root=tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert sorted(Path(d["instance"]).name for d in s["train"]) == ["a.png", "b.png", "c.png"]


def test_glas_official_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("testA", 2), ("testB", 1)):
        for i in range(1, n + 1):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"{split}_{i}.bmp")
            inst = np.zeros((20, 30), np.uint8)
            inst[2:6, 2:6], inst[10:15, 10:20] = 1, 2  # two gland instances
            Image.fromarray(inst).save(tmp_path / f"{split}_{i}_anno.bmp")
    (tmp_path / "Grade.csv").write_text("name,patient ID,GlaS,grade (Sirinukunwattana et al. 2015)\n")
    s = D.dataset_splits("glas", root=tmp_path, val_fraction=0.2, seed=0)
    assert len(s["test"]) == 3 and len(s["train"]) + len(s["validation"]) == 6 and len(s["validation"]) >= 1
    assert any("testA_1" in d["image"] for d in s["test"]) and any("testB_1" in d["image"] for d in s["test"])
    label = np.asarray(Image.open(s["train"][0]["label"]))
    assert set(np.unique(label).tolist()) == {0, 255} and (label > 0).sum() == 16 + 50
    assert all(d["instance"].endswith("_anno.bmp") for v in s.values() for d in v)  # the original instance maps
    out = D.get_transforms("eval", img_size=32)(s["train"][0])
    assert set(out["label"].unique().tolist()) == {0.0, 1.0}
    (tmp_path / "train_7.bmp").write_bytes((tmp_path / "train_1.bmp").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"train_7\.bmp.*train_7_anno\.bmp"):
        D.dataset_splits("glas", root=tmp_path)


_XML = (
    """<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>{regions}</Regions></Annotation></Annotations>"""
)


def _region(rid: int, pts) -> str:
    verts = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in pts)
    return f'<Region Id="{rid}"><Vertices>{verts}</Vertices></Region>'


def test_monuseg_xml(tmp_path):
    square = [(10, 5), (30, 5), (30, 25), (10, 25)]
    triangle = [(40, 40), (59.5, 40), (40, 59.5)]
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_XML.format(regions=_region(1, square) + _region(2, triangle)))
    _png(tmp_path / "Tissue Images" / "a.tif", np.zeros((64, 64, 3), np.uint8))
    mask = D.rasterize_xml(tmp_path / "Annotations" / "a.xml", (64, 64))
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 255}
    assert mask[15, 20] == 255 and mask[45, 45] == 255 and mask[2, 2] == 0 and mask[58, 58] == 0
    assert abs(int((mask[:32] > 0).sum()) - 20 * 20) <= 2 * 21
    inst = D.rasterize_xml_instances(tmp_path / "Annotations" / "a.xml", (64, 64))
    assert inst[15, 20] == 1 and inst[45, 45] == 2 and np.array_equal(inst > 0, mask > 0)  # one id per region
    items = D.monuseg_datalist(tmp_path)
    assert len(items) == 1 and np.array_equal(np.asarray(Image.open(items[0]["label"])), mask)
    assert np.array_equal(np.asarray(Image.open(items[0]["instance"])), inst)
    cached = Path(items[0]["label"]).stat().st_mtime_ns
    assert D.monuseg_datalist(tmp_path)[0]["label"] == items[0]["label"]  # rasterised once
    assert Path(items[0]["label"]).stat().st_mtime_ns == cached


def test_monuseg_broken_xml(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<Annotations><Region Id='1'><Vertex X='1'")
    with pytest.raises(ValueError, match=r"bad\.xml.*not well-formed"):
        D.rasterize_xml(bad, (8, 8))
    nan = tmp_path / "nan.xml"
    nan.write_text(_XML.format(regions=_region(7, [(1, 1), ("abc", 2), (3, 3)])))
    with pytest.raises(ValueError, match=r"nan\.xml.*Id=7.*non-numeric"):
        D.rasterize_xml(nan, (8, 8))
    empty = tmp_path / "empty.xml"
    empty.write_text("<Annotations/>")
    with pytest.raises(ValueError, match=r"empty\.xml.*no <Region>"):
        D.rasterize_xml(empty, (8, 8))
    short = tmp_path / "short.xml"
    short.write_text(_XML.format(regions=_region(3, [(1, 1), (5, 5)]) + _region(4, [(0, 0), (6, 0), (6, 6), (0, 6)])))
    with pytest.warns(UserWarning, match=r"short\.xml.*Id=3.*skipped"):
        m = D.rasterize_xml(short, (8, 8))
    assert m[3, 3] == 255
    # a broken XML inside a data set leaves no cached mask behind
    (tmp_path / "ds").mkdir()
    _png(tmp_path / "ds" / "x.tif", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "ds" / "x.xml").write_text(nan.read_text())
    with pytest.raises(ValueError, match=r"x\.xml"):
        D.monuseg_datalist(tmp_path / "ds", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_decathlon_json_nifti(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i in range(6):
        img = rng.normal(100, 30, (20, 24)).astype(np.float32)
        lab = np.zeros((20, 24), np.uint8)
        lab[5:10, 5:15] = 1
        lab[12:16, 2:6] = 2
        nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / f"lab{i}.nii.gz")
        entries.append({"image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz", "instance": f"lab{i}.nii.gz"})
    js = tmp_path / "dataset.json"
    js.write_text(json.dumps({"training": entries[:5], "test": [entries[5]["image"]]}))
    s = D.dataset_splits("decathlon", root=js, val_fraction=0.2)
    assert len(s["train"]) == 4 and len(s["validation"]) == 1 and len(s["test"]) == 1
    assert Path(s["train"][0]["image"]).is_absolute() and "label" not in s["test"][0]
    assert all(Path(d["instance"]) == tmp_path / Path(d["label"]).name for d in s["train"])  # resolved like label
    out = D.get_transforms("eval", img_size=32, in_channels=1, binary=False, intensity="percentile")(s["train"][0])
    assert out["image"].shape == (1, 32, 32) and float(out["image"].max()) <= 1.0
    assert set(out["label"].unique().tolist()) == {0.0, 1.0, 2.0}  # multi-class kept as integers
    # label ids 1, 2 are far below the 0/255 full scale: "non-zero is foreground" needs threshold=None
    out3 = D.get_transforms("eval", img_size=32, in_channels=3, threshold=None)(s["train"][0])
    assert out3["image"].shape == (3, 32, 32) and set(out3["label"].unique().tolist()) == {0.0, 1.0}
    js.write_text(json.dumps({"training": [{"image": "nope.nii.gz", "label": "lab0.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match=r"nope\.nii\.gz"):
        D.dataset_splits("decathlon", root=js)


# ---------------------------------------------------------------- bad input


def test_folder_bad_inputs(tmp_path):
    root = _pair_folder(tmp_path / "ok", ["a", "b", "c", "d"])
    assert len(D.folder_datalist(root / "images", root / "masks")) == 4
    # mask missing
    (root / "masks" / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask missing for image .*images/c\.png"):
        D.folder_datalist(root / "images", root / "masks")
    # mask size differs from its image
    _png(root / "masks" / "c.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"masks/c\.png has size \(10, 10\).*images/c\.png"):
        D.folder_datalist(root / "images", root / "masks")
    _png(root / "masks" / "c.png", np.zeros((24, 32), np.uint8))
    # duplicate names
    _png(root / "images" / "a.bmp", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"duplicate name 'a'"):
        D.folder_datalist(root / "images", root / "masks")
    (root / "images" / "a.bmp").unlink()
    # corrupt header
    (root / "images" / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"images/b\.png: cannot read as an image"):
        D.folder_datalist(root / "images", root / "masks")
    # truncated image: header ok, pixel data cut -> caught with verify="full"
    _pair_folder(root, ["b"], size=(64, 64))
    _png(root / "images" / "b.png", np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    data = (root / "images" / "b.png").read_bytes()
    (root / "images" / "b.png").write_bytes(data[: len(data) // 2])
    _png(root / "masks" / "b.png", np.zeros((24, 32), np.uint8))
    assert len(D.folder_datalist(root / "images", root / "masks")) == 4  # header check cannot see it
    with pytest.raises(ValueError, match=r"images/b\.png.*truncated"):
        D.folder_datalist(root / "images", root / "masks", verify="full")
    # empty / missing folders
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(ValueError, match=r"empty/images: no image files"):
        D.dataset_splits("folder", root=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"nowhere"):
        D.dataset_splits("folder", root=tmp_path / "nowhere")


def test_special_image_formats_through_chain(tmp_path):
    """RGBA, 16-bit, palette images and JPEG masks load into the configured shape and range (the bundle's chain)."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    _png(tmp_path / "images" / "rgba.png", rgba, "RGBA")
    g16 = (rng.random((20, 30)) * 60000).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "images" / "g16.png")
    assert Image.open(tmp_path / "images" / "g16.png").mode.startswith("I")
    pal = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    pal.save(tmp_path / "images" / "pal.png")
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 5:25] = 255
    for n in ("rgba", "g16"):
        _png(tmp_path / "masks" / f"{n}.png", m)
    Image.fromarray(m).save(tmp_path / "masks" / "pal.jpg", quality=50)  # JPEG-noisy mask
    pmask = Image.fromarray((m > 0).astype(np.uint8), mode="P")
    pmask.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pmask.save(tmp_path / "masks" / "rgba.png")  # palette mask: indices 0/1
    items = D.folder_datalist(tmp_path / "images", tmp_path / "masks")
    xf = D.get_transforms("eval", img_size=32, in_channels=3)
    for item in items:
        out = xf(item)
        assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
        assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
        assert float(out["image"].max()) > 0.5  # 16-bit scaled by 65535, not clipped to 0/1 by 255
        assert set(out["label"].unique().tolist()) == {0.0, 1.0}
        assert abs(float(out["label"].mean()) - float((m > 0).mean())) < 0.05


def _bundle_image(path: Path, **kwargs) -> torch.Tensor:
    return D.get_transforms("infer", img_size=32, **kwargs)({"image": str(path)})["image"].as_tensor()


def test_16bit_and_palette_images_give_the_tensors_of_their_8bit_rgb_copies(tmp_path):
    """Through the bundle's chain a 16-bit image is its 8-bit copy (values x 257 / 65535 = x / 255) and a palette image
    its RGB conversion, exactly (the former chain clipped 16-bit at 255 and read palette indices)."""
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    _png(tmp_path / "gray.png", gray)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    pal = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    pal.save(tmp_path / "pal.png")
    pal.convert("RGB").save(tmp_path / "pal_rgb.png")
    for in_channels in (1, 3):
        assert torch.equal(
            _bundle_image(tmp_path / "gray16.png", in_channels=in_channels),
            _bundle_image(tmp_path / "gray.png", in_channels=in_channels),
        )
        assert torch.equal(
            _bundle_image(tmp_path / "pal.png", in_channels=in_channels),
            _bundle_image(tmp_path / "pal_rgb.png", in_channels=in_channels),
        )
    # the same for the training and evaluation chains of train.json
    _png(tmp_path / "mask.png", (gray > 128).astype(np.uint8) * 255)
    for mode in ("train", "eval"):
        chain = D.get_transforms(mode, img_size=32, augmentation="none")
        out = [
            chain({"image": str(tmp_path / n), "label": str(tmp_path / "mask.png")})["image"]
            for n in ("gray16.png", "gray.png")
        ]
        assert torch.equal(out[0].as_tensor(), out[1].as_tensor())


def _former_bundle_chain(size: int) -> Compose:
    """train.json's ``train#preprocessing_transforms`` of 9ca93b3: one loader, ``ScaleIntensityRanged(a_max=255)``."""
    return Compose([
        LoadImaged(["image", "label"], image_only=True, ensure_channel_first=True),
        ToChannelsd("image", channels=3),
        MaskToLabeld("label"),
        ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
        Resized(["image", "label"], spatial_size=[size, size], mode=["bilinear", "nearest"]),
        EnsureTyped(["image", "label"], dtype=torch.float32),
    ])  # fmt: skip


@pytest.mark.parametrize(
    "name, mode", [("rgb.png", "RGB"), ("rgb.jpg", "RGB"), ("gray.png", "L"), ("rgba.png", "RGBA")]
)
def test_bundle_chain_is_bit_identical_to_the_former_chain_on_8bit_images(tmp_path, name, mode):
    """The shipped weights and the recorded demo numbers stay valid: on 8-bit images the new chain gives the former
    chain's tensors bit for bit."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (37, 53, len(mode)), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode).save(tmp_path / name, quality=85)
    m = np.zeros((37, 53), np.uint8)
    m[4:20, 9:40] = 255
    _png(tmp_path / "mask.png", m)
    item = {"image": str(tmp_path / name), "label": str(tmp_path / "mask.png")}
    before = _former_bundle_chain(32)(item)
    after = D.get_transforms("eval", img_size=32)(item)
    assert torch.equal(after["image"].as_tensor(), before["image"].as_tensor())
    assert torch.equal(after["label"].as_tensor(), before["label"].as_tensor())
    assert torch.equal(_bundle_image(tmp_path / name), before["image"].as_tensor())  # inference.json's chain


def test_scale_intensity_full_range_by_stored_type():
    def f32(values):  # the exact float32 values
        return torch.tensor([[values]], dtype=torch.float32)

    assert torch.equal(ScaleIntensityFullRange()(torch.tensor([[[0, 51, 255]]], dtype=torch.uint8)), f32([0, 0.2, 1]))
    g16 = torch.tensor([[[0, 13107, 65535]]], dtype=torch.int32)  # uint16 as MONAI holds it
    assert torch.equal(ScaleIntensityFullRange()(g16), f32([0, 0.2, 1]))
    assert torch.equal(ScaleIntensityFullRange()(torch.tensor([[[-5, 32767]]], dtype=torch.int16)), f32([0, 1]))
    assert torch.equal(ScaleIntensityFullRange(float_max=10.0)(torch.tensor([[[-1.0, 5.0, 20.0]]])), f32([0, 0.5, 1]))
    out = ScaleIntensityFullRanged("image")({"image": _mt(torch.full((1, 2, 2), 51, dtype=torch.uint8))})["image"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.meta["filename_or_obj"] == "/data/x.png"
    with pytest.raises(ValueError, match=r"/data/big\.tif.*values up to 70000"):
        ScaleIntensityFullRange()(_mt(torch.tensor([[[0, 70000]]], dtype=torch.int32), "/data/big.tif"))
    with pytest.raises(ValueError, match="float_max must be positive"):
        ScaleIntensityFullRange(float_max=0)


def test_get_transforms_arguments():
    with pytest.raises(ValueError, match="intensity must be one of 'full_range', 'percentile'"):
        D.get_transforms("eval", intensity="zscore")
    with pytest.raises(ValueError, match="img_size must be one positive int"):
        D.get_transforms("eval", img_size=(16, 32))
    with pytest.raises(ValueError, match="intensity must be one of"):
        D.get_transforms("eval", intensity="minmax")  # the first release's spelling, gone with 0.14.0
    with pytest.raises(ValueError, match="augmentation must be one of 'none', 'flip', .*'dihedral_color_affine'"):
        D.get_transforms("train", augmentation="dihedral_color_affine_stain")


def test_get_transforms_defaults_are_the_bundles_training_chain():
    chain = D.get_transforms()  # no bundle files read: the chains live in the package
    names = [type(t).__name__ for t in chain.transforms]
    assert names == [
        "LoadScaledImaged", "LoadImaged", "MaskToLabeld", "Resized", "EnsureTyped",  # image and mask to 128 x 128
        "RandFlipd", "RandRotate90d", "RandScaleIntensityd", "RandShiftIntensityd", "RandAdjustContrastd", "RandAffined",
    ]  # fmt: skip
    assert chain.transforms[3].resizer.spatial_size == [128, 128]
    assert [type(t).__name__ for t in D.get_transforms("test").transforms][-1] == "LoadImaged"  # the instance map
    assert [type(t).__name__ for t in D.get_transforms("infer").transforms] == [
        "LoadScaledImaged", "Resized", "EnsureTyped"
    ]  # fmt: skip


def test_infer_resize_inverted(tmp_path):
    root = D.make_demo_dataset(tmp_path / "demo")
    img = root / "test" / "img" / "test_003.png"  # 128 (H) x 160 (W)
    xf = D.get_transforms("infer", img_size=64)
    d = xf({"image": str(img)})
    assert d["image"].shape == (3, 64, 64)
    d["pred"] = MetaTensor(
        torch.ones(1, 64, 64), meta=d["image"].meta, applied_operations=d["image"].applied_operations
    )
    inv = Invertd("pred", transform=xf, orig_keys="image", nearest_interp=True)(d)
    assert inv["pred"].shape[1:] == (160, 128)  # MONAI PIL spatial order (W, H)


def test_train_chain_and_datasets(tmp_path):
    s = D.dataset_splits("demo", root=tmp_path / "demo")
    xf = D.get_transforms("train", img_size=64, in_channels=1)
    for cache in ("memory", "none"):
        ds = D.get_dataset(s["train"][:3], xf, cache=cache)
        out = ds[1]
        assert out["image"].shape == (1, 64, 64) and out["label"].shape == (1, 64, 64)
        assert set(out["label"].unique().tolist()) <= {0.0, 1.0}
    ds = D.get_dataset(s["train"][:2], xf, cache="disk", cache_dir=tmp_path / "pc")
    assert ds[0]["image"].shape == (1, 64, 64) and any((tmp_path / "pc").iterdir())
    with pytest.raises(ValueError, match="cache_dir"):
        D.get_dataset(s["train"], xf, cache="disk")
    with pytest.raises(ValueError, match="cache must be"):
        D.get_dataset(s["train"], xf, cache="ram")
    with pytest.raises(ValueError, match="mode must be one of 'train', 'eval', 'test', 'infer'"):
        D.get_transforms("validate")


def test_image_size_itk_formats(tmp_path):
    import itk

    arr = np.zeros((12, 20), np.float32)
    itk.imwrite(itk.image_from_array(arr), str(tmp_path / "x.mha"))
    assert image_size(tmp_path / "x.mha") == (20, 12)
    nib.save(nib.Nifti1Image(np.zeros((20, 12), np.float32), np.eye(4)), tmp_path / "x.nii")
    assert image_size(tmp_path / "x.nii") == (20, 12)
    assert os.path.exists(tmp_path / "x.mha")


# ---------------------------------------------------------------- scripts/prepare_data.py


def _load_prepare():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"
    spec = importlib.util.spec_from_file_location("prepare_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_prepare_data_glas_atomic(tmp_path):
    prep = _load_prepare()
    src = tmp_path / "glas"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("train_1", "train_2", "testA_1"):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(src / f"{name}.bmp")
        inst = np.zeros((10, 12), np.uint8)
        inst[2:5, 3:9] = 3
        Image.fromarray(inst).save(src / f"{name}_anno.bmp")
    out = prep.prepare(tmp_path / "out", glas=src)
    s = D.dataset_splits("medt", root=out)
    assert len(s["test"]) == 1 and len(s["train"]) + len(s["validation"]) == 2
    assert set(np.unique(np.asarray(Image.open(out / "train" / "labelcol" / "train_1.png"))).tolist()) == {0, 255}
    assert np.array_equal(np.asarray(Image.open(out / "train" / "labelinst" / "train_1.png")), inst)  # ids kept
    assert all(Path(d["instance"]).parent.name == "labelinst" for v in s.values() for d in v)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glas", "out"]  # no temp folder left
    # a truncated image: error names it, nothing written
    data = (src / "train_2.bmp").read_bytes()
    (src / "train_2.bmp").write_bytes(data[: len(data) // 2])
    assert prep.main(["--out", str(tmp_path / "out2"), "--glas", str(src)]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glas", "out"]
    with pytest.raises(ValueError, match=r"train_2\.bmp"):
        prep.prepare(tmp_path / "out3", glas=src)
    with pytest.raises(FileExistsError, match="overwrite"):
        prep.prepare(out, glas=src)


# ---------------------------------------------------------------- inference inputs


def test_image_datalist_leaves_out_its_own_masks_when_writing_into_the_input_folder(tmp_path, caplog):
    """Inference whose output_dir is its dataset_dir does not segment an earlier run's masks (no a_seg_seg.png)."""
    images = tmp_path / "images"
    _png(images / "a.png", np.zeros((8, 8), np.uint8))
    _png(images / "a_seg.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "alias").symlink_to(images)  # the same folder under another name: compared resolved

    def names(items: list[dict]) -> list[str]:
        return [Path(d["image"]).name for d in items]

    assert names(D.image_datalist(images)) == ["a.png", "a_seg.png"]  # no output_dir: as before
    assert names(D.image_datalist(images, output_dir=tmp_path / "out")) == ["a.png", "a_seg.png"]
    with caplog.at_level("WARNING", logger="medt_monai.data.inference"):
        assert names(D.image_datalist(images, output_dir=tmp_path / "alias", output_postfix="seg")) == ["a.png"]
    assert f"{images}: skipped 1 file(s) named *_seg.<ext>" in caplog.text
    assert names(D.image_datalist(images, output_dir=images, output_postfix="mask")) == ["a.png", "a_seg.png"]
    with pytest.raises(ValueError, match="would overwrite the images"):
        D.image_datalist(images, output_dir=images, output_postfix="")
    (images / "a.png").unlink()
    with pytest.raises(ValueError, match=r"images: no image files .* 1 earlier output mask"):
        D.image_datalist(images, output_dir=images)
