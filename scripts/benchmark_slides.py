"""Speed and peak memory of the slide command (``inference.json`` + ``inference_wsi.json``) on synthetic slides.

For every slide size, each network runs the slide command in a fresh subprocess (``OMP_NUM_THREADS=--threads``), one
after the other within the size (so load from other processes hits them alike); reported: level-0 megapixels per
minute of wall time (the whole slide, glass included, and the tissue blocks' share), and the process's peak resident
memory (``ru_maxrss`` of the child). The weights are untrained unless ``--ckpt NETWORK=PATH`` gives trained ones;
speed and memory hardly depend on them, but the number of objects does, and an untrained network's hundreds of
spurious objects cost polygon and per-object time. The network runs once per window (``--tta false --tta_shifts 1``)
unless ``--tta`` / ``--tta_shifts`` say otherwise; the bundle's defaults run it 16 times per window (4 flips × 2 × 2
window grids).

The synthetic slides are tiled pyramidal TIFFs (3 levels, deflate) at ``--mpp`` micrometres per pixel: an H&E-like
pattern (pink stroma with purple glands) inside an ellipse covering about 60 % of the slide, glass around it
(``--tissue full``: everywhere but a 512-pixel glass border, so that every block inside is full of tissue whatever
the slide's size), generated tile by tile so that writing a 20k x 20k slide does not hold it in memory::

    python scripts/benchmark_slides.py --sizes 10000 20000 --networks medt resunet --threads 2 --work_dir /tmp/bench \
        --ckpt medt=bundle/models/model.pt resunet=RESUNET_RUN/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medt_monai.inferers import GLASS_RGB
from medt_monai.networks import get_network

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundle" / "configs"
TILE = 512


#: the tissue's outline on a synthetic slide
TISSUE = ("ellipse", "full")
#: the glass around ``"full"`` tissue, level-0 pixels
BORDER = 512


def _pattern(y0: int, x0: int, h: int, w: int, step: int, size: int, tissue_shape: str = "ellipse") -> np.ndarray:
    """RGB uint8 of level-0 pixels (y0 + i * step, x0 + j * step): glass, stroma and 60-px glands on a jittered grid."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = y0 + yy * step, x0 + xx * step
    if tissue_shape == "full":
        tissue = (np.minimum(yy, xx) >= BORDER) & (np.maximum(yy, xx) < size - BORDER)
    else:
        centre = size / 2
        tissue = ((yy - centre) / (0.48 * size)) ** 2 + ((xx - centre) / (0.4 * size)) ** 2 < 1
    period = 160.0
    gy, gx = np.floor(yy / period), np.floor(xx / period)
    jitter_y = 30 * np.sin(gx * 12.9898 + gy * 78.233)
    jitter_x = 30 * np.cos(gx * 39.346 + gy * 11.135)
    dy = yy - (gy + 0.5) * period - jitter_y
    dx = xx - (gx + 0.5) * period - jitter_x
    gland = tissue & (dy**2 + dx**2 < 55**2)
    image = np.full((h, w, 3), GLASS_RGB, np.uint8)
    image[tissue] = (232, 150, 190)
    image[gland] = (150, 70, 160)
    return image


def write_synthetic_slide(path: Path, size: int, mpp: float, levels: int = 3, tissue_shape: str = "ellipse") -> Path:
    """A ``size`` x ``size`` tiled pyramidal TIFF of :func:`_pattern`, written tile by tile."""
    import tifffile

    if path.is_file():
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tiff:
        for level in range(levels):
            step = 2**level
            side = -(-size // step)

            def tiles(step=step, side=side):
                for ty in range(0, side, TILE):
                    for tx in range(0, side, TILE):
                        tile = np.full((TILE, TILE, 3), GLASS_RGB, np.uint8)
                        h, w = min(TILE, side - ty), min(TILE, side - tx)
                        tile[:h, :w] = _pattern(ty * step, tx * step, h, w, step, size, tissue_shape)
                        yield tile

            tiff.write(
                tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE), compression="zlib",
                photometric="rgb", resolution=(1e4 / mpp / step, 1e4 / mpp / step), resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
            )  # fmt: skip
    tmp.replace(path)
    return path


