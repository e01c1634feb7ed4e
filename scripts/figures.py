"""Figures of a ``scripts/reproduce.py`` run: qualitative results (the paper's Fig. 3), training curves, learned gates.

Needs matplotlib (``pip install -e ".[figures]"``). For every data set in ``--runs``:

- ``<dataset>_qualitative.png``: test images | ground truth | U-Net | Res-UNet | Axial U-Net | MedT, as the paper's
  Fig. 3, each shown at the network's input size (the bundle's evaluation preprocessing), predictions in eval mode;
- ``<dataset>_curves.png``: training loss per epoch and validation Dice per epoch of every model (the runs'
  TensorBoard logs), the selected (best-validation) epoch marked;
- ``<dataset>_gates.png``: the learned gates ``G_Q, G_K, G_V1, G_V2`` (Eq. 3) of every gated attention layer, for
  both gate placements of MedT and the Gated Axial U-Net, in the selected (best-validation) checkpoint. Gates start
  at 0.1, 0.1, 1.0, 0.1.

Example::

    python scripts/figures.py --runs runs/reproduce --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce import LABELS, bundle_config, overrides  # noqa: E402

QUALITATIVE_MODELS = ["unet", "resunet", "axial_unet", "medt"]
GATED_MODELS = ["medt", "medt_effective", "gated_axial_unet", "gated_axial_unet_effective"]


def load_run(run_dir: Path, data_root: str):
    """The network of a finished run with its selected (best-validation) weights, in eval mode, and its config."""
    result = json.loads((run_dir / "result.json").read_text())
    common = overrides(result["dataset"], result["img_size"], result["model"], run_dir, data_root)
    config = bundle_config(common, result.get("recipe", "paper"))
    network = config.get_parsed_content("network_def")
    state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))
    return network.eval(), config


def qualitative(runs: Path, dataset: str, data_root: str, out: Path, count: int) -> Path | None:
    models = [m for m in QUALITATIVE_MODELS if (runs / dataset / m / "result.json").exists()]
    if not models:
        return None
    loaded = {m: load_run(runs / dataset / m, data_root) for m in models}
    config = loaded[models[0]][1]
    transform = config.get_parsed_content("validate#preprocessing")
    test = config.get_parsed_content("splits")["test"][:count]
    columns = ["Input", "Ground truth"] + [LABELS[m].split(" (")[0].split(",")[0] for m in models]
    fig, axes = plt.subplots(len(test), len(columns), figsize=(2 * len(columns), 2 * len(test)), squeeze=False)
    for row, item in enumerate(test):
        sample = transform(item)
        image, label = sample["image"], sample["label"]
        panels = [
            image.permute(1, 2, 0).clamp(0, 1).numpy() if image.shape[0] == 3 else image[0].numpy(),
            label[0].numpy(),
        ]
        with torch.inference_mode():
            for m in models:
                panels.append(loaded[m][0](image[None].as_tensor()).argmax(1)[0].numpy())
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=9)
            if col == 0:
                ax.set_ylabel(Path(item["image"]).stem, fontsize=8)
    fig.tight_layout()
    path = out / f"{dataset}_qualitative.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curves(runs: Path, dataset: str, out: Path) -> Path | None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = [json.loads(p.read_text()) for p in sorted((runs / dataset).glob("*/result.json"))]
    if not results:
        return None
    fig, (loss_ax, dice_ax) = plt.subplots(1, 2, figsize=(13, 5))
    colors = list(plt.cm.tab10.colors) + ["black", "gray"]
    for i, result in enumerate(results):
        events = EventAccumulator(str(runs / dataset / result["model"])).Reload()
        # by iteration; an iteration logged twice (an epoch cut off by a kill and run again on resume) counts once
        loss = dict(sorted({e.step: e.value for e in events.Scalars("train_loss")}.items()))
        per_epoch = max(loss) // result["epochs"]
        epoch_loss = np.array([loss.get(i, np.nan) for i in range(1, per_epoch * result["epochs"] + 1)])
        epoch_loss = np.nanmean(epoch_loss.reshape(result["epochs"], per_epoch), axis=1)
        epochs = np.arange(1, result["epochs"] + 1)
        (line,) = loss_ax.plot(epochs, epoch_loss, label=LABELS[result["model"]], color=colors[i % len(colors)])
        dice = dict(sorted({e.step: e.value for e in events.Scalars("val_mean_dice")}.items()))
        dice_ax.plot(list(dice), [100 * v for v in dice.values()], color=line.get_color())
        dice_ax.plot([result["best_epoch"]], [result["val_f1"]], "o", color=line.get_color())
    loss_ax.set(xlabel="epoch", ylabel="training loss (mean over the epoch)", yscale="log")
    dice_ax.set(xlabel="epoch", ylabel="validation Dice / F1 (%), dot = selected epoch")
    loss_ax.legend(fontsize=8)
    fig.suptitle(f"{dataset}: training curves")
    fig.tight_layout()
    path = out / f"{dataset}_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gates(runs: Path, dataset: str, data_root: str, out: Path) -> Path | None:
    from medt_monai.networks.gates import gate_values

    models = [m for m in GATED_MODELS if (runs / dataset / m / "result.json").exists()]
    if not models:
        return None
    fig, axes = plt.subplots(len(models), 1, figsize=(12, 3 * len(models)), squeeze=False)
    names = ["G_Q", "G_K", "G_V1", "G_V2"]
    for ax, m in zip(axes[:, 0], models):
        values = gate_values(load_run(runs / dataset / m, data_root)[0])
        layers = list(values)
        table = torch.stack([values[name] for name in layers]).numpy()  # (layers, 4)
        x = np.arange(len(layers))
        for g in range(4):
            ax.bar(x + (g - 1.5) * 0.2, table[:, g], width=0.2, label=names[g])
        ax.axhline(0.1, color="gray", lw=0.5, ls="--")
        ax.axhline(1.0, color="gray", lw=0.5, ls=":")
        ax.set_xticks(
            x,
            [n.replace("global_branch.", "g.").replace("encoder.", "") for n in layers],
            rotation=60,
            ha="right",
            fontsize=6,
        )
        epoch = json.loads((runs / dataset / m / "result.json").read_text())["best_epoch"]
        ax.set_title(
            f"{LABELS[m]}: gates per attention layer of the selected checkpoint (epoch {epoch}; initial "
            "0.1 / 0.1 / 1.0 / 0.1; frozen for the first min(10, epochs // 3) epochs)",
            fontsize=9,
        )
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    path = out / f"{dataset}_gates.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/reproduce", help="the --out folder of scripts/reproduce.py")
    parser.add_argument(
        "--data-root", required=True, help="folder holding glas/ and monuseg/ (MedT layout or official downloads)"
    )
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--count", type=int, default=4, help="test images in the qualitative figure")
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    if not runs.is_dir():
        parser.error(f"{runs}: no such run folder (run scripts/reproduce.py first)")
    out.mkdir(parents=True, exist_ok=True)
    for dataset in sorted(p.name for p in runs.iterdir() if p.is_dir()):
        for path in (
            qualitative(runs, dataset, args.data_root, out, args.count),
            curves(runs, dataset, out),
            gates(runs, dataset, args.data_root, out),
        ):
            if path is not None:
                print(path)


if __name__ == "__main__":
    main()
