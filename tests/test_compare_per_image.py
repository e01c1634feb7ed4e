"""scripts/compare_per_image.py: the paired per-image differences of the decision rule, on a hand-computed case."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import compare_per_image  # noqa: E402


def _table(path: Path, rows: list[tuple[str, float]]) -> Path:
    path.write_text("filename,group,test_aji\n" + "".join(f"some/dir/{n},all,{v}\n" for n, v in rows))
    return path


def test_paired_difference_and_standard_error(tmp_path):
    # two folds on the baseline side, one table on the candidate side; images paired by base name
    base = [
        _table(tmp_path / "b0.csv", [("a.png", 0.5), ("b.png", 0.6)]),
        _table(tmp_path / "b1.csv", [("c.png", 0.7)]),
    ]
    cand = [_table(tmp_path / "c.csv", [("c.png", 0.9), ("a.png", 0.6), ("b.png", 0.6)])]
    ((n, b, c, diff, se),) = compare_per_image.paired_differences(
        compare_per_image.read_per_image(base), compare_per_image.read_per_image(cand)
    ).values()
    # differences 0.1, 0.0, 0.2: mean 0.1, sample SD 0.1, SE 0.1 / sqrt(3)
    assert n == 3
    assert b == pytest.approx(0.6) and c == pytest.approx(0.7)
    assert diff == pytest.approx(0.1) and se == pytest.approx(0.1 / 3**0.5)


def test_an_image_scored_twice_is_refused(tmp_path):
    tables = [_table(tmp_path / "f0.csv", [("a.png", 0.5)]), _table(tmp_path / "f1.csv", [("a.png", 0.6)])]
    with pytest.raises(ValueError, match=r"f1\.csv: image a\.png is scored twice"):
        compare_per_image.read_per_image(tables)
