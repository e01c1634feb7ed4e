"""scripts/reproduce.py and scripts/figures.py: the models of the results table, and one real (tiny) run end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import reproduce  # noqa: E402

from medt_monai.networks.blocks import AxialAttention  # noqa: E402
from medt_monai.networks.nets import AxialUNet, GatedAxialUNet, LoGo, MedT  # noqa: E402


def _network(model: str, tmp_path: Path) -> torch.nn.Module:
    common = reproduce.overrides("glas", 128, model, tmp_path, str(tmp_path))
    return reproduce.bundle_config(common).get_parsed_content("network_def")


@pytest.mark.parametrize(
    "model, cls, branches, placement",
    [
        ("axial_unet", AxialUNet, None, None),
        ("gated_axial_unet", GatedAxialUNet, None, "before_norm"),
        ("gated_axial_unet_effective", GatedAxialUNet, None, "after_norm"),
        ("logo", LoGo, ("global", "local"), None),
        ("medt_global", MedT, ("global",), "before_norm"),
        ("medt_local", MedT, ("local",), None),
        ("medt", MedT, ("global", "local"), "before_norm"),
        ("medt_effective", MedT, ("global", "local"), "after_norm"),
    ],
)
def test_table_models_are_the_named_variants(model, cls, branches, placement, tmp_path):
    net = _network(model, tmp_path)
    assert type(net) is cls
    if branches is not None:
        assert (net.global_branch is not None, net.local_branch is not None) == (
            "global" in branches,
            "local" in branches,
        )
    gated = [m for m in net.modules() if isinstance(m, AxialAttention) and m.gated]
    if placement is None:
        assert not gated
    else:
        assert gated and all(m.gates_after_norm == (placement == "after_norm") for m in gated)


def test_baselines_are_monai_networks(tmp_path):
    unet, resunet = _network("unet", tmp_path), _network("resunet", tmp_path)
    assert type(unet).__name__ == type(resunet).__name__ == "UNet"
    assert sum(p.numel() for p in resunet.parameters()) > sum(p.numel() for p in unet.parameters())
    assert "BasicUNetPlusPlus" in [c.__name__ for c in type(_network("unetpp", tmp_path)).__mro__]


def test_per_image_reads_metrics_saver_csv(tmp_path):
    from monai.handlers.utils import write_metrics_reports

    write_metrics_reports(
        tmp_path,
        ["/d/a.png", "/d/b.png"],
        {"test_mean_dice": 0.5},
        {"test_mean_dice": torch.tensor([[0.25], [0.75]])},
        ["mean"],
    )
    assert reproduce.per_image(tmp_path / "test_mean_dice_raw.csv") == {"a.png": 0.25, "b.png": 0.75}


def test_training_minutes_sums_epochs_of_interrupted_and_resumed_training(tmp_path):
    log = tmp_path / "log.txt"
    line = "2026-11-25 07:00:00,000 - ignite.engine.engine.{} - INFO - Epoch[{}] Complete. Time taken: {}"
    log.write_text(
        "\n".join(
            [
                "$ python -m monai.bundle run training --config_file train.json --max_epochs 3",
                line.format("SupervisedEvaluator", 1, "00:00:30.000"),
                line.format("SupervisedTrainer", 1, "00:01:30.000"),
                "(killed during epoch 2)",
                "$ python -m monai.bundle run training --config_file train.json --max_epochs 3",
                line.format("SupervisedTrainer", 2, "01:00:00.000"),
                "$ python -m monai.bundle run --config_file ['train.json', 'evaluate.json']",
                line.format("SupervisedEvaluator", 1, "00:05:00.000"),  # the test-set evaluation is not training time
            ]
        )
    )
    assert reproduce.training_minutes(log) == pytest.approx(62.0)


def test_reproduce_then_figures_on_the_demo_set(tmp_path):
    """One epoch of U-Net and MedT through the bundle, tables with the paper's numbers, rerun skips, figures drawn."""
    (tmp_path / "data" / "demo").mkdir(parents=True)
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "reproduce.py"),
        "--data-root",
        str(tmp_path / "data"),
        "--datasets",
        "demo:64:1",
        "--models",
        "unet",
        "medt",
        "--out",
        str(tmp_path / "runs"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "runs" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["unet", "medt"]
    for row in rows:
        assert row["test_images"] == "10" and row["epochs"] == "1" and row["best_epoch"] == "1"
        assert 0.0 <= float(row["iou"]) <= float(row["f1"]) <= 100.0
        assert 0.0 <= float(row["object_f1"]) <= 1.0  # the demo set has gland instance labels
    assert int(rows[1]["parameters"]) == sum(p.numel() for p in MedT(img_size=64).parameters())
    table = (tmp_path / "runs" / "results.md").read_text()
    assert "| MedT (Local-Global, gated axial attention) |" in table and "| U-Net (MONAI `UNet`) |" in table
    first = json.loads((tmp_path / "runs" / "demo" / "medt" / "result.json").read_text())
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # finished models are not retrained
    assert (
        again.returncode == 0 and json.loads((tmp_path / "runs" / "demo" / "medt" / "result.json").read_text()) == first
    )

    figures = [
        sys.executable,
        str(REPO / "scripts" / "figures.py"),
        "--runs",
        str(tmp_path / "runs"),
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "figures"),
        "--count",
        "2",
    ]
    done = subprocess.run(figures, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("demo_qualitative.png", "demo_curves.png", "demo_gates.png"):
        from PIL import Image

        with Image.open(tmp_path / "figures" / name) as image:
            assert min(image.size) > 200


def test_reproduce_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "reproduce.py"),
            "--data-root",
            str(tmp_path),
            "--datasets",
            "glas:128:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and f"{tmp_path / 'glas'}: data folder not found" in done.stderr
