"""Plain helpers and constants shared by the bundle's test modules (``tests/test_bundle_*.py``, and
``tests/test_monailabel.py`` for the output bias), imported as ``from bundle_helpers import ...``; the shared fixtures
(``work``, ``trained``) are in ``conftest.py``.

Every workflow runs as a user runs it, ``python -m monai.bundle ...`` in a subprocess from the repository root, with
tiny settings (64x64 images, a handful of demo images, 1-2 epochs) passed as ordinary config overrides, and writes
only under pytest's temporary folders. The default set takes about 2-3 minutes on 2 CPU cores; the README's default
command (the full demo training) is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundle"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")

PIXEL_METRICS = ["test_mean_dice", "test_mean_iou"]
OBJECT_METRICS = ["test_object_f1", "test_object_dice", "test_object_hausdorff", "test_aji", "test_pq"]
#: the GlaS challenge's object F1 of a test part: pooled over the images from their (TP, FP, FN), not a mean
POOLED_F1 = "test_object_f1_pooled"

#: inference.json's defaults are the shipped GlaS model's (``--output instances``, images zoomed by 0.2); the models the
#: tests train on the demo set are semantic and squeeze images to img_size, so their inference says so
DEMO_MODEL = ["--output", "semantic", "--image_scale", "$None"]
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


def _train_args(work: dict, out: Path, *extra: str, configs: tuple[str, ...] = (TRAIN,)) -> list[str]:
    return [
        "run", "training", "--config_file", _configs(*configs, work["subset"]),
        *work["common"], "--output_dir", str(out / "eval"), "--ckpt_dir", str(out / "models"), *extra,
    ]  # fmt: skip


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


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


def _eval_output_bias(state: dict, num_classes: int) -> str:
    """The name of the bias of the network's output in eval mode, in a state dict: the last bias with one value per
    class, leaving out the heads that only training uses (MedT's ``global_head.`` / ``local_head.``, the branch
    logits of ``branch_supervision``). Tests shift it to make a briefly trained or untrained network's masks show a
    pattern."""
    out_biases = [k for k, v in state.items() if k.endswith(".bias") and tuple(v.shape) == (num_classes,)]
    return [k for k in out_biases if not k.startswith(("global_head.", "local_head."))][-1]
