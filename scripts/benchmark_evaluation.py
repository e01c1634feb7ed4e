"""What the object-level metrics cost in the bundle's evaluation: ``evaluate.json`` with and without them, side by side.

Both variants run in one process and alternate (without, with, without, with, ...) on the same images with the same
checkpoint, so load from other processes on a shared machine hits both alike. A short untimed warm-up run (two
images) comes first. Reported: the evaluator's wall time of every run, the time spent inside the object metrics
(``ObjectMetric._compute_tensor``, timed in the same runs), the medians, and two ratios: of the median wall times,
and (pixel-only time + object-metric time) / pixel-only time, which the machine's load disturbs less.

Example (the 85 GlaS training images as a stand-in for the 80 official test images, the shipped MedT weights)::

    python scripts/benchmark_evaluation.py --dataset glas --data-dir ../shared/data/glas --split all --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [str(REPO / "bundle" / "configs" / "train.json"), str(REPO / "bundle" / "configs" / "evaluate.json")]
DATA = {
    "test": "$@splits['test']",
    "all": "$@splits['train'] + @splits['validation'] + @splits['test']",
}


def config(overrides: dict):
    """train.json + evaluate.json with ``overrides``, as a ``ConfigParser``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS)
    parser.update({"bundle_root": str(REPO / "bundle"), **overrides})  # a bare parser's root would be the cwd
    return parser


def evaluator(overrides: dict):
    """The ``validate#evaluator`` of train.json + evaluate.json with ``overrides``."""
    return config(overrides).get_parsed_content("validate#evaluator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="glas", help="a medt_monai.data.dataset_splits name")
    parser.add_argument("--data-dir", help="the data set's root (not needed for demo)")
    parser.add_argument("--split", default="all", choices=sorted(DATA), help="the test split, or every image")
    parser.add_argument("--ckpt-path", help="checkpoint (default: the bundle's models/model.pt)")
    parser.add_argument("--network-name", help="a medt_monai.networks.NETWORKS name (default: train.json's)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each variant")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2 on the reference machine)")
    args = parser.parse_args()
    for name in ("data_dir", "ckpt_path"):  # relative to where the script was started
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    os.chdir(REPO)  # train.json finds the bundle from the repository root
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(args.threads)
    from medt_monai.metrics import ObjectMetric

    spent = [0.0]
    compute = ObjectMetric._compute_tensor

    def timed(self, *a, **k):  # time inside every object metric
        start = time.perf_counter()
        try:
            return compute(self, *a, **k)
        finally:
            spent[0] += time.perf_counter() - start

    ObjectMetric._compute_tensor = timed
    out = Path(tempfile.mkdtemp(prefix="benchmark_evaluation-"))  # the runs' CSV files; removed at the end
    try:
        run_all(args, out, spent)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_all(args: argparse.Namespace, out: Path, spent: list[float]) -> None:
    """The warm-up and the alternating timed runs; prints one JSON line per run and a summary line."""
    common = {"dataset": args.dataset, "data_dir": args.data_dir}
    for name in ("network_name", "ckpt_path"):
        if getattr(args, name):
            common[name] = getattr(args, name)
    warmup = evaluator({**common, "validate#dataset#data": "$@splits['test'][:2]", "output_dir": str(out / "warmup")})
    warmup.run()
    times: dict[str, list[float]] = {"pixel metrics only": [], "with object metrics": []}
    inside: list[float] = []
    images = 0
    for repeat in range(args.repeats):
        for name, on in (("pixel metrics only", False), ("with object metrics", True)):
            run = evaluator({**common, "validate#dataset#data": DATA[args.split], "object_metrics": on,
                             "output_dir": str(out / f"{int(on)}_{repeat}")})  # fmt: skip
            images = len(run.data_loader.dataset)
            spent[0], start = 0.0, time.perf_counter()
            run.run()
            times[name].append(time.perf_counter() - start)
            if on:
                inside.append(spent[0])
            print(json.dumps({"variant": name, "repeat": repeat, "images": images, "seconds": times[name][-1],
                              "object_metric_seconds": spent[0]}), flush=True)  # fmt: skip
    medians = {name: statistics.median(t) for name, t in times.items()}
    pixel, metrics = medians["pixel metrics only"], statistics.median(inside)
    network = config(common).get_parsed_content("network_name")
    print(json.dumps({"images": images, "network": network, "threads": args.threads,
                      "median_seconds": medians, "median_object_metric_seconds": metrics,
                      "ratio_of_medians": medians["with object metrics"] / pixel,
                      "ratio_pixel_plus_metrics": (pixel + metrics) / pixel}))  # fmt: skip


if __name__ == "__main__":
    main()
