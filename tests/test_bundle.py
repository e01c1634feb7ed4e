"""The MONAI bundle in ``bundle/``: the model zoo's checks and the train -> evaluate -> infer workflow on the demo data.

Every workflow runs as a user runs it, ``python -m monai.bundle ...`` in a subprocess from the repository root, with
tiny settings (64x64 images, a handful of demo images, 1-2 epochs) passed as ordinary config overrides, and writes
only under pytest's temporary folders. The default set takes about 2-3 minutes on 2 CPU cores; the README's default
command (the full demo training) is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundle"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
MULTI_GPU = str(CONFIGS / "multi_gpu_train.json")
METADATA = str(CONFIGS / "metadata.json")
SCHEMA = BUNDLE / "docs" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"  # the file published by MONAI (MONAI-extra-test-data 0.8.1)

PIXEL_METRICS = ["test_mean_dice", "test_mean_iou"]
OBJECT_METRICS = ["test_object_f1", "test_object_dice", "test_object_hausdorff", "test_aji", "test_pq"]

IMG = 64  # MedT needs a multiple of 64 (4x4 patch grid of 16x16 patches)
N_TRAIN, N_VAL, N_TEST = 8, 3, 3


def _env() -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _run(args: list[str], timeout: int = 600, module: str = "monai.bundle") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *args]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    r.log = r.stdout + r.stderr  # type: ignore[attr-defined]
    return r


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {' '.join(r.args)}\n{r.log[-6000:]}"
    return r.log


def _configs(*files: str) -> str:
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def _epochs_completed(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", log)]


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """The demo data set in a temporary folder and a config that keeps the first few images of each split."""
    from medt_monai.data import make_demo_dataset

    work = tmp_path_factory.mktemp("bundle")
    demo = make_demo_dataset(root=work / "demo", seed=0)
    subset = work / "subset.json"
    subset.write_text(
        json.dumps(
            {
                "splits": "$(lambda s: {'train': s['train'][:%d], 'validation': s['validation'][:%d], "
                "'test': s['test'][:%d]})(medt_monai.data.dataset_splits(@dataset, root=@data_dir, "
                "val_fraction=@val_fraction, test_fraction=@test_fraction, seed=@split_seed, verify=@verify_data))"
                % (N_TRAIN, N_VAL, N_TEST)
            }
        )
    )
    common = ["--dataset", "demo", "--data_dir", str(demo), "--img_size", str(IMG), "--num_workers", "0"]
    return {"work": work, "demo": Path(demo), "subset": str(subset), "common": common}


def _train_args(work: dict, out: Path, *extra: str, configs: tuple[str, ...] = (TRAIN,)) -> list[str]:
    return [
        "run", "training", "--config_file", _configs(*configs, work["subset"]),
        *work["common"], "--output_dir", str(out / "eval"), "--ckpt_dir", str(out / "models"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(work) -> dict:
    """``run training`` for 2 epochs: the checkpoint every later step uses."""
    out = work["work"] / "run"
    log = _ok(_run(_train_args(work, out, "--max_epochs", "2")))
    return {"out": out, "log": log, "model": out / "models" / "model.pt"}


# ------------------------------------------------------------------------------------------------
# train -> evaluate -> infer
# ------------------------------------------------------------------------------------------------
def test_training_writes_checkpoints_and_reports_validation_metrics(trained):
    log = trained["log"]
    assert _epochs_completed(log) == [1, 2], log[-3000:]
    assert "val_mean_dice" in log and "val_mean_iou" in log
    assert "train_loss" in log
    state = torch.load(trained["model"], map_location="cpu", weights_only=True)
    assert any(k.endswith("gate_qr") or "gate" in k for k in state), "model.pt is not MedT's state dict"
    latest = torch.load(trained["out"] / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "trainer", "best_model_saver"} <= set(latest)
    assert latest["trainer"]["iteration"] == 2 * latest["trainer"]["epoch_length"]
    assert list((trained["out"] / "eval").glob("events.out.tfevents.*")), "no TensorBoard event file"


def test_evaluate_writes_per_image_and_mean_metrics_on_the_test_split(work, trained):
    out = work["work"] / "evaluate"
    args = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), *work["common"],
        "--output_dir", str(out), "--ckpt_path", str(trained["model"]),
    ]  # fmt: skip
    log = _ok(_run(args))
    assert "test_mean_dice" in log
    metrics = dict(line.split(",") for line in (out / "metrics.csv").read_text().split())
    assert set(metrics) == set(PIXEL_METRICS + OBJECT_METRICS)  # the demo set has gland instance labels
    # progress, then one summary line with the count, the time and the metrics of metrics.csv
    assert f"[{N_TEST}/{N_TEST}]" in log, log[-3000:]
    summary = re.search(rf"{N_TEST} images in [\d.]+ s \([\d.]+ s per image\); (.*)\n", log)
    assert summary, log[-3000:]
    logged = dict(item.split(" ") for item in summary[1].split(", "))
    for name in PIXEL_METRICS:
        assert float(logged[name]) == pytest.approx(float(metrics[name]), abs=1e-4)
    for name in PIXEL_METRICS + OBJECT_METRICS:
        rows = (out / f"{name}_raw.csv").read_text().strip().splitlines()
        assert rows[0].startswith("filename"), rows[0]
        files = [r.split(",")[0] for r in rows[1:]]
        assert len(files) == N_TEST and all("/test/" in f for f in files), files  # the test split, per image
        values = [float(r.split(",")[-1]) for r in rows[1:]]
        if name == "test_object_hausdorff":
            assert all(np.isnan(v) or v >= 0.0 for v in values)  # pixels
        else:
            assert all(np.isnan(v) or 0.0 <= v <= 1.0 for v in values)
        # the mean in metrics.csv is the mean of the per-image values (NaN images left out; all NaN: NaN)
        mean = np.nanmean(values) if not np.isnan(values).all() else np.nan
        assert float(metrics[name]) == pytest.approx(mean, abs=1e-4, nan_ok=True), name
    # all metrics side by side, per image and for the whole split
    table = _csv(out / "metrics_per_image.csv")
    assert [r["filename"] for r in table] == files and {r["group"] for r in table} == {"all"}
    assert set(table[0]) == {"filename", "group", *PIXEL_METRICS, *OBJECT_METRICS}
    (row,) = _csv(out / "metrics_by_group.csv")
    assert row["group"] == "all" and row["images"] == str(N_TEST)
    for name in PIXEL_METRICS + OBJECT_METRICS:
        assert float(row[name]) == pytest.approx(float(metrics[name]), abs=1e-4, nan_ok=True), name


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_reports_the_glas_test_parts_separately(work, trained, tmp_path):
    """Images named ``testA_*`` / ``testB_*`` (the official GlaS test parts) get a row each in metrics_by_group.csv."""
    src = sorted((work["demo"] / "test" / "img").glob("*.png"))[:3]
    items = []
    for name, img in zip(["testA_1", "testA_2", "testB_1"], src):
        for sub in ("img", "labelcol", "labelinst"):
            (tmp_path / sub).mkdir(exist_ok=True)
            (tmp_path / sub / f"{name}.png").write_bytes((img.parent.parent / sub / img.name).read_bytes())
        items.append({k: str(tmp_path / sub / f"{name}.png") for k, sub in
                      (("image", "img"), ("label", "labelcol"), ("instance", "labelinst"))})  # fmt: skip
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"validate#dataset#data": items}))
    out = tmp_path / "eval"
    args = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, str(data)), *work["common"],
        "--output_dir", str(out), "--ckpt_path", str(trained["model"]),
    ]  # fmt: skip
    _ok(_run(args))
    per_image = {Path(r["filename"]).stem: r for r in _csv(out / "metrics_per_image.csv")}
    assert {k: r["group"] for k, r in per_image.items()} == {"testA_1": "testA", "testA_2": "testA", "testB_1": "testB"}
    groups = {r["group"]: r for r in _csv(out / "metrics_by_group.csv")}
    assert list(groups) == ["testA", "testB", "all"] and [groups[g]["images"] for g in groups] == ["2", "1", "3"]
    for name in PIXEL_METRICS + OBJECT_METRICS:
        values = {k: float(r[name]) for k, r in per_image.items()}
        a = [values["testA_1"], values["testA_2"]]
        mean_a = np.nanmean(a) if not np.isnan(a).all() else np.nan
        assert float(groups["testA"][name]) == pytest.approx(mean_a, abs=2e-4, nan_ok=True), name
        assert float(groups["testB"][name]) == pytest.approx(values["testB_1"], abs=2e-4, nan_ok=True), name


def test_evaluate_skips_object_metrics_without_instance_labels(caplog):
    """A data set without instance labels gets the pixel metrics only, and one log line says why (no error)."""
    import logging

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([TRAIN, EVALUATE])
    parser["validate#dataset#data"] = [{"image": "a.png", "label": "a_mask.png"}, {"image": "b.png", "label": "b.png"}]
    with caplog.at_level(logging.INFO, logger="medt_monai.metrics"):
        metrics = parser.get_parsed_content("validate#evaluator#additional_metrics")
    assert set(metrics) == {"test_mean_iou"}
    lines = [r.getMessage() for r in caplog.records if r.name == "medt_monai.metrics"]
    assert len(lines) == 1 and "skipped" in lines[0] and "2 of 2" in lines[0], lines
    parser["validate#dataset#data"] = [{"image": "a.png", "label": "a_mask.png", "instance": "a_inst.png"}]
    parser.parse()  # forget the values resolved above
    assert set(parser.get_parsed_content("validate#evaluator#additional_metrics")) == {"test_mean_iou", *OBJECT_METRICS}


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
        "--output_dir", str(out_dir), "--ckpt_path", str(trained["model"]),
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


def test_crops_per_image_sets_the_number_of_training_crops_of_each_zoomed_image():
    from monai.bundle import ConfigParser
    from monai.transforms import RandSpatialCropSamplesd

    parser = ConfigParser()
    parser.read_config(TRAIN)
    assert parser["crops_per_image"] == 1
    parser.update({"image_scale": 0.5, "crops_per_image": 3})
    crop = parser.get_parsed_content("train#crop_transforms")[-1]
    assert isinstance(crop, RandSpatialCropSamplesd) and crop.cropper.num_samples == 3
    assert crop.cropper.cropper.roi_size == [parser["img_size"]] * 2


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
        "run", "--config_file", INFERENCE, "--img_size", str(IMG), *scale, "--tta", "true",
        "--dataset_dir", str(in_dir), "--output_dir", str(tmp_path / "out"), "--ckpt_path", str(model),
    ]  # fmt: skip
    _ok(_run(args))
    with Image.open(tmp_path / "out" / "wide_seg.png") as m:
        assert m.size == (150, 90)


GLAS = ROOT.parent / "shared" / "data" / "glas" / "train"


def test_object_min_size_removes_small_components_from_written_and_scored_masks(work, tmp_path):
    """The shipped weights leave specks on the demo images; ``--object_min_size`` removes them from the masks that
    inference writes and from the masks that evaluation scores."""
    from PIL import Image

    from medt_monai.metrics import label_objects

    def infer(min_size: int) -> dict[str, np.ndarray]:
        out = tmp_path / f"masks_{min_size}"
        _ok(_run(["run", "--config_file", INFERENCE, "--output_dir", str(out), "--object_min_size", str(min_size)]))
        return {p.name: np.array(Image.open(p)) > 0 for p in sorted(out.glob("*_seg.png"))}

    masks = infer(0)
    sizes = sorted(size for m in masks.values() for size in np.bincount(label_objects(m).ravel())[1:].tolist())
    assert len(masks) == 10 and sizes[0] < 10 < 1000 < sizes[-1], sizes  # specks and glands
    cleaned = infer(100)
    assert cleaned.keys() == masks.keys()
    for name, mask in masks.items():  # exactly the components of at least 100 pixels remain
        assert np.array_equal(cleaned[name], label_objects(mask, min_size=100) > 0), name

    def evaluate(min_size: int) -> dict[str, float]:
        out = tmp_path / f"eval_{min_size}"
        args = [
            "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), "--dataset", "demo",
            "--data_dir", str(work["demo"]), "--output_dir", str(out), "--object_min_size", str(min_size),
        ]  # fmt: skip
        _ok(_run(args))
        return {k: float(v) for k, v in (line.split(",") for line in (out / "metrics.csv").read_text().split())}

    # evaluation scores the cleaned masks: with every component removed, no foreground is left to score
    assert evaluate(0)["test_mean_dice"] > 0.5
    assert evaluate(10**8)["test_mean_dice"] == 0.0
    with pytest.raises(AssertionError, match="min_size must be an integer >= 0"):
        evaluate(-5)


def test_fill_holes_fills_the_enclosed_background_of_written_and_scored_masks(tmp_path):
    """``--fill_holes true`` (MONAI's ``FillHolesd`` after the argmax) gives every written mask its enclosed holes as
    foreground, exactly ``scipy.ndimage.binary_fill_holes`` of the mask without it (a hole's background joins the
    border through no chain of edge neighbours), and evaluation scores those masks; off by default. The network is a
    1x1 convolution that marks dark pixels as foreground, so a dark ring on a bright image is a mask with a hole."""
    from PIL import Image
    from scipy import ndimage

    yy, xx = np.mgrid[:150, :200]
    radius = np.hypot(yy - 70, xx - 90)
    ring = np.where((radius > 20) & (radius < 40), 0, 255).astype(np.uint8)
    in_dir = tmp_path / "images"
    in_dir.mkdir()
    Image.fromarray(np.stack([ring] * 3, axis=-1)).save(in_dir / "ring.png")
    dark_is_foreground = {
        "weight": torch.tensor([[0.0] * 3, [-1.0] * 3]).reshape(2, 3, 1, 1),
        "bias": torch.tensor([0.0, 1.5]),
    }
    torch.save(dark_is_foreground, tmp_path / "conv.pt")

    def infer(*args: str) -> np.ndarray:
        out = tmp_path / f"masks{len(args)}"
        network = ["--network_def", "$torch.nn.Conv2d(3, 2, 1)", "--ckpt_path", str(tmp_path / "conv.pt")]
        args = [
            "run", "--config_file", INFERENCE, "--dataset_dir", str(in_dir), "--output_dir", str(out), *network, *args,
        ]  # fmt: skip
        _ok(_run(args))
        return np.array(Image.open(out / "ring_seg.png")) > 0

    plain, filled = infer(), infer("--fill_holes", "true")
    assert plain.shape == (150, 200) and 0 < plain.sum() < plain.size
    assert (ndimage.binary_fill_holes(plain) & ~plain).sum() > 1000  # the ring's centre, about 1250 pixels
    assert np.array_equal(filled, ndimage.binary_fill_holes(plain))

    # evaluation scores the masks after the same step, before the small components are removed (a filled gland
    # counts its lumen toward --object_min_size, as in the written masks)
    from monai.bundle import ConfigParser

    for files, key in (((TRAIN, EVALUATE), "validate#postprocessing"), ((INFERENCE,), "postprocessing")):
        parser = ConfigParser()
        parser.read_config(list(files))
        names = [type(t).__name__ for t in parser.get_parsed_content(key).flatten().transforms]
        assert "FillHolesd" not in names, files
        parser["fill_holes"] = "true"
        names = [type(t).__name__ for t in parser.get_parsed_content(key).flatten().transforms]
        assert names.index("AsDiscreted") < names.index("FillHolesd") < names.index("RemoveSmallComponentsd"), names


@pytest.mark.realdata
def test_shipped_weights_segment_glands_out_of_the_box(tmp_path):
    """``models/model.pt`` (``medt_fullres_zero_init_branch_supervision`` trained on all 85 GlaS training images with
    the bundle's recipe, random affine augmentation included, the last of 200 epochs: ``scripts/reproduce.py --recipe
    bundle --datasets glas:128:200 --final medt_fullres_zero_init_branch_supervision``) loads into the default inference
    and evaluate workflows, finds the glands, and scores what docs/results.md reports.

    Every GlaS image in ../shared/data is a training image of this model, so no score here is a score on unseen
    images. The score on unseen images is stated from the protocol runs of the same configuration (59 training
    images of split 0, seeds 0-2, 200 epochs, scored once on the 13 held-out images, flip TTA, ``--object_min_size
    3200``): pixel Dice 87.1, 86.5-87.9, object F1 66.3 (docs/recipes.md, "twentieth round"). The numbers below, on
    those 13 images, pin the weights and the evaluation pipeline (they are the model's fit on images it trained on)."""
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

    # evaluate.json (flip TTA on, as shipped) on split 0's 13 test images with the minimum object size documented for
    # GlaS: pixel F1/IoU and the object-level scores (the split's labelinst/ instance labels)
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
            ]
        )
    )
    for name, documented in (("test_mean_dice", 0.9183), ("test_mean_iou", 0.8511)):
        with open(tmp_path / "eval" / f"{name}_raw.csv") as f:
            rows = f.read().splitlines()[1:]
        assert len(rows) == 13
        assert np.mean([float(r.split(",")[-1]) for r in rows]) == pytest.approx(documented, abs=5e-4), name
    metrics = dict(line.split(",") for line in (tmp_path / "eval" / "metrics.csv").read_text().split())
    documented = {"test_object_f1": 0.7655, "test_object_dice": 0.8028, "test_object_hausdorff": 95.99,
                  "test_aji": 0.6509, "test_pq": 0.6185}  # fmt: skip
    for name, value in documented.items():
        assert float(metrics[name]) == pytest.approx(value, rel=2e-3), name


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
        "--output_dir", str(out_dir), "--ckpt_path", str(trained["model"]),
    ]  # fmt: skip
    _ok(_run(args))
    out = out_dir / "case_seg.nii.gz"
    assert out.is_file(), sorted(out_dir.iterdir())
    seg = np.asarray(nib.load(str(out)).dataobj)
    assert seg.squeeze().shape == (90, 70), seg.shape
    assert set(np.unique(seg).tolist()) <= {0, 1}