def run_slide_command(slide: Path, network: str, ckpt: Path, out: Path, threads: int, extra: list[str]) -> dict:
    """Run the slide command in a child process; its wall time (s) and peak resident memory (GB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    args = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file",
        f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'inference_wsi.json'}']", "--slide", str(slide),
        "--output_dir", str(out), "--ckpt_path", str(ckpt), "--network_name", network, *extra,
    ]  # fmt: skip
    if network != "medt":
        args += ["--network_args", "{}"]
    start = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the slide command failed for {network} on {slide}; see {out.with_suffix('.log')}")
    collection = json.loads((out / f"{slide.stem}.geojson").read_text())
    return {"seconds": seconds, "peak_gb": usage.ru_maxrss / 2**20, "objects": len(collection["features"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000], help="slide sides, level-0 pixels")
    parser.add_argument("--networks", nargs="+", default=["medt", "resunet"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mpp", type=float, default=0.5, help="micrometres per level-0 pixel of the slides")
    parser.add_argument("--tissue", choices=TISSUE, default="ellipse", help="the tissue's outline on the slides")
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--image_scale", type=float, default=0.2, help="the model's zoom of 0.62 um/px tiles")
    parser.add_argument("--tta", default="false", help="the slide command's --tta (flips); default: off")
    parser.add_argument(
        "--tta_shifts", type=int, default=1, help="the slide command's --tta_shifts (window grids per axis); default 1"
    )
    parser.add_argument(
        "--ckpt",
        nargs="*",
        default=[],
        metavar="NETWORK=PATH",
        help="trained weights of a network (default: untrained)",
    )
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    extra = ["--output", "instances", "--image_scale", str(args.image_scale), "--tta", args.tta]
    extra += ["--tta_shifts", str(args.tta_shifts)]
    ckpts = {}
    for item in args.ckpt:
        name, sep, path = item.partition("=")
        if not sep or name not in args.networks or not Path(path).is_file():
            parser.error(f"--ckpt takes NETWORK=PATH with NETWORK in --networks and PATH a file, got {item!r}")
        ckpts[name] = Path(path).resolve()
    for name in args.networks:
        if name in ckpts:
            continue
        network_args = (
            {"full_resolution_skip": True, "zero_init_residual": True, "branch_supervision": True}
            if name == "medt"
            else {}
        )
        net = get_network(name, spatial_dims=2, in_channels=3, out_channels=3, img_size=128, **network_args)
        ckpts[name] = args.work_dir / f"{name}.pt"
        torch.save(net.state_dict(), ckpts[name])
    rows = []
    for size in args.sizes:
        suffix = "" if args.tissue == "ellipse" else f"_{args.tissue}"
        slide = write_synthetic_slide(
            args.work_dir / f"synthetic_{size}{suffix}.tif", size, args.mpp, tissue_shape=args.tissue
        )
        for name in args.networks:
            result = run_slide_command(
                slide, name, ckpts[name], args.work_dir / f"out_{name}_{size}{suffix}", args.threads, extra
            )
            result.update(network=name, size=size, mp_per_min=size * size / 1e6 / (result["seconds"] / 60))
            rows.append(result)
            print(json.dumps(result), flush=True)
    (args.work_dir / f"benchmark_slides{suffix}.json").write_text(json.dumps(rows, indent=2))
    print("\n| network | slide (level 0) | wall time | level-0 MP per minute | peak memory | objects |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['network']} | {r['size']}x{r['size']} | {r['seconds']:.0f} s | {r['mp_per_min']:.0f} "
            f"| {r['peak_gb']:.2f} GB | {r['objects']} |"
        )
    for name in args.networks:
        mine = [r for r in rows if r["network"] == name]
        if len(mine) > 1:
            print(
                f"{name}: peak memory at {mine[-1]['size']} / at {mine[0]['size']}: {mine[-1]['peak_gb'] / mine[0]['peak_gb']:.2f}"
            )
    for size in args.sizes:
        pair = {r["network"]: r for r in rows if r["size"] == size}
        if "medt" in pair and "resunet" in pair:
            print(f"{size}: MedT time / Res-UNet time: {pair['medt']['seconds'] / pair['resunet']['seconds']:.2f}")


if __name__ == "__main__":
    main()
