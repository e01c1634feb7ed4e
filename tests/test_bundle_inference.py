"""The bundle's inference workflow (``inference.json``): masks at each image's original size, zoomed images through
sliding windows and flip TTA, NIfTI in and out, awkward inputs (16-bit, palette, names shared by two files, a truncated
file, an empty or missing folder) and the unique output names, a copy of the bundle run from another working
directory, and the shipped weights on the real GlaS images (``@pytest.mark.realdata``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import (
    BUNDLE,
    DEMO_MODEL,
    EVALUATE,
    IMG,
    INFERENCE,
    N_TEST,
    ROOT,
    TRAIN,
    _config_error,
    _configs,
    _env,
    _epochs_completed,
    _eval_output_bias,
    _ok,
    _parser,
    _run,
    _train_args,
    _truncate,
)

GLAS = ROOT.parent / "shared" / "data" / "glas" / "train"


def test_inference_writes_masks_at_the_original_size(work, trained, tmp_path):
    from PIL import Image

    src = sorted((work["demo"] / "test" / "img").glob("*.png"))[:2]
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    sizes = {}
    for i, p in enumerate(src):  # the originals and a non-square resize of each (W != H catches a transpose)
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.save(in_dir / p.name)
            sizes[p.stem] = im.size
            small = im.resize((100 + 12 * i, 72), Image.BILINEAR)
            small.save(in_dir / f"{p.stem}_nonsquare.png")
            sizes[f"{p.stem}_nonsquare"] = small.size
    args = [
        "run", "--config_file", INFERENCE, "--img_size", str(IMG), "--dataset_dir", str(in_dir),
        "--output_dir", str(out_dir), "--ckpt_path", str(trained["model"]), *DEMO_MODEL,
    ]  # fmt: skip
    log = _ok(_run(args))
    assert f"[{len(sizes)}/{len(sizes)}]" in log and re.search(rf"{len(sizes)} images in [\d.]+ s \(", log), log[-2000:]
    for stem, size in sizes.items():
        path = out_dir / f"{stem}_seg.png"
        assert path.is_file(), f"no mask for {stem}: {sorted(out_dir.iterdir())}"
        with Image.open(path) as m:
            assert m.size == size, f"{path.name}: mask {m.size}, image {size}"
            values = set(np.unique(np.array(m)).tolist())
        assert values <= {0, 255}, values


def test_scaled_crops_train_evaluate_and_infer_with_sliding_windows_and_flip_tta(work, tmp_path):
    """``--image_scale``: zoomed images, random ``img_size`` crops in training, sliding windows (+ flips) after."""
    from PIL import Image

    scale = ["--image_scale", "0.75"]  # demo images 128 -> 96, so crops of 64 and 2x2 windows
    crops = ["--crops_per_image", "2"]  # two crops of every image per epoch, flattened into the batches
    args = _train_args(work, tmp_path, "--max_epochs", "1", *scale, *crops, "--augmentation", "dihedral_color")
    log = _ok(_run(args))
    assert _epochs_completed(log) == [1]  # MedT(img_size=64) would refuse the 96x96 images without the crops
    model = tmp_path / "models" / "model.pt"
    args = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), *work["common"], *scale, "--tta", "true",
        "--output_dir", str(tmp_path / "evaluate"), "--ckpt_path", str(model),
    ]  # fmt: skip
    _ok(_run(args))
    rows = (tmp_path / "evaluate" / "test_mean_dice_raw.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + N_TEST
    src = sorted((work["demo"] / "test" / "img").glob("*.png"))[0]
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    with Image.open(src) as im:
        im.convert("RGB").resize((150, 90)).save(in_dir / "wide.png")
    args = [
        "run", "--config_file", INFERENCE, "--img_size", str(IMG), *scale, "--tta", "true", "--output", "semantic",
        "--dataset_dir", str(in_dir), "--output_dir", str(tmp_path / "out"), "--ckpt_path", str(model),
    ]  # fmt: skip
    _ok(_run(args))
    with Image.open(tmp_path / "out" / "wide_seg.png") as m:
        assert m.size == (150, 90)


def test_inference_on_nifti_writes_nifti(work, trained, tmp_path):
    import nibabel as nib
    from PIL import Image

    src = sorted((work["demo"] / "test" / "img").glob("*.png"))[0]
    with Image.open(src) as im:
        gray = np.array(im.convert("L").resize((90, 70)), dtype=np.float32)
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    nib.save(nib.Nifti1Image(gray.T.copy(), np.eye(4)), str(in_dir / "case.nii.gz"))  # (x=W, y=H)
    args = [
        "run", "--config_file", INFERENCE, "--img_size", str(IMG), "--dataset_dir", str(in_dir),
        "--output_dir", str(out_dir), "--ckpt_path", str(trained["model"]), *DEMO_MODEL,
    ]  # fmt: skip
    _ok(_run(args))
    out = out_dir / "case_seg.nii.gz"
    assert out.is_file(), sorted(out_dir.iterdir())
    seg = np.asarray(nib.load(str(out)).dataobj)
    assert seg.squeeze().shape == (90, 70), seg.shape
    assert set(np.unique(seg).tolist()) <= {0, 1}


def test_a_copied_bundle_runs_from_any_working_directory(work, tmp_path):
    """``bundle_root`` is the folder of the config file that is run: a copy of ``bundle/`` run from another working
    directory reads its own ``models/model.pt`` and writes into its own ``eval/``."""
    copy, elsewhere, images = tmp_path / "downloaded" / "medt", tmp_path / "elsewhere", tmp_path / "images"
    shutil.copytree(BUNDLE, copy)
    elsewhere.mkdir()
    images.mkdir()
    for src in sorted((work["demo"] / "test" / "img").glob("*.png"))[:2]:
        shutil.copy(src, images / src.name)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(copy / "configs" / "inference.json"),
           "--dataset_dir", str(images), "--tta", "false"]  # fmt: skip
    r = subprocess.run(cmd, cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=300)
    r.log = r.stdout + r.stderr  # type: ignore[attr-defined]
    log = _ok(r)
    assert f"Restored all variables from {copy / 'models' / 'model.pt'}" in log
    expected = sorted(f"{p.stem}_{kind}.png" for p in images.iterdir() for kind in ("seg", "instances"))
    assert sorted(p.name for p in (copy / "eval" / "inference").iterdir()) == expected  # the shipped instance model
    assert not any(elsewhere.iterdir()), sorted(elsewhere.iterdir())  # nothing written to the working directory


@pytest.mark.realdata
def test_shipped_weights_segment_glands_out_of_the_box(tmp_path):
    """``models/model.pt`` (MedT with ``full_resolution_skip``, ``zero_init_residual`` and ``branch_supervision`` trained
    with ``--output instances --boundary_weight 2 --image_scale 0.2 --training_crops montage`` on all 85 GlaS training
    images, the last of 200 epochs; docs/research/recipes.md, "twenty-sixth round") loads into the default inference and evaluate workflows,
    finds the glands, and scores what the docs report.

    Every GlaS image in ../shared/data is a training image of this model, so no score here is a score on unseen
    images. The score on unseen images is stated from the 3-fold cross-validation of the same configuration over the
    85 images (the default flip TTA on 2 x 2 window grids, ``--object_min_size 3200 --min_seed_size 1600``; "twenty-seventh
    round"): pixel Dice 89.39, object F1 76.6, AJI 62.1. The numbers below, on
    split 0's 13 test images, pin the weights and the evaluation pipeline (they are the model's fit on images it
    trained on)."""
    from PIL import Image

    if not GLAS.is_dir():
        pytest.skip(f"{GLAS} not found: the real GlaS data (../shared/data) is not beside the checkout")
    assert (BUNDLE / "models" / "model.pt").is_file(), "bundle/models/model.pt (the shipped weights) is missing"
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    names = ["train_1", "train_13"]
    for name in names:
        (in_dir / f"{name}.png").write_bytes((GLAS / "img" / f"{name}.png").read_bytes())
    _ok(_run(["run", "--config_file", INFERENCE, "--dataset_dir", str(in_dir), "--output_dir", str(out_dir)]))
    for name in names:
        with Image.open(out_dir / f"{name}_seg.png") as m, Image.open(GLAS / "labelcol" / f"{name}.png") as g:
            pred, truth = np.array(m) > 0, np.array(g) > 0
        assert pred.shape == truth.shape
        dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
        assert dice > 0.8, f"{name}: Dice {dice:.3f} of the shipped model"

    # evaluate.json (flip TTA on 2 x 2 window grids, as shipped) on split 0's 13 test images with the minimum object and
    # seed sizes documented for GlaS: pixel F1/IoU and the object-level scores (the split's labelinst/ instance labels)
    _ok(
        _run(
            [
                "run",
                "--config_file",
                _configs(TRAIN, EVALUATE),
                "--dataset",
                "glas",
                "--data_dir",
                str(GLAS.parent),
                "--output_dir",
                str(tmp_path / "eval"),
                "--object_min_size",
                "3200",
                "--min_seed_size",
                "1600",
            ]
        )
    )
    for name, documented in (("test_mean_dice", 0.9083), ("test_mean_iou", 0.8372)):
        with open(tmp_path / "eval" / f"{name}_raw.csv") as f:
            rows = f.read().splitlines()[1:]
        assert len(rows) == 13
        assert np.mean([float(r.split(",")[-1]) for r in rows]) == pytest.approx(documented, abs=5e-4), name
    metrics = dict(line.split(",") for line in (tmp_path / "eval" / "metrics.csv").read_text().split())
    documented = {"test_object_f1": 0.7703, "test_object_dice": 0.8004, "test_object_hausdorff": 103.03,
                  "test_aji": 0.6151, "test_pq": 0.6072}  # fmt: skip
    for name, value in documented.items():
        assert float(metrics[name]) == pytest.approx(value, rel=2e-3), name


# ------------------------------------------------------------------------------------------------
# awkward inputs
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def special_inference(work, trained, tmp_path_factory) -> dict:
    """One inference run over a folder of awkward inputs: a gray image and its 16-bit copy, a palette image and its RGB
    conversion, two images sharing the name ``same`` (PNG and JPEG), and a truncated PNG."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("special")
    in_dir, out_dir = tmp / "in", tmp / "out"
    in_dir.mkdir()
    src = sorted((work["demo"] / "test" / "img").glob("*.png"))
    with Image.open(src[0]) as im:
        rgb = im.convert("RGB")
    gray = np.array(rgb.convert("L"))
    Image.fromarray(gray).save(in_dir / "gray.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(in_dir / "gray16.png")  # x * 257 / 65535 == x / 255
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.save(in_dir / "pal.png")
    pal.convert("RGB").save(in_dir / "pal_rgb.png")
    rgb.save(in_dir / "same.png")
    rgb.save(in_dir / "same.jpg", quality=90)
    with Image.open(src[1]) as im:
        im.convert("RGB").save(in_dir / "bad.png")
    _truncate(in_dir / "bad.png")
    # the briefly trained model labels every pixel alike: shift its output bias so that half of the gray image comes
    # out foreground, in the network's own pattern, and a wrongly scaled input shows in the mask
    parser = _parser(INFERENCE, img_size=IMG, output="semantic", image_scale=None, device="$torch.device('cpu')")
    net = parser.get_parsed_content("network_def").eval()
    state = torch.load(trained["model"], map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    x = parser.get_parsed_content("preprocessing")({"image": str(in_dir / "gray.png")})["image"]
    with torch.no_grad():
        logits = net(x.as_tensor()[None])[0]
    head_bias = _eval_output_bias(state, logits.shape[0])
    state[head_bias][1] -= float((logits[1] - logits[0]).median())
    model = tmp / "model.pt"
    torch.save(state, model)
    args = [
        "run", "--config_file", INFERENCE, "--img_size", str(IMG), "--dataset_dir", str(in_dir),
        "--output_dir", str(out_dir), "--ckpt_path", str(model), *DEMO_MODEL,
    ]  # fmt: skip
    r = _run(args)
    return {"result": r, "log": r.log, "out": out_dir, "in": in_dir}


def _mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as m:
        return np.array(m)


def test_inference_segments_16bit_and_palette_images_as_their_8bit_rgb_copies(special_inference):
    out = special_inference["out"]
    for image, copy in (("gray16", "gray"), ("pal", "pal_rgb")):
        mask = _mask(out / f"{copy}_seg.png")
        assert 0.1 < (mask > 0).mean() < 0.9, f"{copy}: a mask this uniform cannot show a difference"
        assert np.array_equal(_mask(out / f"{image}_seg.png"), mask), image


def test_inference_gives_inputs_sharing_a_name_distinct_masks(special_inference):
    out = special_inference["out"]
    names = sorted(p.name for p in out.iterdir())
    assert "same_png_seg.png" in names and "same_jpg_seg.png" in names, names
    assert "same_seg.png" not in names and "gray_seg.png" in names, names  # unique names keep MONAI's naming


def test_inference_skips_an_unreadable_image_processes_the_rest_and_fails_at_the_end(special_inference):
    r, out = special_inference["result"], special_inference["out"]
    assert r.returncode != 0, r.log[-3000:]
    bad = special_inference["in"] / "bad.png"
    assert "1 image(s) could not be read and were skipped" in r.log and f"{bad}: cannot read as an image" in r.log
    expected = {f"{n}_seg.png" for n in ("gray", "gray16", "pal", "pal_rgb", "same_png", "same_jpg")}
    assert {p.name for p in out.iterdir()} == expected


def test_inference_without_images_is_an_error_before_any_work(tmp_path):
    import monai.bundle

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "empty" / "._a.png").write_bytes(b"a hidden file (macOS metadata), not an image")
    for folder, kind, message in (
        (tmp_path / "missing", FileNotFoundError, "folder of images not found"),
        (tmp_path / "empty", ValueError, "no image files"),
    ):
        error = _config_error(_parser(INFERENCE, dataset_dir=str(folder)), "datalist")
        assert isinstance(error, kind) and str(folder) in str(error) and message in str(error), error
    with pytest.raises(Exception) as info:  # the whole workflow, as `python -m monai.bundle run` runs it
        monai.bundle.run(config_file=INFERENCE, logging_file=False, dataset_dir=str(tmp_path / "empty"), bundle_root=str(BUNDLE),
                         output_dir=str(tmp_path / "out"), img_size=IMG, device="$torch.device('cpu')")  # fmt: skip
    assert "no image files" in "".join(str(e) for e in (info.value, info.value.__cause__))
    assert not (tmp_path / "out").exists()


def test_unique_output_names():
    from medt_monai.data import UniqueOutputNames

    paths = ["/x/a.png", "/x/a.jpg", "/x/b.nii.gz", "/x/b.png", "/y/a.png", "/x/c.png", "/x/a_png.tif"]
    names = UniqueOutputNames([{"image": p} for p in paths])
    subjects = [names({"filename_or_obj": p}, None)["subject"] for p in paths]
    from monai.data import create_file_basename

    saved = [
        os.path.basename(create_file_basename("seg", s, "/out", separate_folder=False, makedirs=False))
        for s in subjects
    ]
    # unique names keep MONAI's (c, a_png of a_png.tif); shared ones get the extension, then a number if still needed
    assert saved == ["a_png_2_seg", "a_jpg_seg", "b_nii_gz_seg", "b_png_seg", "a_png_3_seg", "c_seg", "a_png_seg"]