def test_inference_config_network_matches_training_config():
    train = json.loads(Path(TRAIN).read_text())
    infer = json.loads(Path(INFERENCE).read_text())
    for key in (
        "network_def",
        "network_name",
        "img_size",
        "image_scale",
        "in_channels",
        "num_classes",
        "intensity",
        "intensity_max",
        "window_inferer",
    ):
        assert infer[key] == train[key], f"inference.json and train.json disagree on {key!r}"
    # flip TTA: on for inference and evaluation (the shipped scores are with it), off for validation in training
    evaluate = json.loads(Path(EVALUATE).read_text())
    assert (infer["tta"], evaluate["tta"], train["tta"]) == (True, True, False)
    post = [t["_target_"] for t in infer["postprocessing"]["transforms"]]
    # MONAI Label drops SaveImaged and needs the channel squeezed and uint8 after it (2D PNG)
    assert post[-3:] == ["SaveImaged", "SqueezeDimd", "CastToTyped"], post


# ------------------------------------------------------------------------------------------------
# the model zoo's checks
# ------------------------------------------------------------------------------------------------
def test_verify_metadata_offline():
    import hashlib

    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5
    args = ["verify_metadata", "--meta_file", METADATA, "--filepath", str(SCHEMA), "--hash_val", SCHEMA_MD5]
    log = _ok(_run(args, timeout=120))
    assert "skipped downloading" in log and "metadata is verified with no error" in log
    meta = json.loads(Path(METADATA).read_text())
    fmt = meta["network_data_format"]
    assert list(fmt["inputs"]) == ["image"] and list(fmt["outputs"]) == ["pred"]
    assert len(fmt["inputs"]["image"]["spatial_shape"]) == 2  # MONAI Label: 2D model
    assert fmt["outputs"]["pred"]["channel_def"]["0"] == "background"
    from importlib.metadata import version

    for name, pinned in meta["required_packages_version"].items():
        assert version(name) == pinned, f"metadata.json pins {name}=={pinned}, installed {version(name)}"
    assert meta["monai_version"] == version("monai")


