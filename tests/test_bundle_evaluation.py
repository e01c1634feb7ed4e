"""The bundle's evaluate workflow (``train.json`` + ``evaluate.json``) on the test split: ``metrics.csv`` and the
per-image ``*_raw.csv`` files, ``metrics_per_image.csv`` and ``metrics_by_group.csv`` (the GlaS ``testA`` / ``testB``
parts as groups), the object metrics and when they are skipped, and the post-processing that both the written and the
scored masks go through (``--object_min_size``, ``--fill_holes``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import (
    DEMO_MODEL,
    EVALUATE,
    INFERENCE,
    N_TEST,
    OBJECT_METRICS,
    PIXEL_METRICS,
    POOLED_F1,
    TRAIN,
    _configs,
    _ok,
    _run,
)

from medt_monai.metrics import pooled_object_f1


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_writes_per_image_and_mean_metrics_on_the_test_split(work, trained):
    out = work["work"] / "evaluate"
    args = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), *work["common"],
        "--output_dir", str(out), "--ckpt_path", str(trained["model"]),
    ]  # fmt: skip
    log = _ok(_run(args))
    assert "test_mean_dice" in log
    metrics = dict(line.split(",") for line in (out / "metrics.csv").read_text().split())
    assert set(metrics) == {*PIXEL_METRICS, *OBJECT_METRICS, POOLED_F1}  # the demo set has gland instance labels
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
    # the pooled object F1: per image the (TP, FP, FN) counts, in metrics.csv 2 TP / (2 TP + FP + FN) of their sums
    counts = np.array(
        [[float(v) for v in r.split(",")[1:4]] for r in (out / f"{POOLED_F1}_raw.csv").read_text().split()[1:]]
    )
    assert counts.shape == (N_TEST, 3) and (counts >= 0).all() and (counts == counts.round()).all()
    assert float(metrics[POOLED_F1]) == pytest.approx(pooled_object_f1(counts), abs=1e-4)
    # all metrics side by side, per image and for the whole split
    table = _csv(out / "metrics_per_image.csv")
    assert [r["filename"] for r in table] == files and {r["group"] for r in table} == {"all"}
    assert set(table[0]) == {"filename", "group", *PIXEL_METRICS, *OBJECT_METRICS, POOLED_F1}
    for r in table:  # pooled over one image: that image's object F1
        assert float(r[POOLED_F1]) == pytest.approx(float(r["test_object_f1"]), abs=2e-4)
    (row,) = _csv(out / "metrics_by_group.csv")
    assert row["group"] == "all" and row["images"] == str(N_TEST)
    for name in PIXEL_METRICS + OBJECT_METRICS + [POOLED_F1]:
        assert float(row[name]) == pytest.approx(float(metrics[name]), abs=1e-4, nan_ok=True), name


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
    # the challenge's score of a test part: object F1 pooled over its images' detection counts
    counts = {Path(r.split(",")[0]).stem: [float(v) for v in r.split(",")[1:4]]
              for r in (out / f"{POOLED_F1}_raw.csv").read_text().split()[1:]}  # fmt: skip
    pooled_a = pooled_object_f1(np.array([counts["testA_1"], counts["testA_2"]]))
    assert float(groups["testA"][POOLED_F1]) == pytest.approx(pooled_a, abs=1e-4)
    assert float(groups["all"][POOLED_F1]) == pytest.approx(pooled_object_f1(np.array(list(counts.values()))), abs=1e-4)


def test_evaluate_skips_object_metrics_without_instance_labels(caplog):
    """A data set without instance labels gets the pixel metrics only, and one log line says why (no error)."""
    import logging

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([TRAIN, EVALUATE])
    parser["validate#dataset#data"] = [{"image": "a.png", "label": "a_mask.png"}, {"image": "b.png", "label": "b.png"}]
    with caplog.at_level(logging.INFO, logger="medt_monai.bundle"):
        metrics = parser.get_parsed_content("validate#evaluator#additional_metrics")
    assert set(metrics) == {"test_mean_iou"}
    lines = [r.getMessage() for r in caplog.records if r.name == "medt_monai.bundle"]
    assert len(lines) == 1 and "skipped" in lines[0] and "2 of 2" in lines[0], lines
    parser["validate#dataset#data"] = [{"image": "a.png", "label": "a_mask.png", "instance": "a_inst.png"}]
    parser.parse()  # forget the values resolved above
    assert set(parser.get_parsed_content("validate#evaluator#additional_metrics")) == {
        "test_mean_iou",
        *OBJECT_METRICS,
        POOLED_F1,
    }


def test_object_min_size_removes_small_components_from_written_and_scored_masks(work, tmp_path):
    """The shipped weights leave specks on the demo images; ``--object_min_size`` removes them from the masks that
    inference writes and from the masks that evaluation scores: exactly the objects of the instance map under the size
    go (a speck that touches a gland goes too, although it is part of the gland's mask component)."""
    from PIL import Image

    def infer(min_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = tmp_path / f"masks_{min_size}"
        # the demo images are about at the shipped model's scale (GlaS tiles squeezed to 128 px): not zoomed
        args = ["--output_dir", str(out), "--object_min_size", str(min_size), "--image_scale", "1.0"]
        _ok(_run(["run", "--config_file", INFERENCE, *args]))
        return {
            p.name: (np.array(Image.open(p)) > 0, np.array(Image.open(str(p).replace("_seg.png", "_instances.png"))))
            for p in sorted(out.glob("*_seg.png"))
        }

    masks = infer(0)
    sizes = sorted(size for _, ids in masks.values() for size in np.bincount(ids.ravel())[1:].tolist() if size)
    assert len(masks) == 10 and sizes[0] < 10 < 1000 < sizes[-1], sizes  # specks and glands
    cleaned = infer(100)
    assert cleaned.keys() == masks.keys()
    for name, (mask, ids) in masks.items():  # exactly the objects of at least 100 pixels remain
        assert np.array_equal(mask, ids > 0), name
        large = np.flatnonzero(np.bincount(ids.ravel()) >= 100)
        assert np.array_equal(cleaned[name][0], np.isin(ids, large[large > 0])), name

    def evaluate(min_size: int) -> dict[str, float]:
        out = tmp_path / f"eval_{min_size}"
        args = [
            "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), "--dataset", "demo",
            "--data_dir", str(work["demo"]), "--output_dir", str(out), "--object_min_size", str(min_size),
            "--output", "instances", "--image_scale", "1.0",  # the shipped model, on images at about its scale
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
            "run", "--config_file", INFERENCE, "--dataset_dir", str(in_dir), "--output_dir", str(out), *network,
            *DEMO_MODEL, *args,
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
        parser["output"] = "semantic"  # the mask chain (instances fill each object's holes in the watershed step)
        names = [type(t).__name__ for t in parser.get_parsed_content(key).flatten().transforms]
        assert "FillHolesd" not in names, files
        parser["fill_holes"] = "true"
        names = [type(t).__name__ for t in parser.get_parsed_content(key).flatten().transforms]
        assert names.index("AsDiscreted") < names.index("FillHolesd") < names.index("RemoveSmallComponentsd"), names
