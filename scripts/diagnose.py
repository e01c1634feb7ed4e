"""Why a segmentation network misses: two measurements behind the diagnosis in ``docs/recipes.md``.

``--ceiling``: the resolution ceiling. Each ground-truth mask of the split makes the round trip of the bundle's
evaluation (one-hot mask resized to ``SIZE x SIZE`` bilinearly, resized back bilinearly, argmax); its Dice against
the original mask is the best any network trained at that size can score.

``--ckpt``: where a trained network errs. The checkpoint is run on the split's images through the bundle's own
validation chain (``validate#preprocessing`` of ``train.json``: eval mode, network size, no test-time augmentation),
and its pixel error, false-negative and false-positive rates are reported by distance to the nearest border of MedT's
local patch grid. Errors that crowd at the borders point at the missing context across patches.

``--ckpt ... --stain-scales``: how much the network depends on the stain's density. Every image's optical density
(``-log x`` of its [0, 1] intensities) is multiplied by each factor before the network sees it (``x ** factor``: a
factor below 1 makes the staining lighter, above 1 darker; white stays white), and the mean pixel Dice over the
split's images is reported per factor, at network size as above.

Examples::

    python scripts/diagnose.py --data-root data --dataset glas --split train --ceiling 128 256 512
    python scripts/diagnose.py --data-root data --dataset glas --split validation --ckpt bundle/models/model.pt
    python scripts/diagnose.py --data-root data --dataset glas --split validation --ckpt bundle/models/model.pt \
        --stain-scales 0.5 0.7 1 1.5 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from error_analysis import dice  # scripts/, beside this file

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "bundle" / "configs" / "train.json"
#: distance bands (pixels at network size, inclusive) to the nearest patch border
BANDS = ((0, 0), (1, 2), (3, 5), (6, 9), (10, 15))


def bundle(overrides: dict[str, object]):
    """``train.json`` with ``overrides``, as ``monai.bundle run`` would parse it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(TRAIN))
    parser.update(overrides)
    return parser


def resolution_ceiling(labels: list[torch.Tensor], size: int) -> np.ndarray:
    """Per-mask Dice of each binary ``(H, W)`` mask against its ``size x size`` round trip."""
    scores = []
    for mask in labels:
        one_hot = F.one_hot(mask.long(), 2).permute(2, 0, 1)[None].float()
        small = F.interpolate(one_hot, size=(size, size), mode="bilinear", align_corners=False)
        back = F.interpolate(small, size=mask.shape, mode="bilinear", align_corners=False).argmax(1)[0]
        scores.append(dice(back.numpy().astype(bool), mask.numpy().astype(bool)))
    return np.asarray(scores)