def test_verify_net_in_out():
    args = [
        "verify_net_in_out", "network_def", "--meta_file", METADATA, "--config_file", INFERENCE,
        "--img_size", str(IMG), "--_meta_#network_data_format#inputs#image#spatial_shape", f"[{IMG}, {IMG}]",
        "--_meta_#network_data_format#outputs#pred#spatial_shape", f"[{IMG}, {IMG}]",
    ]  # fmt: skip
    assert "verified with no error" in _ok(_run(args, timeout=300))


def _eager(model_pt: Path, img_size: int = IMG) -> tuple[torch.nn.Module, torch.Tensor]:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["img_size"] = img_size
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(model_pt, map_location="cpu", weights_only=True))
    torch.manual_seed(0)
    return net.eval(), torch.rand(2, 3, img_size, img_size)


def test_ckpt_export_torchscript_matches_eager(trained, tmp_path):
    ts = tmp_path / "model.ts"
    args = [
        "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(trained["model"]),
        "--meta_file", METADATA, "--config_file", INFERENCE, "--img_size", str(IMG),
        "--use_trace", "True", "--input_shape", f"[1, 3, {IMG}, {IMG}]",
    ]  # fmt: skip
    _ok(_run(args, timeout=300))
    net, x = _eager(trained["model"])
    scripted = torch.jit.load(str(ts), map_location="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-4, rtol=1e-4)


def test_model_zoo_ckpt_export_scripts_the_shipped_model(tmp_path):
    """The call the model zoo's ``ci/verify_bundle.py`` makes in full mode (``verify_torchscript``): ``ckpt_export``
    of ``network_def`` by ``torch.jit.script`` (no ``use_trace``, no input shape), with the shipped weights, on a copy
    of the bundle laid out as ``models/<name>``; the TorchScript module matches the eager network."""
    from monai.bundle import ckpt_export

    bundle_path = str(tmp_path / "models" / "medt_2d_segmentation")
    shutil.copytree(BUNDLE, bundle_path)
    ckpt_export(
        net_id="network_def",
        filepath=os.path.join(bundle_path, "models/verify_model.ts"),
        ckpt_file=os.path.join(bundle_path, "models", "model.pt"),
        meta_file=os.path.join(bundle_path, "configs/metadata.json"),
        config_file=os.path.join(bundle_path, "configs/inference.json"),
        bundle_root=bundle_path,
    )
    extra = {"metadata.json": ""}
    scripted = torch.jit.load(os.path.join(bundle_path, "models/verify_model.ts"), _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"])["version"] == json.loads(Path(METADATA).read_text())["version"]
    net, _ = _eager(BUNDLE / "models" / "model.pt", img_size=128)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


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
    assert sorted(p.name for p in (copy / "eval" / "inference").iterdir()) == [f"{p.stem}_seg.png" for p in
                                                                               sorted(images.iterdir())]  # fmt: skip
    assert not any(elsewhere.iterdir()), sorted(elsewhere.iterdir())  # nothing written to the working directory


def test_bundle_root_is_the_config_files_bundle_in_a_workflow_and_the_working_directory_outside(tmp_path, monkeypatch):
    from monai.bundle import ConfigParser, ConfigWorkflow

    monkeypatch.chdir(tmp_path)
    workflow = ConfigWorkflow(config_file=INFERENCE, workflow_type="inference", logging_file=False)
    workflow.initialize()
    assert workflow.bundle_root == str(BUNDLE)  # the folder above configs/, as MONAI's run() puts it on sys.path
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    assert parser.get_parsed_content("bundle_root") == str(tmp_path)  # a bare parser: the model zoo's "."


def test_onnx_export_matches_eager(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "model.onnx"
    args = [
        "onnx_export", "network_def", "--filepath", str(onnx_path), "--ckpt_file", str(trained["model"]),
        "--meta_file", METADATA, "--config_file", INFERENCE, "--img_size", str(IMG),
        "--use_trace", "True", "--input_shape", f"[1, 3, {IMG}, {IMG}]", "--converter_kwargs", "{'dynamo': True}",
    ]  # fmt: skip
    _ok(_run(args, timeout=600))
    net, x = _eager(trained["model"])
    x = x[:1]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, net(x).numpy(), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# multi-GPU config (CPU: gloo), resumption, NaN
# ------------------------------------------------------------------------------------------------
def test_torchrun_two_processes_on_cpu(work, tmp_path):
    # --tta true: validation through medt_monai.inferers, an import of train.json that multi_gpu_train.json keeps
    args = [
        "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle",
        *_train_args(work, tmp_path, "--max_epochs", "1", "--tta", "true", configs=(TRAIN, MULTI_GPU)),
    ]  # fmt: skip
    log = _ok(_run(args, module="torch.distributed.run", timeout=600))
    assert "gloo" in Path(MULTI_GPU).read_text()
    assert sorted(_epochs_completed(log)) == [1, 1], "both ranks should finish epoch 1"
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "eval" / "checkpoint_latest.pt").is_file()
    events = list((tmp_path / "eval").glob("events.out.tfevents.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1, f"TensorBoard files from >1 process: {events}"
    assert log.count("Saved checkpoint at epoch: 1") >= 1


def _latest_epoch(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)["trainer"]
    return state["iteration"] // state["epoch_length"]


def test_killed_training_resumes_from_last_complete_checkpoint(work, tmp_path):
    """Kill after the first saved epoch, run the same command again: training resumes, and the ``model.pt`` that was in
    the folder before the first run (the shipped weights, say) is the one kept as ``model_previous.pt``."""
    max_epochs = 3
    args = _train_args(work, tmp_path, "--max_epochs", str(max_epochs))
    latest = tmp_path / "eval" / "checkpoint_latest.pt"
    shipped = {"weight": torch.full((3,), 7.0)}
    (tmp_path / "models").mkdir()
    torch.save(shipped, tmp_path / "models" / "model.pt")
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    log1 = tmp_path / "first.log"
    with open(log1, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 400
            while not (latest.exists() and _safe_epoch(latest) >= 1):
                assert proc.poll() is None, f"training ended before it was killed:\n{log1.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint after epoch 1"
                time.sleep(0.2)
            # killed now: during epoch 2 (or its validation / checkpoint write)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = _latest_epoch(latest)  # a complete, loadable checkpoint after the kill
    assert 1 <= saved < max_epochs
    torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)

    log = _ok(_run(args))
    assert f"resumed from {latest} after epoch {saved}" in log, log[-3000:]
    assert _epochs_completed(log) == list(range(saved + 1, max_epochs + 1)), log[-3000:]
    assert _latest_epoch(latest) == max_epochs
    previous = torch.load(tmp_path / "models" / "model_previous.pt", weights_only=True)
    assert previous.keys() == shipped.keys() and torch.equal(previous["weight"], shipped["weight"])
    assert not list(tmp_path.glob("*/.training.lock")), "a finished run leaves no lock file"

    # a finished run is not resumed: the same command trains anew
    log = _ok(_run([*args[:-1], "1"]))
    assert "holds a finished run" in log and _epochs_completed(log) == [1]


def _safe_epoch(path: Path) -> int:
    try:
        return _latest_epoch(path)
    except Exception:  # being replaced this instant
        return -1


def test_nan_loss_stops_training_without_writing_nan_weights(work, tmp_path):
    # a loss of one's own (--losses#<name>, --loss_name <name>) that turns NaN in epoch 2: iterations per epoch
    # N_TRAIN / batch 4 = 2, each calling it 3 times (the default network's logits and each branch's, which the
    # bundle's DeepSupervisionLoss weighs)
    loss = (
        "$lambda p, y, n=[]: (n.append(0), torch.nn.functional.cross_entropy(p, y[:, 0].long())"
        " * (float('nan') if len(n) > 6 else 1.0))[1]"
    )
    r = _run(_train_args(work, tmp_path, "--max_epochs", "3", "--losses#nan", loss, "--loss_name", "nan"))
    log = _ok(r)
    assert "contains NaN or Inf. Stop training" in log, log[-3000:]
    assert _epochs_completed(log) == [1]
    latest = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert latest["trainer"]["iteration"] == 2  # epoch 1 only
    for path_state in (latest["model"], torch.load(tmp_path / "models" / "model.pt", weights_only=True)):
        assert all(torch.isfinite(v).all() for v in path_state.values() if v.is_floating_point())


@pytest.mark.slow  # importing mlflow and creating its database take ~30 s; mlflow is an optional extra
def test_tracking_mlflow_records_the_run(work, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="optional extra: pip install -e '.[mlflow]'")
    _ok(_run(_train_args(work, tmp_path, "--max_epochs", "1", "--tracking", "mlflow")))
    db = tmp_path / "eval" / "mlruns.db"  # MONAI 1.6.1's default: a local SQLite store under output_dir
    assert db.is_file(), sorted((tmp_path / "eval").iterdir())
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {"train_loss", "val_mean_dice", "val_mean_iou"} <= set(runs[0].data.metrics)


# ------------------------------------------------------------------------------------------------
# handlers
# ------------------------------------------------------------------------------------------------
def test_gate_freeze_handler_follows_the_epoch_counter():
    from ignite.engine import Engine, Events

    from medt_monai.handlers import GateFreezeHandler
    from medt_monai.networks.nets import MedT

    net = MedT(in_channels=3, out_channels=2, img_size=64)
    gates = [p for n, p in net.named_parameters() if "gate" in n]
    assert gates
    seen = {}
    engine = Engine(lambda e, b: None)
    GateFreezeHandler(net, frozen_epochs=2).attach(engine)

    @engine.on(Events.EPOCH_STARTED)
    def _record(e):
        seen[e.state.epoch] = [p.requires_grad for p in gates]

    engine.run([0], max_epochs=4)
    assert {k: all(v) for k, v in seen.items()} == {1: False, 2: False, 3: True, 4: True}
    assert not any(seen[2]) and all(seen[3])

    # resumed after epoch 5 with frozen_epochs=10: still frozen in epoch 6; after epoch 10: trainable
    for start, expect in ((5, False), (10, True)):
        net2 = MedT(in_channels=3, out_channels=2, img_size=64)
        engine2 = Engine(lambda e, b: None)
        GateFreezeHandler(net2, frozen_epochs=10).attach(engine2)
        engine2.add_event_handler(Events.STARTED, lambda e, s=start: setattr(e.state, "epoch", s))
        engine2.add_event_handler(Events.EPOCH_STARTED, lambda e: e.terminate())
        engine2.run([0], max_epochs=20)
        assert all(p.requires_grad == expect for n, p in net2.named_parameters() if "gate" in n)
    with pytest.raises(ValueError, match="frozen_epochs"):
        GateFreezeHandler(net, frozen_epochs=-1)


_KILL_DURING_WRITE = r"""
import os, signal, sys, torch
from ignite.engine import Engine, Events
from {module} import {cls} as Saver

net = torch.nn.Linear(4, 4)
engine = Engine(lambda e, b: None)
Saver(save_dir=sys.argv[1], save_dict={{"model": net}}, save_interval=1, n_saved=1, {fixed}).attach(engine)
real_save = torch.save

def dying_save(obj, f, *a, **k):
    if engine.state.epoch == 2:  # the second save: write half a file, then the process is killed
        data = b"x" * 1000
        (f.write(data) if hasattr(f, "write") else open(f, "wb").write(data))
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f, *a, **k)

torch.save = dying_save
@engine.on(Events.EPOCH_STARTED)
def _change(e):
    with torch.no_grad():
        net.weight.fill_(float(e.state.epoch))
engine.run([0], max_epochs=3)
"""


@pytest.mark.parametrize("fixed_name", [True, False], ids=["fixed_name", "numbered"])
def test_atomic_checkpoint_survives_a_kill_during_the_write(tmp_path, fixed_name):
    fixed = "interval_filename='latest.pt'" if fixed_name else ""
    script = _KILL_DURING_WRITE.format(module="medt_monai.handlers", cls="AtomicCheckpointSaver", fixed=fixed)
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(), capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert len(files) == 1, files  # the epoch-1 checkpoint is still there, complete
    state = torch.load(tmp_path / files[0], weights_only=True)
    assert torch.equal(state["weight"], torch.full((4, 4), 1.0))


def test_best_model_file_from_before_the_run_is_kept(tmp_path):
    """Training into a folder that holds shipped weights keeps them as model_previous.pt; later bests overwrite."""
    from ignite.engine import Engine, Events

    from medt_monai.handlers import AtomicCheckpointSaver, CheckpointGuard

    shipped = {"weight": torch.full((2,), 7.0)}
    torch.save(shipped, tmp_path / "model.pt")
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    saver = AtomicCheckpointSaver(
        str(tmp_path),
        {"model": net},
        save_key_metric=True,
        key_metric_name="score",
        key_metric_filename="model.pt",
        key_metric_save_state=False,
    )
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(score=float(e.state.epoch)))
    saver.attach(engine)
    guard = CheckpointGuard([tmp_path], keep=[tmp_path / "model.pt"])
    guard.acquire()
    engine.run([0], max_epochs=2)
    guard.release()
    assert torch.equal(torch.load(tmp_path / "model_previous.pt", weights_only=True)["weight"], shipped["weight"])
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_previous.pt"]


def test_final_model_is_written_only_by_a_run_that_reaches_its_last_epoch(tmp_path):
    """``save_final`` (the bundle's ``--model_selection last_epoch``): a run stopped early or by an exception leaves the
    earlier final model alone (MONAI's saver writes the weights it failed with)."""
    from ignite.engine import Engine, Events

    from medt_monai.handlers import AtomicCheckpointSaver

    net = torch.nn.Linear(2, 2)
    final = tmp_path / "model.pt"

    def run(stop_at: int | None = None, fail: bool = False) -> None:
        def step(engine, batch):
            with torch.no_grad():
                net.weight.fill_(engine.state.epoch)
            if fail and engine.state.epoch == stop_at:
                raise RuntimeError("a bad image")

        engine = Engine(step)
        if stop_at is not None and not fail:
            engine.add_event_handler(Events.EPOCH_COMPLETED(once=stop_at), lambda e: e.terminate())
        AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt").attach(engine)
        engine.run([0], max_epochs=3)

    run()
    assert float(torch.load(final, weights_only=True)["weight"][0, 0]) == 3.0
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    run(stop_at=2)  # e.g. TerminateOnNan in epoch 2 of 3
    with pytest.raises(RuntimeError, match="a bad image"):
        run(stop_at=3, fail=True)
    assert float(torch.load(final, weights_only=True)["weight"][0, 0]) == 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_last_epoch_model_selection_ships_the_final_weights_and_still_reports_validation(work, tmp_path):
    log = _ok(_run(_train_args(work, tmp_path, "--max_epochs", "2", "--model_selection", "last_epoch")))
    assert _epochs_completed(log) == [1, 2] and "val_mean_dice" in log
    latest = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    model = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert latest["trainer"]["iteration"] == 2 * N_TRAIN // 4 and latest["best_model_saver"] == {}
    assert model.keys() == latest["model"].keys()  # the final epoch's weights, chosen by no image
    assert all(torch.equal(latest["model"][k], model[k]) for k in model)
    error = _config_error(_parser((TRAIN,), model_selection="best"), "best_model_saver")
    assert "Unsupported option 'best'" in str(error) and "'last_epoch'" in str(error)


def test_monai_checkpoint_saver_is_not_atomic(tmp_path):
    """Why the bundle does not use MONAI's CheckpointSaver directly: the same kill leaves a truncated model file."""
    script = _KILL_DURING_WRITE.format(module="monai.handlers", cls="CheckpointSaver", fixed="")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(), capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    broken = []
    for p in tmp_path.glob("*.pt"):
        try:
            torch.load(p, weights_only=True)
        except Exception:
            broken.append(p.name)
    assert broken, "expected MONAI's non-atomic saver to leave a truncated file"


# ------------------------------------------------------------------------------------------------
# the README's command (slow)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_default_training_command_on_demo_data(tmp_path):
    """``python -m monai.bundle run training --config_file bundle/configs/train.json`` with nothing overridden except
    where it writes (a copy of the bundle) and the demo cache. The README promises install + training within 10
    minutes on 2 idle CPU cores; the training part is held to 7 minutes here (run it on an otherwise idle machine)."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("eval", "logs", "*.pt", "*.ts", "__pycache__"))
    env = {**_env(), "MEDT_MONAI_DATA_DIR": str(tmp_path / "demo")}
    env.pop("OMP_NUM_THREADS")
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundle/configs/train.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    wall = time.monotonic() - start
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert "val_mean_dice" in log and "val_mean_iou" in log
    assert "%|" in log  # the progress bar
    assert (bundle / "models" / "model.pt").is_file()
    import re

    last = re.findall(r"val_mean_dice: ([0-9.]+) val_mean_iou: ([0-9.]+)", log)[-1]
    print(f"default demo training: {wall:.0f} s, last validation Dice {last[0]}, IoU {last[1]}")
    assert wall < 420, f"default demo training took {wall:.0f} s"


@pytest.mark.parametrize(
    "flag, flips", [("false", False), ("False", False), (False, False), ("true", True), (True, True)]
)
def test_boolean_switches_read_command_line_strings(flag, flips):
    """``--tta false`` arrives as the string 'false' from the command line; it must switch TTA off, not on."""
    from monai.bundle import ConfigParser
    from monai.inferers import SimpleInferer

    from medt_monai.inferers import FlipInferer

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["tta"] = flag
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, FlipInferer if flips else SimpleInferer)
    if flips:
        assert inferer.transpose is False  # the 4 flips by default
        parser = ConfigParser()
        parser.read_config(INFERENCE)
        parser.update({"tta": flag, "tta_rotations": flag})
        assert parser.get_parsed_content("inferer").transpose is True  # ``--tta_rotations true``: the 8 symmetries


@pytest.mark.parametrize("config", ["train", "inference"])
def test_mixed_precision_dtype_and_channels_last_switches(config):
    """``--amp True --amp_dtype bfloat16`` reaches the engines' autocast, ``--channels_last True`` the network's
    memory format; a misspelt dtype names the allowed ones."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(TRAIN if config == "train" else INFERENCE)
    parser.update({"amp": "True", "amp_dtype": "bfloat16", "channels_last": "True", "device": "$torch.device('cpu')"})
    engines = ["train#trainer", "validate#evaluator"] if config == "train" else ["evaluator"]
    for engine in engines:
        assert parser.get_parsed_content(f"{engine}#amp") is True
        assert parser.get_parsed_content(f"{engine}#amp_kwargs") == {"dtype": torch.bfloat16}
    network = parser.get_parsed_content("network")
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    parser = ConfigParser()
    parser.read_config(TRAIN if config == "train" else INFERENCE)
    parser["amp_dtype"] = "bf16"
    with pytest.raises(RuntimeError) as error:  # MONAI's config error, caused by look_up_option's
        parser.get_parsed_content("amp_kwargs")
    assert "Unsupported option 'bf16'" in str(error.value.__cause__) and "bfloat16" in str(error.value.__cause__)


# ------------------------------------------------------------------------------------------------
# faults: bad inputs, interrupted and concurrent runs, full disks, bad settings
# ------------------------------------------------------------------------------------------------
def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


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
    parser = _parser(INFERENCE, img_size=IMG, device="$torch.device('cpu')")
    net = parser.get_parsed_content("network_def").eval()
    state = torch.load(trained["model"], map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    x = parser.get_parsed_content("preprocessing")({"image": str(in_dir / "gray.png")})["image"]
    with torch.no_grad():
        logits = net(x.as_tensor()[None])[0]
    out_biases = [k for k, v in state.items() if k.endswith(".bias") and tuple(v.shape) == (logits.shape[0],)]
    head_bias = [k for k in out_biases if not k.startswith(("global_head.", "local_head."))][-1]  # not training-only
    state[head_bias][1] -= float((logits[1] - logits[0]).median())
    model = tmp / "model.pt"
    torch.save(state, model)
    args = [
        "run", "--config_file", INFERENCE, "--img_size", str(IMG), "--dataset_dir", str(in_dir),
        "--output_dir", str(out_dir), "--ckpt_path", str(model),
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


def _parser(config_files: str | tuple[str, ...], **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_files) if isinstance(config_files, tuple) else config_files)
    parser.update(overrides)
    parser.resolve_macro_and_relative_ids()  # as monai.bundle run does: "run": "%training" is the training list
    return parser


def _config_error(parser, id: str) -> BaseException:
    """The error a config item raises, unwrapped from MONAI's 'Failed to instantiate/evaluate' RuntimeErrors."""
    with pytest.raises(Exception) as info:
        parser.get_parsed_content(id)
    error = info.value
    while isinstance(error, RuntimeError) and str(error).startswith("Failed to") and error.__cause__ is not None:
        error = error.__cause__
    return error


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
        monai.bundle.run(config_file=INFERENCE, logging_file=False, dataset_dir=str(tmp_path / "empty"),
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


def test_truncated_training_image_is_named_before_caching(tmp_path):
    """``--verify_data full`` (the default) decodes every image when the splits are made, before the datasets cache."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1), ("test", 1)):
        for i in range(n):
            for sub, arr in (("img", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)),
                             ("labelcol", np.zeros((40, 40), np.uint8))):  # fmt: skip
                (tmp_path / split / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(tmp_path / split / sub / f"{split}{i}.png")
    bad = _truncate(tmp_path / "train" / "img" / "train2.png")
    parser = _parser(TRAIN, dataset="medt", data_dir=str(tmp_path), img_size=IMG)
    error = _config_error(parser, "train#dataset")
    assert isinstance(error, ValueError) and f"{bad}: cannot read as an image" in str(error), error
    assert "truncated" in str(error)
    parser = _parser(TRAIN, dataset="medt", data_dir=str(tmp_path), img_size=IMG, verify_data="header")
    assert len(parser.get_parsed_content("splits")["train"]) == 4  # the fast check cannot see it


def test_bad_checkpoints_are_named_with_the_way_out(tmp_path):
    from ignite.engine import Engine

    from medt_monai.handlers import ResumeCheckpointLoader
    from medt_monai.networks import get_network

    (tmp_path / "empty.pt").write_bytes(b"")
    error = _config_error(_parser(INFERENCE, ckpt_path=str(tmp_path / "empty.pt")), "workflow_checks")
    assert isinstance(error, ValueError) and "--ckpt_path" in str(error) and "empty" in str(error)

    torch.save({"model": torch.nn.Linear(4, 4).state_dict()}, tmp_path / "model.pt")
    truncated = _truncate(tmp_path / "model.pt")
    loader = _parser(INFERENCE, ckpt_path=str(truncated), device="$torch.device('cpu')").get_parsed_content(
        "handlers#0"
    )
    with pytest.raises(RuntimeError, match=rf"(?s)cannot load {re.escape(str(truncated))}.*--ckpt_path must be"):
        loader(Engine(lambda e, b: None))

    # weights of the network shipped before bundle 0.13.0 (no branch heads) given to the default network: the missing
    # heads are named, and the way out
    plain = tmp_path / "plain.pt"
    torch.save(get_network("medt_fullres_zero_init").state_dict(), plain)
    loader = _parser(INFERENCE, ckpt_path=str(plain), device="$torch.device('cpu')").get_parsed_content("handlers#0")
    with pytest.raises(RuntimeError, match=r"(?s)Missing key.*global_head\.weight.*--network_name, --network_args"):
        loader(Engine(lambda e, b: None))

    # checkpoint_latest.pt of another network, found on resume
    latest = tmp_path / "checkpoint_latest.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "trainer": {"iteration": 1, "epoch_length": 1}}, latest)
    for problem in (f"{latest} does not fit this run", f"cannot read {latest}"):
        if problem.startswith("cannot"):
            _truncate(latest)
        trainer = Engine(lambda e, b: None)
        ResumeCheckpointLoader(str(latest), {"model": torch.nn.Linear(3, 3)}, engine_key="trainer").attach(trainer)
        with pytest.raises(RuntimeError, match=rf"(?s){re.escape(problem)}.*--resume False.*--output_dir"):
            trainer.run([0], max_epochs=3)


@pytest.mark.parametrize(
    "overrides, kind, message",
    [
        ({"network_name": "foo"}, ValueError, "--network_name 'foo' is not a network; the names are: unet, resunet, unetpp"),
        ({"img_size": 100}, ValueError, "--img_size 100 does not fit --network_name medt_fullres_zero_init_branch_supervision: .* multiples of 64; e.g. --img_size 64 or 128"),
        ({"network_name": "unet", "img_size": 72}, ValueError, "multiples of 16"),
        ({"ckpt_dir": "{file}/models"}, PermissionError, "--ckpt_dir .*/a_file/models: cannot create this folder"),
    ],
    ids=["network_name", "img_size", "unet_img_size", "ckpt_dir"],
)  # fmt: skip
def test_bad_settings_fail_when_the_workflow_starts_before_data_are_read(tmp_path, overrides, kind, message):
    (tmp_path / "a_file").write_text("")
    overrides = {k: v.format(file=tmp_path / "a_file") if isinstance(v, str) else v for k, v in overrides.items()}
    # data that cannot be found: the checks come first, so their error is the one raised
    data = {"dataset": "folder", "data_dir": str(tmp_path / "no_data")}
    for configs, run_ids in (
        ((TRAIN,), ("run", "training")),
        ((TRAIN, EVALUATE), ("run", "evaluating")),
        ((INFERENCE,), ("run",)),
    ):
        parser = _parser(configs, **data, **overrides)
        if "ckpt_dir" in overrides and configs[-1] != TRAIN:
            continue  # evaluation and inference do not write ckpt_dir
        for run_id in run_ids:
            assert parser[run_id][0] == "@workflow_checks", (configs, run_id)
        error = _config_error(parser, f"{run_ids[0]}#0")
        assert isinstance(error, kind) and re.search(message, str(error)), (configs, error)


_HOLD_GUARD = r"""
import os, signal, sys, time, torch
from medt_monai.handlers import CheckpointGuard
folder = sys.argv[1]
guard = CheckpointGuard([folder], keep=[os.path.join(folder, "model.pt")])
guard.acquire()
if sys.argv[2] == "kill":  # the run writes its first best model, then is killed
    torch.save({"weight": torch.full((2,), 1.0)}, os.path.join(folder, "model.pt"))
    os.kill(os.getpid(), signal.SIGKILL)
print("locked", flush=True)
time.sleep(120)
"""


def _weight(path: Path) -> float:
    return float(torch.load(path, weights_only=True)["weight"][0])


def test_guard_keeps_the_model_from_before_a_killed_run(tmp_path):
    from medt_monai.handlers import CheckpointGuard

    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "model.pt")  # the shipped model
    r = subprocess.run([sys.executable, "-c", _HOLD_GUARD, str(tmp_path), "kill"], env=_env(), capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (_weight(tmp_path / "model.pt"), _weight(tmp_path / "model_previous.pt")) == (1.0, 7.0)
    guard = CheckpointGuard([tmp_path], keep=[tmp_path / "model.pt"])
    guard.acquire()  # the run started again (resumed or anew): the killed run's lock does not block it
    assert _weight(tmp_path / "model_previous.pt") == 7.0  # not the killed run's model
    guard.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_previous.pt"]
    guard.acquire()  # a later run, after one that finished: keeps the model it finds
    assert _weight(tmp_path / "model_previous.pt") == 1.0
    guard.release()


def test_guard_refuses_a_second_run_and_names_the_first(tmp_path):
    import socket

    from medt_monai.handlers import CheckpointGuard

    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "model.pt")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_GUARD, str(tmp_path), "hold"], env=_env(),
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = CheckpointGuard([tmp_path / "other", tmp_path], keep=[tmp_path / "model.pt"])
        with pytest.raises(RuntimeError, match=rf"{re.escape(str(tmp_path))} is in use by another training run \(pid "
                                               rf"{holder.pid} on host {re.escape(socket.gethostname())}, started "
                                               r".*: .*-c .*hold\)"):  # fmt: skip
            second.acquire()
        assert not (tmp_path / "other" / ".training.lock").exists()  # the lock it took first is dropped again
    finally:
        holder.kill()
        holder.wait()
    torch.save({"weight": torch.full((2,), 1.0)}, tmp_path / "model.pt")  # as if the killed holder had trained
    second.acquire()  # the killed holder's lock does not block
    assert _weight(tmp_path / "model_previous.pt") == 7.0
    second.release()


def test_full_disk_leaves_the_earlier_model_in_place(tmp_path, monkeypatch):
    import errno

    from ignite.engine import Engine, Events

    from medt_monai.handlers import AtomicCheckpointSaver, CheckpointGuard

    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "model.pt")
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_name="score",
                                  key_metric_filename="model.pt", key_metric_save_state=False)  # fmt: skip
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(score=1.0))
    saver.attach(engine)

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        engine.run([0], max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left
    assert _weight(tmp_path / "model.pt") == 7.0

    # the copy to model_previous.pt at the start of a run: a full disk stops the run before it changes anything
    import shutil

    monkeypatch.setattr(shutil, "copyfileobj", full_disk)
    guard = CheckpointGuard([tmp_path], keep=[tmp_path / "model.pt"])
    with pytest.raises(
        OSError, match=rf"cannot copy {re.escape(str(tmp_path / 'model.pt'))} to .*model_previous.pt .*unchanged"
    ):
        guard.acquire()
    assert _weight(tmp_path / "model.pt") == 7.0 and not (tmp_path / "model_previous.pt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []


@pytest.mark.slow
def test_second_training_on_the_same_folders_is_refused(work, tmp_path):
    """Two ``run training`` on one bundle folder: the second stops at once naming the first, which goes on."""
    (tmp_path / "models").mkdir()
    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "models" / "model.pt")
    args = _train_args(work, tmp_path, "--max_epochs", "20")
    lock = tmp_path / "models" / ".training.lock"
    first = subprocess.Popen([sys.executable, "-m", "monai.bundle", *args], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (lock.exists() and lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        r = _run(args)
        assert first.poll() is None, "the first run should still be training"
    finally:
        first.kill()
        first.wait()
    assert r.returncode != 0 and f"is in use by another training run (pid {first.pid} on host" in r.log, r.log[-3000:]
    assert "Loading dataset" not in r.log and "Epoch[1]" not in r.log
    assert _weight(tmp_path / "models" / "model_previous.pt") == 7.0


@pytest.mark.slow
def test_bad_network_name_stops_the_command_before_data_are_cached(work, tmp_path):
    r = _run(_train_args(work, tmp_path, "--network_name", "foo"))
    assert r.returncode != 0 and "--network_name 'foo' is not a network; the names are" in r.log, r.log[-3000:]
    assert "Loading dataset" not in r.log and not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    "augmentation", ["flip", "dihedral", "dihedral_color", "dihedral_color_affine", "dihedral_color_affine_stain"]
)
def test_flip_prob_reaches_the_flip_of_every_augmentation_preset(augmentation):
    from monai.transforms import RandFlipd

    parser = _parser((TRAIN,), augmentation=augmentation, flip_prob=0.125)
    flips = [t for t in parser.get_parsed_content("train#random_transforms") if isinstance(t, RandFlipd)]
    assert [t.prob for t in flips] == [0.125]


def test_swappable_parts_are_named_alternatives_and_an_unknown_name_lists_the_choices():
    from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss

    # every loss is wrapped in DeepSupervisionLoss (a tensor passes through; MedT's branch logits are weighed)
    loss = _parser((TRAIN,)).get_parsed_content("loss")
    assert isinstance(loss, DeepSupervisionLoss) and loss.loss.lambda_dice == 0.0  # default: cross-entropy only
    assert loss.get_weights(3) == [1.0, 0.5, 0.5]  # MedT(branch_supervision=True): network, global, local logits
    assert _parser((TRAIN,), loss_name="dicece").get_parsed_content("loss").loss.lambda_dice == 1.0
    # a new alternative is one entry, as the bundle's docs show
    parser = _parser((TRAIN,), loss_name="dice", **{"losses#dice": {"_target_": "DiceLoss", "to_onehot_y": True}})
    assert isinstance(parser.get_parsed_content("loss").loss, DiceLoss)
    assert not isinstance(parser.get_parsed_content("loss").loss, DiceCELoss)
    for key, value, choices in [
        ("loss_name", "focal", ("ce", "dicece")),
        ("optimizer_name", "sgd", ("adam", "adamw")),
        ("lr_schedule", "step", ("poly", "cosine")),
        ("augmentation", "mixup", ("none", "flip", "dihedral_color")),
    ]:
        target = {"loss_name": "loss", "optimizer_name": "optimizer", "lr_schedule": "lr_scheduler",
                  "augmentation": "train#random_transforms"}[key]  # fmt: skip
        error = _config_error(_parser((TRAIN,), **{key: value}), target)
        assert f"Unsupported option '{value}'" in str(error), error
        assert all(f"'{choice}'" in str(error) for choice in choices), error


def test_metric_names_carry_the_workflow_prefix_from_one_definition():
    train = _parser((TRAIN,))
    assert list(train.get_parsed_content("validate#key_metric")) == ["val_mean_dice"]
    assert list(train.get_parsed_content("validate#additional_metrics")) == ["val_mean_iou"]
    evaluate = _parser((TRAIN, EVALUATE), object_metrics=True)
    assert list(evaluate.get_parsed_content("validate#key_metric")) == ["test_mean_dice"]
    assert list(evaluate.get_parsed_content("validate#evaluator#additional_metrics")) == [
        "test_mean_iou",
        *OBJECT_METRICS,
    ]


def test_batch_norm_recalibration_sets_the_statistics_of_the_current_weights():
    from ignite.engine import Engine

    from medt_monai.handlers import BatchNormRecalibration
    from medt_monai.networks.nets import MedT

    torch.manual_seed(0)
    batches = [{"image": torch.rand(2, 3, 8, 8) * 3 + 1} for _ in range(3)]
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    network[1].running_mean.fill_(5.0)  # stale statistics
    trainer = Engine(lambda engine, batch: None)
    BatchNormRecalibration(network, batches, interval=2).attach(trainer)
    trainer.run([0], max_epochs=1)  # epoch 1: not a recalibration epoch
    assert torch.all(network[1].running_mean == 5.0)
    trainer.run([0], max_epochs=2)
    with torch.no_grad():
        features = torch.cat([network[0](b["image"]) for b in batches])
    # equal batches: the cumulative average of the batch means is the mean over all images
    torch.testing.assert_close(network[1].running_mean, features.mean(dim=(0, 2, 3)))
    assert network.training and network[1].momentum == 0.1  # mode and momentum restored

    # MedT (BatchNorm inside the attention, statistics in closed form): eval mode comes close to training mode
    medt = MedT(img_size=32, patch_grid=(2, 2))
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        train_mode = medt(images)
        stale = (medt.eval()(images) - train_mode).abs().max()
    BatchNormRecalibration(medt.train(), [{"image": images}])()
    with torch.no_grad():
        recalibrated = (medt.eval()(images) - train_mode).abs().max()
    # not equal: eval uses the unbiased variance, which differs on the deepest local maps (16 values per channel here)
    assert recalibrated < stale / 10, (recalibrated, stale)
    with pytest.raises(ValueError, match="interval must be >= 1, got 0"):
        BatchNormRecalibration(medt, [], interval=0)


def test_bn_recalibration_option_runs_before_validation_only_when_enabled():
    from monai.handlers import ValidationHandler

    from medt_monai.handlers import BatchNormRecalibration

    for enabled in (False, True):
        parser = _parser((TRAIN,), bn_recalibration=enabled, val_interval=3)
        handlers = parser.get_parsed_content("train#handlers", instantiate=True)
        kinds = [type(h) for h in handlers]
        recalibration = handlers[kinds.index(BatchNormRecalibration)]
        assert kinds.index(BatchNormRecalibration) < kinds.index(ValidationHandler)
        assert recalibration.enabled is enabled and recalibration.interval == 3


def test_ema_decay_scores_saves_and_resumes_the_weights_moving_average_only_when_enabled():
    from ignite.handlers import EMAHandler

    from medt_monai.handlers import AtomicCheckpointSaver, ResumeCheckpointLoader

    def parts(parser):
        handlers = parser.get_parsed_content("train#trainer#train_handlers", instantiate=True)
        resume = next(h for h in handlers if isinstance(h, ResumeCheckpointLoader))
        latest = next(h for h in handlers if isinstance(h, AtomicCheckpointSaver) and h.save_interval)
        emas = [h for h in handlers if isinstance(h, EMAHandler)]
        return emas, resume.load_dict, latest.save_dict

    off = _parser((TRAIN,))
    assert off.get_parsed_content("ema_decay") == 0
    emas, load_dict, save_dict = parts(off)
    network = off.get_parsed_content("network")
    assert emas == [] and "ema_model" not in load_dict and "ema_model" not in save_dict
    assert off.get_parsed_content("validate#evaluator").network is network
    assert off.get_parsed_content("best_model_saver").save_dict["model"] is network

    on = _parser((TRAIN,), ema_decay=0.9)
    emas, load_dict, save_dict = parts(on)
    network = on.get_parsed_content("network")
    assert len(emas) == 1 and emas[0].model is network and emas[0].handle_buffers == "update"
    assert emas[0].momentum == pytest.approx(0.1)
    averaged = emas[0].ema_model
    assert averaged is not network and not averaged.training
    # validation, the kept model.pt and the resume checkpoint hold the average; training goes on with the network
    assert on.get_parsed_content("validate#evaluator").network is averaged
    assert on.get_parsed_content("best_model_saver").save_dict["model"] is averaged
    assert load_dict["ema_model"] is averaged and save_dict["ema_model"] is averaged and save_dict["model"] is network
    assert on.get_parsed_content("train#trainer").network is network

    # evaluation scores the weights it loads from --ckpt_path, whatever --ema_decay says
    evaluation = _parser((TRAIN, EVALUATE), ema_decay=0.9)
    assert evaluation.get_parsed_content("validate#evaluator").network is evaluation.get_parsed_content("network")

    for decay in (1.0, -0.1):
        error = _config_error(_parser((TRAIN,), ema_decay=decay), "workflow_checks")
        assert isinstance(error, ValueError) and f"--ema_decay {decay}" in str(error) and "[0, 1)" in str(error)


def test_ema_decay_ships_the_moving_average_as_model_pt(work, tmp_path):
    extra = ("--max_epochs", "1", "--model_selection", "last_epoch", "--ema_decay", "0.5")
    _ok(_run(_train_args(work, tmp_path, *extra)))
    latest = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    shipped = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert shipped.keys() == latest["model"].keys() == latest["ema_model"].keys()
    assert all(torch.equal(shipped[k], latest["ema_model"][k]) for k in shipped)
    # 2 steps at decay 0.5: the average lies between the initial and the trained weights, not on the trained ones
    assert not all(torch.equal(shipped[k], latest["model"][k]) for k in shipped)


def test_medt_remedies_train_and_evaluate_through_the_bundle(work, tmp_path):
    """MedT remedies as a user runs them: ``--network_args#full_resolution_skip``, ``--network_args#branch_supervision``
    (the network returns three logits in training, which the bundle's DeepSupervisionLoss weighs) and
    ``--bn_recalibration``."""
    options = ["--network_args#full_resolution_skip", "True", "--network_args#branch_supervision", "True"]
    log = _ok(_run(_train_args(work, tmp_path, "--max_epochs", "2", "--bn_recalibration", "True", *options)))
    assert _epochs_completed(log) == [1, 2] and "val_mean_dice" in log
    state = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)["model"]
    assert any(key.startswith("full_resolution.") for key in state) and "global_head.weight" in state
    # recalibrated before the last validation: the statistics count one pass over the 2 training batches, not the
    # 4 training steps of 2 epochs
    assert int(state["global_branch.stem.0.1.num_batches_tracked"]) == N_TRAIN // 4
    args = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), *work["common"], *options,
        "--output_dir", str(tmp_path / "evaluate"), "--ckpt_path", str(tmp_path / "models" / "model.pt"),
    ]  # fmt: skip
    _ok(_run(args))
    assert len((tmp_path / "evaluate" / "test_mean_dice_raw.csv").read_text().strip().splitlines()) == 1 + N_TEST


def test_seed_repeats_a_training_on_the_same_split_with_another_initialisation(work, tmp_path):
    (tmp_path / "train").symlink_to(work["demo"] / "train")  # no val/ or test/: both are carved out by split_seed

    def state(**overrides):
        parser = _parser((TRAIN,), dataset="medt", data_dir=str(tmp_path), verify_data="header", **overrides)
        parser.get_parsed_content("initialize")
        weights = parser.get_parsed_content("network_def").state_dict()
        return parser.get_parsed_content("splits"), weights

    splits, default = state()
    assert _parser((TRAIN,), split_seed=3).get_parsed_content("seed") == 3  # defaults to the split seed
    for seed, same in [(0, True), (1, False)]:
        seed_splits, weights = state(seed=seed)
        assert seed_splits == splits  # the split follows split_seed only
        assert all(torch.equal(default[k], weights[k]) for k in default) is same
    assert state(split_seed=1)[0] != splits
