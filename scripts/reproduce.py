"""Reproduce the paper's comparison (Table 1/2 and the ablation) under one honest protocol, through the bundle.

Every model is trained and evaluated by the bundle itself (``python -m monai.bundle run`` with overrides), one
subprocess per model, so what this script measures is exactly what a user gets:

- splits: ``medt_monai.data.dataset_splits`` (seeded). GlaS: validation and held-out test carved out of the 85
  training images (``--val-fraction`` / ``--test-fraction`` of all images); MoNuSeg: the official 14 test images are
  the test set, validation carved out of the 30 training images.
- training: ``bundle/configs/train.json`` with ``--recipe paper`` (default: ``bundle/configs/paper_recipe.json``,
  the paper's Adam, lr 1e-3, batch 4, cross-entropy, flips; gates frozen for the first ``min(10, epochs // 3)``
  epochs) or ``--recipe bundle`` (train.json's own default recipe, ``docs/recipes.md``) for ``--epochs`` epochs;
  the checkpoint with the best validation Dice is kept (model selection on validation only).
- evaluation: ``bundle/configs/evaluate.json`` on the test split, in eval mode, predictions resized back to each
  image's original size; per-image foreground Dice (= F1 for binary masks) and IoU, averaged over images as the
  paper does. An image with an empty ground-truth mask would be left out of the mean (MONAI's ``ignore_empty``);
  GlaS and MoNuSeg have none. Where the test images have instance labels, also the object-level metrics of
  ``medt_monai.metrics`` (object F1 / Dice / Hausdorff of GlaS, AJI and PQ), averaged over images.

Results go to ``<out>/<dataset>/<model>/`` (bundle outputs, ``result.json``, logs) and the tables to
``<out>/results.csv`` / ``<out>/results.md``. Finished models are skipped when the script is run again, and an
interrupted training resumes from its last epoch (the bundle's resume), so the script can be restarted at will.

Example (what produced ``docs/results.md``)::

    python scripts/reproduce.py --data-root ../shared/data --datasets glas:128:30 monuseg:256:8 --jobs 2 --threads 1
    python scripts/figures.py --runs runs/reproduce --out docs/figures
    # the bundle's recipe (docs/recipes.md)
    python scripts/reproduce.py --data-root ../shared/data --recipe bundle --datasets glas:128:100 monuseg:256:30 \
        --models medt resunet --out runs/reproduce_ours --jobs 1 --threads 1
    # the shipped bundle/models/model.pt: medt_fullres_zero_init_branch_supervision on all 85 GlaS training images,
    # the bundle's recipe, the last of 200 epochs (no held-out score left: its expected score is the protocol runs',
    # docs/recipes.md)
    python scripts/reproduce.py --data-root ../shared/data --recipe bundle --datasets glas:128:200 \
        --final medt_fullres_zero_init_branch_supervision --threads 2 --out runs/ship
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medt_monai.networks import NETWORKS, REMOVED_NAMES, network_and_arguments

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "bundle" / "configs" / "train.json"
EVALUATE = REPO / "bundle" / "configs" / "evaluate.json"
#: ``--recipe`` -> config files merged after ``train.json``: the paper's recipe, or the bundle's default
RECIPES = {"paper": [REPO / "bundle" / "configs" / "paper_recipe.json"], "bundle": []}


def config_files(recipe: str, *extra: Path) -> list[str]:
    """The config files of ``monai.bundle run``: train.json, ``extra`` (evaluate.json), the recipe last (so that its
    ``tta`` wins over evaluate.json's)."""
    return [str(f) for f in (TRAIN, *extra, *RECIPES[recipe])]


def train_command(recipe: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(config_files(recipe))]


#: the models of the tables: every network of the registry except the benchmark-only SwinUNETR, then the variants under
#: their row labels (the names of bundles <= 0.13: ablations, the other gate placement, the bundle's recipe network)
MODELS = [name for name in NETWORKS if name != "swin_unetr"] + list(REMOVED_NAMES)
#: how the tables name each model
LABELS = {
    label: NETWORKS[label].description if label in NETWORKS else f"{REMOVED_NAMES[label][0]} {REMOVED_NAMES[label][1]}"
    for label in MODELS
}
#: the paper's F1 / IoU (Tables 1-3 of Valanarasu et al. 2021) where it reports the model
PAPER = {
    "glas": {
        "unet": (77.78, 65.34),
        "resunet": (78.83, 65.95),
        "unetpp": (78.03, 65.55),
        "axial_unet": (76.26, 63.03),
        "gated_axial_unet": (79.91, 67.85),
        "logo": (79.68, 67.69),
        "medt": (81.02, 69.61),
    },
    "monuseg": {
        "unet": (79.43, 65.99),
        "resunet": (79.49, 66.07),
        "unetpp": (79.49, 66.04),
        "axial_unet": (76.83, 62.49),
        "gated_axial_unet": (76.44, 62.01),
        "logo": (79.56, 66.17),
        "medt": (79.55, 66.17),
    },
}


#: the object-level metrics evaluate.json reports where the test images have instance labels (``test_<name>``)
OBJECT_METRICS = ["object_f1", "object_dice", "object_hausdorff", "aji", "pq"]


def bundle_args(overrides: dict[str, object]) -> list[str]:
    """``{"key": value}`` -> ``["--key", "value", ...]`` for ``python -m monai.bundle run``."""
    args = []
    for key, value in overrides.items():
        # a dict as a Python literal: the command line's parser reads True/False, not JSON's true/false, as booleans
        text = value if isinstance(value, str) else repr(value) if isinstance(value, dict) else json.dumps(value)
        args += [f"--{key}", text]
    return args


def run_logged(cmd: list[str], log: Path, env: dict[str, str]) -> float:
    """Run ``cmd`` with output appended to ``log``; return its wall time in seconds; raise with the log's tail on failure."""
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text().splitlines()[-30:]
        raise RuntimeError(f"{cmd[:6]} ... failed with exit code {code}; log {log}:\n" + "\n".join(tail))
    return seconds


def training_minutes(log: Path) -> float:
    """Minutes spent in training and validation epochs, summed from the ignite epoch times in the training runs' log
    (robust to interrupted and resumed runs; an epoch cut off by a kill is not counted; start-up is not included)."""
    seconds, training = 0.0, False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("$ "):
            training = " run training " in line
        match = re.search(r"Epoch\[\d+\] Complete\. Time taken: (\d+):(\d+):([\d.]+)", line)
        if training and match:
            h, m, sec = match.groups()
            seconds += 3600 * int(h) + 60 * int(m) + float(sec)
    return seconds / 60


def per_image(csv_path: Path) -> dict[str, float]:
    """Per-image values from a MetricsSaver ``*_raw.csv`` (comma separated: filename, class values..., mean)."""
    values = {}
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        values[Path(row[0]).name] = float(row[-1])
    return values


def overrides(
    dataset: str,
    size: int,
    model: str,
    run_dir: Path,
    data_root: str,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> dict[str, object]:
    """The bundle overrides (``{config id: value}``) that train and evaluate ``model`` (a row label, see
    :func:`medt_monai.networks.network_and_arguments`) on ``dataset`` in ``run_dir``."""
    network, arguments = network_and_arguments(model)
    return {
        "dataset": dataset,
        "data_dir": str((Path(data_root) / dataset).resolve()),
        "img_size": size,
        "network_name": network,
        "network_args": arguments,
        "split_seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "ckpt_dir": str(run_dir),
        "output_dir": str(run_dir),
    }


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a bundle subprocess limited to ``threads`` threads."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def bundle_config(common: dict[str, object], recipe: str = "paper"):
    """A ``monai.bundle.ConfigParser`` of ``train.json`` + ``recipe`` with ``common`` applied, as ``monai.bundle run``
    would."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(recipe))
    for key, value in common.items():
        parser[key] = json.loads(value.replace("'", '"')) if isinstance(value, str) and value.startswith("[") else value
    return parser


def run_model(dataset: str, size: int, epochs: int, model: str, args: argparse.Namespace) -> dict:
    """Train (resuming if interrupted) and evaluate one model on one data set; returns (and stores) its result row."""
    run_dir = Path(args.out).resolve() / dataset / model
    result_file = run_dir / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    common = overrides(dataset, size, model, run_dir, args.data_root, args.seed, args.val_fraction, args.test_fraction)
    env = thread_env(args.threads)
    log = run_dir / "log.txt"
    if not (run_dir / "training_done").exists():  # an interrupted training resumes (the bundle's own resume)
        run_logged(train_command(args.recipe) + bundle_args({**common, "max_epochs": epochs}), log, env)
        (run_dir / "training_done").touch()
    configs = json.dumps(config_files(args.recipe, EVALUATE))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs]
    eval_seconds = run_logged(cmd + bundle_args({**common, "ckpt_path": str(run_dir / "model.pt")}), log, env)
    dice = per_image(run_dir / "test_mean_dice_raw.csv")
    iou = per_image(run_dir / "test_mean_iou_raw.csv")
    with open(run_dir / "metrics.csv") as f:
        means = {name: float(value) for name, value in csv.reader(f)}
    result = {
        "dataset": dataset,
        "model": model,
        "recipe": args.recipe,
        "img_size": size,
        "epochs": epochs,
        "f1": 100 * sum(dice.values()) / len(dice),
        "iou": 100 * sum(iou.values()) / len(iou),
        "test_images": len(dice),
        **{key: means[f"test_{key}"] for key in OBJECT_METRICS if f"test_{key}" in means},
        "parameters": count_parameters(common, args.recipe),
        "train_minutes": training_minutes(log),
        "eval_seconds": eval_seconds,
        "threads": args.threads,
        **best_validation(run_dir),
    }
    result_file.write_text(json.dumps(result, indent=1))
    return result


def count_parameters(common: dict, recipe: str) -> int:
    """Trainable parameters of the network the bundle builds for these overrides."""
    return sum(p.numel() for p in bundle_config(common, recipe).get_parsed_content("network_def").parameters())


def train_final(dataset: str, size: int, epochs: int, model: str, args: argparse.Namespace) -> Path:
    """Train ``model`` on every labelled image of ``dataset`` (train + validation + test of the protocol) for
    ``epochs`` epochs and return its ``model.pt`` (the shipped model).

    Its recipe and epoch budget are the protocol's, and its expected scores are the protocol run's: the images it
    could be scored on are all in its training set. ``model.pt`` holds the last epoch's weights
    (``--model_selection last_epoch``), chosen by no image; the validation the bundle still logs after each epoch is
    on the protocol's validation images, which are training images here.
    """
    from medt_monai.data import dataset_splits

    run_dir = Path(args.out).resolve() / dataset / f"final_{model}"
    done = run_dir / "training.json"
    if done.exists():
        return run_dir / "model.pt"
    run_dir.mkdir(parents=True, exist_ok=True)
    common = overrides(dataset, size, model, run_dir, args.data_root, args.seed, args.val_fraction, args.test_fraction)
    splits = dataset_splits(dataset, common["data_dir"], args.val_fraction, args.test_fraction, args.seed)
    datalist = run_dir / "datalist.json"
    everything = splits["train"] + splits["validation"] + splits["test"]
    datalist.write_text(
        json.dumps({"training": everything, "validation": splits["validation"], "test": splits["test"]}, indent=1)
    )
    common.update(dataset="decathlon", data_dir=str(datalist), max_epochs=epochs, model_selection="last_epoch")
    run_logged(train_command(args.recipe) + bundle_args(common), run_dir / "log.txt", thread_env(args.threads))
    done.write_text(json.dumps({"minutes": training_minutes(run_dir / "log.txt"), "images": len(everything)}))
    return run_dir / "model.pt"


def best_validation(run_dir: Path) -> dict:
    """Best validation Dice / IoU and its epoch, from the run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir)).Reload()
    dice = events.Scalars("val_mean_dice")
    iou = {e.step: e.value for e in events.Scalars("val_mean_iou")}
    best = max(dice, key=lambda e: e.value)
    return {"val_f1": 100 * best.value, "val_iou": 100 * iou[best.step], "best_epoch": best.step}


