"""Where does one segmentation model lose against another? Per-image, boundary and gland-size scores of saved masks.

Compares folders of predicted masks (``<stem>_seg.png``, as ``bundle/configs/inference.json`` writes them at the
images' original size) with the ground truth of a split, at native resolution:

- ``F1``: per-image Dice of the foreground (the metric of ``docs/results.md``), averaged over images;
- ``boundary F1``: the same Dice restricted to a band of ``--band`` pixels on either side of the ground-truth
  boundary (how well the outlines are placed);
- ``gland recall`` by size: the share of ground-truth glands (instances from ``labelinst/`` where the data set has
  them, connected components otherwise) with at least half of their pixels predicted as foreground, in three size
  classes of the glands' areas (``--size-bins``, pixels);
- a per-image table, one column per model.

Example (GlaS held-out split of ``docs/results.md``, masks written by ``inference.json`` for each model)::

    python scripts/error_analysis.py --data-root ../shared/data --dataset glas --split test \\
        --pred "MedT=runs/inference/medt" "Res-UNet=runs/inference/resunet" --out docs/error_analysis_glas.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import measure, segmentation

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from medt_monai.data import dataset_splits  # noqa: E402


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty (as MONAI's ``DiceMetric`` without background)."""
    total = pred.sum() + truth.sum()
    return float("nan") if total == 0 else 2.0 * np.logical_and(pred, truth).sum() / total


def boundary_band(truth: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels of the ground-truth boundary (both sides)."""
    edges = segmentation.find_boundaries(truth, mode="inner")
    return ndimage.binary_dilation(edges, iterations=width)


def instances(label_path: Path, truth: np.ndarray) -> np.ndarray:
    """Gland instances: ``labelinst/<name>`` next to ``labelcol/`` when present, connected components otherwise."""
    inst = label_path.parent.parent / "labelinst" / label_path.name
    if inst.is_file():
        return np.asarray(Image.open(inst))
    return measure.label(truth)


def load_mask(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no predicted mask (run inference.json on the split's images first)")
    return np.asarray(Image.open(path).convert("L")) > 0


def analyse(items: list[dict], preds: dict[str, Path], band: int, bins: tuple[int, int]) -> tuple[dict, dict]:
    """Summary scores per model and per-image Dice per model."""
    per_image: dict[str, dict[str, float]] = {}
    summary = {name: {"f1": [], "boundary": [], "found": [0, 0, 0], "total": [0, 0, 0]} for name in preds}
    for item in items:
        label = Path(item["label"])
        truth = np.asarray(Image.open(label).convert("L")) > 0
        glands = [
            (int(np.searchsorted(bins, r.area, side="right")), r.coords[:, 0], r.coords[:, 1])
            for r in measure.regionprops(instances(label, truth))
        ]
        band_mask = boundary_band(truth, band)
        stem = Path(item["image"]).stem
        per_image[stem] = {}
        for name, folder in preds.items():
            pred = load_mask(folder / f"{stem}_seg.png")
            if pred.shape != truth.shape:
                raise ValueError(f"{folder / (stem + '_seg.png')}: mask {pred.shape}, ground truth {truth.shape}")
            score = dice(pred, truth)
            per_image[stem][name] = score
            summary[name]["f1"].append(score)
            summary[name]["boundary"].append(dice(pred & band_mask, truth & band_mask))
            for size_class, rows, cols in glands:
                summary[name]["total"][size_class] += 1
                summary[name]["found"][size_class] += int(pred[rows, cols].mean() >= 0.5)
    return summary, per_image


def markdown(summary: dict, per_image: dict, band: int, bins: tuple[int, int]) -> str:
    small, large = bins
    names = list(summary)
    counts = next(iter(summary.values()))["total"]
    lines = [
        f"| Model | F1 | Boundary F1 (±{band} px) | Gland recall, small (<{small} px, n={counts[0]}) | "
        f"medium (n={counts[1]}) | large (≥{large} px, n={counts[2]}) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        recall = [100.0 * f / t if t else float("nan") for f, t in zip(s["found"], s["total"])]
        lines.append(
            f"| {name} | {100 * np.nanmean(s['f1']):.2f} | {100 * np.nanmean(s['boundary']):.2f} | "
            + " | ".join(f"{r:.1f}" for r in recall)
            + " |"
        )
    lines += ["", "| Image | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for stem, scores in per_image.items():
        lines.append(f"| {stem} | " + " | ".join(f"{100 * scores[n]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-root", required=True, help="folder holding glas/ and monuseg/ (MedT layout or official downloads)"
    )
    parser.add_argument("--dataset", default="glas", choices=["glas", "monuseg"])
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--pred", nargs="+", required=True, metavar="NAME=DIR", help="folders of <stem>_seg.png masks")
    parser.add_argument("--band", type=int, default=5, help="half width of the boundary band in pixels")
    parser.add_argument("--size-bins", type=int, nargs=2, default=(5000, 20000), help="small/medium/large limits")
    parser.add_argument("--out", help="write the markdown tables here (printed otherwise)")
    args = parser.parse_args()
    preds = {}
    for spec in args.pred:
        name, sep, folder = spec.partition("=")
        if not sep or not Path(folder).is_dir():
            parser.error(f"--pred {spec!r}: expected NAME=DIR with an existing folder")
        preds[name] = Path(folder)
    root = Path(args.data_root) / args.dataset
    items = dataset_splits(
        args.dataset, root=root, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed
    )[args.split]
    bins = tuple(sorted(args.size_bins))
    text = markdown(*analyse(items, preds, args.band, bins), band=args.band, bins=bins)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
