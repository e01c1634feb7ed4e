"""scripts/benchmark.py: the rows it reports, run-time options side by side, and its errors for bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_rows_for_every_model_mode_and_option_in_one_run(tmp_path):
    out = tmp_path / "rows.json"
    result = _run(
        "--models", "medt_global", "medt_global@channels_last", "--sizes", "64:2", "--iters", "1", "--warmup", "0",
        "--no-memory", "--profile", "medt_global", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    rows = summary["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [
        ("medt_global", "eval"), ("medt_global@channels_last", "eval"),
        ("medt_global", "train"), ("medt_global@channels_last", "train"),
    ]  # fmt: skip
    for row in rows:
        assert row["median_s"] > 0 and row["images_per_s"] == row["batch"] / row["median_s"]
        assert row["params"] == 68_938
    # the same network, counted the same way whatever its memory format; a training step costs about 3 forwards
    eval_flops = {r["gflop_per_image"] for r in rows if r["mode"] == "eval"}
    train_flops = {r["gflop_per_image"] for r in rows if r["mode"] == "train"}
    assert len(eval_flops) == len(train_flops) == 1
    assert 2.5 < train_flops.pop() / eval_flops.pop() < 3.5
    assert "| medt_global@channels_last | 64x64 x2 | eval |" in result.stdout
    # --profile: where the time goes, by operator, for both modes
    for mode in ("eval", "train"):
        profiled = summary["profile"][mode]
        assert profiled["total_ms"] > 0 and 0 < sum(profiled["top_ms"].values()) <= profiled["total_ms"]
        assert f"profile medt_global 64x64 x2 {mode}:" in result.stdout


def test_bad_arguments_are_named(tmp_path):
    result = _run("--original", str(tmp_path), "--models", "medt", "--sizes", "64:1", "--modes", "eval")
    assert result.returncode != 0 and str(tmp_path / "lib" / "models" / "axialnet.py") in result.stderr
    result = _run("--models", "medt@fast", "--sizes", "64:1", "--modes", "eval")
    assert result.returncode != 0 and "unknown option(s) ['fast'] in model name 'medt@fast'" in result.stderr