def tables(results: list[dict], out: Path) -> None:
    """Write ``results.csv`` and ``results.md`` (one table per data set, with the paper's numbers beside ours)."""
    keys = [
        "dataset",
        "model",
        "img_size",
        "epochs",
        "best_epoch",
        "val_f1",
        "val_iou",
        "f1",
        "iou",
        "test_images",
        *OBJECT_METRICS,
        "parameters",
        "train_minutes",
        "eval_seconds",
        "threads",
    ]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == dataset]
        lines += [
            f"### {dataset} ({rows[0]['img_size']}×{rows[0]['img_size']}, {rows[0]['test_images']} test images)",
            "",
            "| Model | Test F1 | Test IoU | Paper F1 / IoU | Object F1 / Dice / Hausdorff | AJI / PQ | "
            "Val F1 (best epoch) | Parameters | Epochs | Training time |",
            "|---" * 10 + "|",
        ]
        for r in rows:
            paper = PAPER.get(dataset, {}).get(r["model"])
            glas = (f"{100 * r['object_f1']:.2f} / {100 * r['object_dice']:.2f} / {r['object_hausdorff']:.1f}"
                    if "object_f1" in r else "–")  # fmt: skip
            nuclei = f"{100 * r['aji']:.2f} / {100 * r['pq']:.2f}" if "aji" in r else "–"
            lines.append(
                f"| {LABELS[r['model']]} | {r['f1']:.2f} | {r['iou']:.2f} | "
                f"{f'{paper[0]:.2f} / {paper[1]:.2f}' if paper else '–'} | {glas} | {nuclei} | "
                f"{r['val_f1']:.2f} ({r['best_epoch']}) | {r['parameters']:,} | {r['epochs']} | "
                f"{r['train_minutes']:.1f} min |"
            )
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-root", required=True, help="folder holding glas/ and monuseg/ (MedT layout or official downloads)"
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["glas:128:400", "monuseg:512:400"],
        help="DATASET:SIZE:EPOCHS entries (the paper: glas:128:400 monuseg:512:400)",
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--recipe",
        default="paper",
        choices=list(RECIPES),
        help="paper: bundle/configs/paper_recipe.json over train.json (the table of docs/results.md); "
        "bundle: train.json's default recipe (docs/recipes.md)",
    )
    parser.add_argument("--out", default=str(REPO / "runs" / "reproduce"))
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.15,
        help="carved held-out share (GlaS; MoNuSeg has its official test split)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="models trained at the same time")
    parser.add_argument("--threads", type=int, default=None, help="threads per job (default: CPU cores / jobs)")
    parser.add_argument(
        "--final",
        metavar="MODEL",
        choices=list(MODELS),
        help="instead of the table: train MODEL on all images of the first --datasets entry for its "
        "epoch budget; prints the path of its model.pt (the shipped bundle/models/model.pt)",
    )
    parser.add_argument("--tables-only", action="store_true", help="only rebuild results.csv/.md from --out")
    args = parser.parse_args()
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    for entry in args.datasets:
        if not (Path(args.data_root) / entry.split(":")[0]).is_dir():
            parser.error(f"{Path(args.data_root) / entry.split(':')[0]}: data folder not found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tables_only:  # rebuild the tables from the finished runs in --out
        results = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/result.json"))]
        for r in results:
            r["train_minutes"] = training_minutes(out / r["dataset"] / r["model"] / "log.txt")
        order = {m: i for i, m in enumerate(MODELS)}
        tables(sorted(results, key=lambda r: (r["dataset"], order[r["model"]])), out)
        print((out / "results.md").read_text())
        return
    if args.final:
        dataset, size, epochs = args.datasets[0].split(":")
        print(train_final(dataset, int(size), int(epochs), args.final, args))
        return
    tasks = []
    for entry in args.datasets:
        dataset, size, epochs = entry.split(":")
        tasks += [(dataset, int(size), int(epochs), model) for model in args.models]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_model, *task, args) for task in tasks]
        results = []
        for task, future in zip(tasks, futures):
            try:
                results.append(future.result())
                print(f"done: {task}", flush=True)
            except Exception as error:  # keep the other models going; the failure is reported and the exit code set
                print(f"FAILED {task}: {error}", file=sys.stderr, flush=True)
    tables(results, out)
    print((out / "results.md").read_text())
    if len(results) < len(tasks):
        sys.exit(1)


if __name__ == "__main__":
    main()
