"""Speed and memory of the MedT family against MONAI baselines and, optionally, the authors' original networks.

Every model of one setting is timed in the same process, iterations interleaved round-robin (model A, B, C, A, B, C,
...), so load from other processes on a shared machine hits all models alike; medians are reported. Peak memory is
measured per model and mode in a fresh subprocess (peak RSS, ``VmHWM``, during two iterations minus the RSS after
imports, model construction and input creation), the same method for every model.

Examples::

    # the paper's setting and MoNuSeg's, ours + MONAI baselines + the authors' networks from their checkout
    python scripts/benchmark.py --original /path/to/Medical-Transformer --sizes 128:4 512:1

    # quick look, eval only
    python scripts/benchmark.py --models medt unet --modes eval --iters 3

    # share of a MedT training epoch spent waiting for data (CacheDataset + the bundle's train transforms)
    python scripts/benchmark.py --data-share glas --data-dir ../shared/data/glas --sizes 128:4

    # run-time options side by side in one run: name@option[+option] (bf16, channels_last, compile)
    python scripts/benchmark.py --models medt medt@channels_last medt@compile --sizes 128:4

``--original PATH`` imports ``PATH/lib/models/axialnet.py`` (the authors' file, from the user's own checkout; nothing
of it is copied into this package) and adds ``orig_<name>`` rows plus speed-up and memory ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from medt_monai.networks import get_network, network_and_arguments

#: the models timed by default: the MedT family (``medt_global`` / ``medt_local``: MedT's one-branch ablations, see
#: :func:`medt_monai.networks.network_and_arguments`) and MONAI's CNN and transformer baselines
DEFAULT_MODELS = [
    "medt",
    "logo",
    "gated_axial_unet",
    "axial_unet",
    "medt_global",
    "medt_local",
    "resunet",
    "unetpp",
    "swin_unetr",
]
#: our name -> the authors' factory in lib/models/axialnet.py
ORIGINAL = {"medt": "MedT", "logo": "logo", "gated_axial_unet": "gated", "axial_unet": "axialunet"}


def load_original(root: str | os.PathLike) -> types.ModuleType:
    """Import the authors' ``lib/models/axialnet.py`` from a checkout at ``root`` without running ``lib/__init__.py``
    (which needs torchvision); ``matplotlib``, imported but unused there, is stubbed when missing."""
    folder = Path(root) / "lib" / "models"
    if not (folder / "axialnet.py").is_file():
        raise FileNotFoundError(f"{folder / 'axialnet.py'} not found: pass the root of a Medical-Transformer checkout.")
    if importlib.util.find_spec("matplotlib") is None:
        sys.modules.setdefault("matplotlib", types.ModuleType("matplotlib"))
        sys.modules.setdefault("matplotlib.pyplot", types.ModuleType("matplotlib.pyplot"))
    package = types.ModuleType("_medt_original")
    package.__path__ = [str(folder)]
    sys.modules["_medt_original"] = package
    module = None
    for sub in ("utils", "axialnet"):
        spec = importlib.util.spec_from_file_location(f"_medt_original.{sub}", folder / f"{sub}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


#: run-time options a model name can carry after ``@`` (``medt@channels_last``, ``medt@compile+channels_last``), or
#: every model can get with the flags of the same names
OPTIONS = ("bf16", "channels_last", "compile")


def options_of(name: str, args: argparse.Namespace) -> set[str]:
    """The options a model runs with: those after ``@`` in its name and those switched on for all."""
    options = set(name.partition("@")[2].split("+")) - {""}
    unknown = options - set(OPTIONS)
    if unknown:
        raise SystemExit(f"unknown option(s) {sorted(unknown)} in model name {name!r}; known: {', '.join(OPTIONS)}")
    return options | {option for option in OPTIONS if getattr(args, option)}


def build(name: str, size: int, channels: int, original: str | None) -> nn.Module:
    """Model ``name`` (``orig_<ours>`` for the authors' networks; options after ``@`` ignored) for ``size x size``
    inputs."""
    name = name.partition("@")[0]
    if name.startswith("orig_"):
        factory = getattr(load_original(original), ORIGINAL[name[5:]])
        return factory(img_size=size, imgchan=channels)
    network, arguments = network_and_arguments(name)
    return get_network(network, in_channels=channels, img_size=size, **arguments)


def make_step(model: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor, options: set[str]) -> Callable[[], None]:
    """One eval forward (``torch.inference_mode``) or one training step (forward, cross-entropy, backward, Adam), with
    the run-time ``options``: ``channels_last`` (weights and input), ``compile`` (``torch.compile``, default mode;
    compilation happens in the warm-up iterations), ``bf16`` (autocast)."""
    if "channels_last" in options:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if "compile" in options:
        model = torch.compile(model)
    bf16 = "bf16" in options
    context = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if bf16 else torch.enable_grad
    if mode == "eval":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), context():
                model(x)

        return step
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with context():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()

    return step


def count_flops(model: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one eval forward or one forward + backward (``torch.utils.flop_counter``: convolutions, matrix
    products; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train(mode == "train")
    with FlopCounterMode(display=False) as counter:
        if mode == "eval":
            with torch.no_grad():
                model(x)
        else:
            F.cross_entropy(model(x), y).backward()
            model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(seconds: float = 2.0, n: int = 2048) -> float:
    """Best fp32 ``n x n`` matrix-multiply GFLOP/s over ``seconds``: the practical peak of this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB, from ``/proc/self/status``. ``VmHWM`` belongs to the
    process image, unlike ``getrusage``'s ``ru_maxrss``, which Linux carries over from the parent across fork + exec
    (a worker started by a big parent would report the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_worker(args: argparse.Namespace) -> None:
    """Child process: peak RSS growth (MiB) of two iterations of one model and mode, printed as JSON."""
    torch.manual_seed(0)
    model = build(args.worker, args.size, args.channels, args.original)
    x, y = (
        torch.rand(args.batch, args.channels, args.size, args.size),
        torch.randint(0, 2, (args.batch, args.size, args.size)),
    )
    step = make_step(model, args.modes[0], x, y, options_of(args.worker, args))
    base = _status_mb("VmRSS")
    for _ in range(2):
        step()
    print(json.dumps({"peak_mb": _status_mb("VmHWM") - base}))


def peak_memory(name: str, mode: str, size: int, batch: int, args: argparse.Namespace) -> float | None:
    command = [sys.executable, __file__, "--worker", name, "--size", str(size), "--batch", str(batch), "--channels",
               str(args.channels), "--modes", mode, "--threads", str(args.threads)]  # fmt: skip
    if args.original:
        command += ["--original", args.original]
    command += [f"--{option.replace('_', '-')}" for option in OPTIONS if getattr(args, option)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  memory of {name} {mode} failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


def run_setting(size: int, batch: int, args: argparse.Namespace, peak_gflops: float) -> list[dict]:
    names = list(args.models)
    if args.original:
        names += [f"orig_{n}" for n in args.models if n in ORIGINAL]
    torch.manual_seed(0)
    x = torch.rand(batch, args.channels, size, size)
    y = torch.randint(0, 2, (batch, size, size))
    rows = []
    for mode in args.modes:
        models, steps, times = {}, {}, {}
        for name in names:
            try:
                models[name] = build(name, size, args.channels, args.original)
                steps[name] = make_step(models[name], mode, x, y, options_of(name, args))
                for _ in range(args.warmup):
                    steps[name]()
                times[name] = []
            except Exception as error:  # e.g. a baseline that does not support this size
                print(f"  {name} {mode} {size}: skipped ({type(error).__name__}: {error})", file=sys.stderr)
                steps.pop(name, None)
        for _ in range(args.iters):  # interleaved: every model once per round
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        for name in steps:
            median = statistics.median(times[name])
            flops = count_flops(models[name], mode, x, y) if args.flops else None
            row = {
                "model": name, "size": size, "batch": batch, "mode": mode, "median_s": median,
                "images_per_s": batch / median,
                "params": sum(p.numel() for p in models[name].parameters()),
                "gflop_per_image": flops / batch / 1e9 if flops else None,
                "gflops_achieved": flops / median / 1e9 if flops else None,
                "peak_fraction": flops / median / 1e9 / peak_gflops if flops else None,
                "peak_mb": peak_memory(name, mode, size, batch, args) if args.memory else None,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        del models, steps
    return rows


def profile(name: str, size: int, batch: int, args: argparse.Namespace, steps: int = 3) -> dict:
    """Where the time of one eval forward and one training step of model ``name`` goes: ``torch.profiler`` self CPU
    time per operator over ``steps`` steps after a warm-up, the 12 largest per mode (ms per step), printed and
    returned."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    x, y = torch.rand(batch, args.channels, size, size), torch.randint(0, 2, (batch, size, size))
    result = {}
    for mode in args.modes:
        step = make_step(build(name, size, args.channels, args.original), mode, x, y, options_of(name, args))
        step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step()
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events) / steps / 1e3
        # the kernel's forward runs inside the autograd node torch.library generates for it: name it as such
        top = {
            re.sub(
                r"^GeneratedBackwardFor_medt_monai_(\w+)_default$", r"medt_monai::\1 (forward with autograd)", e.key
            ): e.self_cpu_time_total / steps / 1e3
            for e in events[:12]
        }
        result[mode] = {"total_ms": total, "top_ms": top}
        print(f"profile {name} {size}x{size} x{batch} {mode}: {total:.1f} ms per step (profiled), by operator:")
        for key, ms in top.items():
            print(f"  {ms:8.1f} ms  {100 * ms / total:5.1f} %  {key}")
    return result


def data_share(dataset: str, data_dir: str | None, size: int, batch: int, num_workers: int) -> dict:
    """One MedT training epoch over ``dataset``'s training split, fed as the bundle feeds it (``CacheDataset`` with
    train.json's training chain, built by :func:`medt_monai.data.get_transforms` ``"train"``, ``DataLoader`` with
    ``num_workers``): the seconds spent
    waiting for the next batch and their share of the epoch (caching happens before the epoch and is reported apart)."""
    from monai.data import DataLoader

    from medt_monai.data import dataset_splits, get_dataset, get_transforms

    splits = dataset_splits(dataset, data_dir)
    start = time.perf_counter()
    data = get_dataset(splits["train"], get_transforms("train", img_size=size, in_channels=3))
    cache_s = time.perf_counter() - start
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=num_workers, drop_last=False)
    network = get_network("medt", img_size=size).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-5)
    waiting, start = 0.0, time.perf_counter()
    batches = iter(loader)
    while True:
        t = time.perf_counter()
        item = next(batches, None)
        waiting += time.perf_counter() - t
        if item is None:
            break
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(item["image"].as_tensor()), item["label"].as_tensor()[:, 0].long()).backward()
        optimizer.step()
    epoch_s = time.perf_counter() - start
    row = {"dataset": dataset, "images": len(data), "size": size, "batch": batch, "num_workers": num_workers,
           "cache_s": cache_s, "epoch_s": epoch_s, "waiting_s": waiting, "waiting_share": waiting / epoch_s}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    """The results table, with speed-up and memory ratios of ours over the authors' networks where both ran."""
    by_key = {(r["model"], r["size"], r["mode"]): r for r in rows}
    lines = [
        "| model | size x batch | mode | median s | img/s | speed-up vs authors | peak MiB | memory vs authors | params "
        "| GFLOP/img | GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        theirs = by_key.get((f"orig_{r['model'].partition('@')[0]}", r["size"], r["mode"]))
        speedup = f"{theirs['median_s'] / r['median_s']:.2f}x" if theirs else ""
        memory = f"{r['peak_mb'] / theirs['peak_mb']:.2f}x" if theirs and r["peak_mb"] and theirs["peak_mb"] else ""

        def fmt(value, spec):
            return "" if value is None else format(value, spec)

        lines.append(
            f"| {r['model']} | {r['size']}x{r['size']} x{r['batch']} | {r['mode']} | {r['median_s']:.3f} | "
            f"{r['images_per_s']:.2f} | {speedup} | {fmt(r['peak_mb'], '.0f')} | {memory} | {r['params']:,} | "
            f"{fmt(r['gflop_per_image'], '.2f')} | {fmt(r['gflops_achieved'], '.1f')} | "
            f"{fmt(r['peak_fraction'] and 100 * r['peak_fraction'], '.1f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        default=DEFAULT_MODELS,
        help="names of medt_monai.networks.NETWORKS; NAME@OPTION[+OPTION] runs NAME with run-time options "
        f"({', '.join(OPTIONS)})",
    )
    parser.add_argument("--original", help="root of a checkout of the authors' Medical-Transformer repository")
    parser.add_argument("--sizes", nargs="+", default=["128:4", "512:1"], help="SIZE:BATCH settings")
    parser.add_argument("--modes", nargs="+", default=["eval", "train"], choices=["eval", "train"])
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per model (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2 on the reference machine)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels-last weights and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (minutes per model on CPU)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the per-model subprocesses")
    parser.add_argument("--no-flops", dest="flops", action="store_false")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--profile",
        metavar="MODEL",
        help="also print where MODEL's time goes, by operator (torch.profiler, first --sizes setting)",
    )
    parser.add_argument(
        "--data-share",
        metavar="DATASET",
        help="also time one MedT training epoch on this data set "
        "(a medt_monai.data.dataset_splits name, e.g. demo or glas) and report the data-waiting share",
    )
    parser.add_argument("--data-dir", help="root for --data-share (not needed for demo)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for --data-share")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        memory_worker(args)
        return
    if args.original:
        try:
            load_original(args.original)  # fail here, not as a skipped row
        except FileNotFoundError as error:
            raise SystemExit(f"--original: {error}") from None
    for name in args.models:
        options_of(name, args)
    peak = matmul_peak()
    options = [option for option in OPTIONS if getattr(args, option)]
    print(
        f"torch {torch.__version__}, {args.threads} threads, fp32 matmul peak {peak:.1f} GFLOP/s, options for all "
        f"models: {', '.join(options) or 'none'}",
        flush=True,
    )
    rows = []
    for setting in args.sizes:
        size, batch = (int(v) for v in setting.split(":"))
        rows += run_setting(size, batch, args, peak)
    print(markdown(rows))
    share = operators = None
    size, batch = (int(v) for v in args.sizes[0].split(":"))
    if args.profile:
        operators = profile(args.profile, size, batch, args)
    if args.data_share:
        share = data_share(args.data_share, args.data_dir, size, batch, args.num_workers)
    if args.json:
        summary = {"matmul_peak_gflops": peak, "rows": rows, "data_share": share, "profile": operators}
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
