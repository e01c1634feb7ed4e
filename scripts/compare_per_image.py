"""Paired per-image comparison of two evaluations: the decision rule of the cross-validated rounds
(``docs/research/recipes.md``).

Each side is one or more ``metrics_per_image.csv`` files written by ``evaluate.json`` (for cross-validation, one per
fold: every image is scored once, by the fold network that did not train on it). Images are paired by file name; for
every metric the script prints both means, the mean paired difference (candidate - baseline) and its standard error
(sample standard deviation of the differences over sqrt(n)), and the difference in standard errors::

    python scripts/compare_per_image.py --baseline RUN_A/fold*/metrics_per_image.csv \
        --candidate RUN_B/fold*/metrics_per_image.csv
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

#: lower is better for these columns; for the others higher is better.
LOWER_IS_BETTER = ("test_object_hausdorff",)


def read_per_image(paths: list[Path]) -> dict[str, dict[str, float]]:
    """Scores by image file name (the base name) over ``paths``.

    Raises:
        ValueError: a file without a ``filename`` column, or an image scored twice.
    """
    scores: dict[str, dict[str, float]] = {}
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "filename" not in reader.fieldnames:
                raise ValueError(f"{path}: not a per-image metrics table (no 'filename' column).")
            for row in reader:
                name = Path(row["filename"]).name
                if name in scores:
                    raise ValueError(f"{path}: image {name} is scored twice across the given tables.")
                scores[name] = {k: float(v) for k, v in row.items() if k not in ("filename", "group") and v != ""}
    return scores


def paired_differences(
    baseline: dict[str, dict[str, float]], candidate: dict[str, dict[str, float]]
) -> dict[str, tuple[int, float, float, float, float]]:
    """Per metric: (n, baseline mean, candidate mean, mean difference, its standard error) over the images both score.

    Raises:
        ValueError: the two sides share fewer than 2 images.
    """
    names = sorted(baseline.keys() & candidate.keys())
    if len(names) < 2:
        raise ValueError(f"the two sides share {len(names)} image(s); a paired comparison needs at least 2.")
    metrics = [m for m in baseline[names[0]] if m in candidate[names[0]]]
    result = {}
    for metric in metrics:
        pairs = [(baseline[n][metric], candidate[n][metric]) for n in names]
        pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
        n = len(pairs)
        diffs = [b - a for a, b in pairs]
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        result[metric] = (n, sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n, mean, sd / math.sqrt(n))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, nargs="+", required=True, help="per-image tables of the baseline")
    parser.add_argument("--candidate", type=Path, nargs="+", required=True, help="per-image tables of the candidate")
    args = parser.parse_args()
    table = paired_differences(read_per_image(args.baseline), read_per_image(args.candidate))
    print("| metric | images | baseline | candidate | difference ± SE | in SE (+ = candidate better) |")
    print("|---|---|---|---|---|---|")
    for metric, (n, base, cand, diff, se) in table.items():
        scale = 1.0 if metric in LOWER_IS_BETTER else 100.0
        better = -diff if metric in LOWER_IS_BETTER else diff
        in_se = better / se if se > 0 else float("inf")
        print(
            f"| {metric} | {n} | {base * scale:.2f} | {cand * scale:.2f} | {diff * scale:+.2f} ± {se * scale:.2f} "
            f"| {in_se:+.1f} |"
        )


if __name__ == "__main__":
    main()