def border_distance(size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` distance of every pixel to the nearest border of a ``grid`` of equal patches (0 on a border)."""
    axes = []
    for length, cells in zip(size, grid):
        position = np.arange(length) % (length // cells)
        axes.append(np.minimum(position, length // cells - 1 - position))
    return np.minimum(axes[0][:, None], axes[1][None, :])


def load_network(parser, ckpt: str) -> torch.nn.Module:
    """The bundle's ``network_def`` with the weights of ``ckpt``, in eval mode."""
    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return network


def network_inputs(preprocessing, items: list[dict]) -> list[tuple[torch.Tensor, np.ndarray]]:
    """``(image, truth)`` of every item through ``preprocessing``: a ``(1, C, H, W)`` float batch and the boolean
    ``(H, W)`` foreground mask, both at network size."""
    samples = []
    for item in items:
        data = preprocessing(dict(item))
        samples.append((data["image"][None].float(), data["label"][0].numpy() > 0))
    return samples


def predicted_mask(network, image: torch.Tensor) -> np.ndarray:
    """Boolean ``(H, W)`` foreground of ``network`` on a ``(1, C, H, W)`` image (argmax over classes)."""
    with torch.inference_mode():
        return network(image).argmax(1)[0].numpy().astype(bool)


def scale_optical_density(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``image`` (intensities in [0, 1]) with its optical density ``-log x`` multiplied by ``factor``: ``x ** factor``.

    Intensities are clamped to at least 1e-3 first, so that black stays finite in optical density.
    """
    return image.clamp(min=1e-3) ** factor


def stain_sensitivity(network, samples, factors: list[float]) -> dict[float, float]:
    """Mean pixel Dice (%) over the :func:`network_inputs` ``samples`` with foreground, per optical-density factor
    (:func:`scale_optical_density`)."""
    samples = [(image, truth) for image, truth in samples if truth.any()]
    return {
        factor: 100 * float(np.mean([dice(predicted_mask(network, scale_optical_density(image, factor)), truth)
                                     for image, truth in samples]))
        for factor in factors
    }  # fmt: skip


def error_profile(network, samples, grid: tuple[int, int]) -> list[dict]:
    """Error, false-negative and false-positive rates (% of pixels) per :data:`BANDS` band of border distance."""
    counts = np.zeros((len(BANDS), 4))  # pixels, errors, false negatives, false positives
    distance = None
    for image, truth in samples:
        pred = predicted_mask(network, image)
        if distance is None or distance.shape != truth.shape:
            distance = border_distance(truth.shape, grid)
        for b, (low, high) in enumerate(BANDS):
            band = (distance >= low) & (distance <= high)
            counts[b] += [
                band.sum(),
                (pred != truth)[band].sum(),
                (~pred & truth)[band].sum(),
                (pred & ~truth)[band].sum(),
            ]
    return [
        {"band_px": f"{low}-{high}", "error": 100 * c[1] / c[0], "false_negative": 100 * c[2] / c[0],
         "false_positive": 100 * c[3] / c[0]}
        for (low, high), c in zip(BANDS, counts)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder holding the data set's folder (e.g. glas/)")
    parser.add_argument("--dataset", default="glas")
    parser.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    parser.add_argument("--seed", type=int, default=0, help="split seed (the bundle's split_seed)")
    parser.add_argument("--ceiling", type=int, nargs="*", default=[], metavar="SIZE", help="network sizes to score")
    parser.add_argument("--ckpt", help="a model.pt of the bundle's network (see --network-name, --img-size)")
    parser.add_argument("--network-name", help="a medt_monai.networks.NETWORKS name (default: train.json's)")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--patch-grid", type=int, nargs=2, default=(4, 4), help="the grid whose borders are measured")
    parser.add_argument(
        "--stain-scales",
        type=float,
        nargs="*",
        default=[],
        metavar="FACTOR",
        help="with --ckpt: optical-density factors to score (1 = the images as they are)",
    )
    args = parser.parse_args()
    overrides = {
        "dataset": args.dataset, "data_dir": str(Path(args.data_root) / args.dataset), "split_seed": args.seed,
        "img_size": args.img_size,
    }  # fmt: skip
    if args.network_name:
        overrides["network_name"] = args.network_name
    config = bundle(overrides)
    items = config.get_parsed_content("splits")[args.split]
    report: dict[str, object] = {"dataset": args.dataset, "split": args.split, "images": len(items)}
    if args.ceiling:
        from monai.transforms import LoadImage

        load = LoadImage(image_only=True)
        labels = [torch.as_tensor(np.asarray(load(item["label"]))).squeeze() > 0 for item in items]
        report["ceiling_dice"] = {}
        for size in args.ceiling:
            scores = resolution_ceiling([mask.T for mask in labels], size)  # LoadImage reads (W, H)
            report["ceiling_dice"][size] = {"mean": 100 * scores.mean(), "min": 100 * scores.min()}
    if args.stain_scales and not args.ckpt:
        parser.error("--stain-scales needs --ckpt")
    if args.ckpt:
        network = load_network(config, args.ckpt)
        samples = network_inputs(config.get_parsed_content("validate#preprocessing"), items)
        report["error_by_border_distance"] = error_profile(network, samples, tuple(args.patch_grid))
        if args.stain_scales:
            report["dice_by_stain_scale"] = stain_sensitivity(network, samples, args.stain_scales)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
