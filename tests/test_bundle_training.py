"""The bundle's training workflow (``train.json``, ``multi_gpu_train.json``): a training run's checkpoints, metrics and
TensorBoard files, the MedT remedies and seeds as options, two processes under torchrun, a killed run that resumes, a
NaN loss, MLflow tracking, the handlers that freeze gates and write checkpoints atomically, the final-epoch model
selection, the guard that keeps the earlier ``model.pt`` and refuses a second run on the same folders, a full disk, and
the README's default training command (``@pytest.mark.slow``). Runs are ``python -m monai.bundle`` subprocesses with
tiny settings on the demo data (see ``bundle_helpers``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import (
    BUNDLE,
    CONFIGS,
    EVALUATE,
    IMG,
    INFERENCE,
    N_TEST,
    N_TRAIN,
    ROOT,
    TRAIN,
    _config_error,
    _configs,
    _env,
    _epochs_completed,
    _ok,
    _parser,
    _run,
    _train_args,
)

MULTI_GPU = str(CONFIGS / "multi_gpu_train.json")


# ------------------------------------------------------------------------------------------------
# training runs
# ------------------------------------------------------------------------------------------------
def test_training_writes_checkpoints_and_reports_validation_metrics(trained):
    log = trained["log"]
    assert _epochs_completed(log) == [1, 2], log[-3000:]
    assert "val_mean_dice" in log and "val_mean_iou" in log
    assert "train_loss" in log
    state = torch.load(trained["model"], map_location="cpu", weights_only=True)
    assert any(k.endswith("gate_qr") or "gate" in k for k in state), "model.pt is not MedT's state dict"
    latest = torch.load(trained["out"] / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "trainer", "best_model_saver"} <= set(latest)
    assert latest["trainer"]["iteration"] == 2 * latest["trainer"]["epoch_length"]
    assert list((trained["out"] / "eval").glob("events.out.tfevents.*")), "no TensorBoard event file"


def test_medt_remedies_train_and_evaluate_through_the_bundle(work, tmp_path):
    """MedT's options as a user switches them: ``--network_args "{...}"`` replaces the recipe's arguments (here the
    published MedT with the full-resolution path only), ``--network_args#<name>`` changes one of them."""
    options = ["--network_args", "{'full_resolution_skip': True}", "--network_args#zero_init_residual", "False"]
    log = _ok(_run(_train_args(work, tmp_path, "--max_epochs", "2", *options)))
    assert _epochs_completed(log) == [1, 2] and "val_mean_dice" in log
    state = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)["model"]
    assert any(key.startswith("full_resolution.") for key in state) and "global_head.weight" not in state
    args = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), *work["common"], *options,
        "--output_dir", str(tmp_path / "evaluate"), "--ckpt_path", str(tmp_path / "models" / "model.pt"),
    ]  # fmt: skip
    _ok(_run(args))
    assert len((tmp_path / "evaluate" / "test_mean_dice_raw.csv").read_text().strip().splitlines()) == 1 + N_TEST


def test_seed_repeats_a_training_on_the_same_split_with_another_initialisation(work, tmp_path):
    (tmp_path / "train").symlink_to(work["demo"] / "train")  # no val/ or test/: both are carved out by split_seed

    def state(**overrides):
        parser = _parser((TRAIN,), dataset="medt", data_dir=str(tmp_path), verify_data="header", **overrides)
        parser.get_parsed_content("initialize")
        weights = parser.get_parsed_content("network_def").state_dict()
        return parser.get_parsed_content("splits"), weights

    splits, default = state()
    assert _parser((TRAIN,), split_seed=3).get_parsed_content("seed") == 3  # defaults to the split seed
    for seed, same in [(0, True), (1, False)]:
        seed_splits, weights = state(seed=seed)
        assert seed_splits == splits  # the split follows split_seed only
        assert all(torch.equal(default[k], weights[k]) for k in default) is same
    assert state(split_seed=1)[0] != splits


def test_last_epoch_model_selection_ships_the_final_weights_and_still_reports_validation(work, tmp_path):
    log = _ok(_run(_train_args(work, tmp_path, "--max_epochs", "2", "--model_selection", "last_epoch")))
    assert _epochs_completed(log) == [1, 2] and "val_mean_dice" in log
    latest = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    model = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert latest["trainer"]["iteration"] == 2 * N_TRAIN // 4 and latest["best_model_saver"] == {}
    assert model.keys() == latest["model"].keys()  # the final epoch's weights, chosen by no image
    assert all(torch.equal(latest["model"][k], model[k]) for k in model)
    error = _config_error(_parser((TRAIN,), model_selection="best"), "best_model_saver")
    assert "Unsupported option 'best'" in str(error) and "'last_epoch'" in str(error)


@pytest.mark.slow
def test_bad_network_name_stops_the_command_before_data_are_cached(work, tmp_path):
    r = _run(_train_args(work, tmp_path, "--network_name", "foo"))
    assert r.returncode != 0 and "--network_name 'foo' is not a network; the names are" in r.log, r.log[-3000:]
    assert "Loading dataset" not in r.log and not (tmp_path / "models").exists()


# ------------------------------------------------------------------------------------------------
# multi-GPU config (CPU: gloo), resumption, NaN, tracking
# ------------------------------------------------------------------------------------------------
def test_torchrun_two_processes_on_cpu(work, tmp_path):
    # --tta true: validation through medt_monai.inferers, an import of train.json that multi_gpu_train.json keeps
    args = [
        "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle",
        *_train_args(work, tmp_path, "--max_epochs", "1", "--tta", "true", configs=(TRAIN, MULTI_GPU)),
    ]  # fmt: skip
    log = _ok(_run(args, module="torch.distributed.run", timeout=600))
    assert "gloo" in Path(MULTI_GPU).read_text()
    assert sorted(_epochs_completed(log)) == [1, 1], "both ranks should finish epoch 1"
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "eval" / "checkpoint_latest.pt").is_file()
    events = list((tmp_path / "eval").glob("events.out.tfevents.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1, f"TensorBoard files from >1 process: {events}"
    assert log.count("Saved checkpoint at epoch: 1") >= 1


def _latest_epoch(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)["trainer"]
    return state["iteration"] // state["epoch_length"]


def test_killed_training_resumes_from_last_complete_checkpoint(work, tmp_path):
    """Kill after the first saved epoch, run the same command again: training resumes, and the ``model.pt`` that was in
    the folder before the first run (the shipped weights, say) is the one kept as ``model_previous.pt``."""
    max_epochs = 3
    args = _train_args(work, tmp_path, "--max_epochs", str(max_epochs))
    latest = tmp_path / "eval" / "checkpoint_latest.pt"
    shipped = {"weight": torch.full((3,), 7.0)}
    (tmp_path / "models").mkdir()
    torch.save(shipped, tmp_path / "models" / "model.pt")
    cmd = [sys.executable, "-m", "monai.bundle", *args]
    log1 = tmp_path / "first.log"
    with open(log1, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 400
            while not (latest.exists() and _safe_epoch(latest) >= 1):
                assert proc.poll() is None, f"training ended before it was killed:\n{log1.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint after epoch 1"
                time.sleep(0.2)
            # killed now: during epoch 2 (or its validation / checkpoint write)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = _latest_epoch(latest)  # a complete, loadable checkpoint after the kill
    assert 1 <= saved < max_epochs
    torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)

    log = _ok(_run(args))
    assert f"resumed from {latest} after epoch {saved}" in log, log[-3000:]
    assert _epochs_completed(log) == list(range(saved + 1, max_epochs + 1)), log[-3000:]
    assert _latest_epoch(latest) == max_epochs
    previous = torch.load(tmp_path / "models" / "model_previous.pt", weights_only=True)
    assert previous.keys() == shipped.keys() and torch.equal(previous["weight"], shipped["weight"])
    assert not list(tmp_path.glob("*/.training.lock")), "a finished run leaves no lock file"

    # a finished run is not resumed: the same command trains anew
    log = _ok(_run([*args[:-1], "1"]))
    assert "holds a finished run" in log and _epochs_completed(log) == [1]


def _safe_epoch(path: Path) -> int:
    try:
        return _latest_epoch(path)
    except Exception:  # being replaced this instant
        return -1


def test_nan_loss_stops_training_without_writing_nan_weights(work, tmp_path):
    # a loss of one's own (--loss#loss, inside the bundle's DeepSupervisionLoss) that turns NaN in epoch 2: iterations per epoch
    # N_TRAIN / batch 4 = 2, each calling it 3 times (the default network's logits and each branch's, which the
    # bundle's DeepSupervisionLoss weighs)
    loss = (
        "$lambda p, y, n=[]: (n.append(0), torch.nn.functional.cross_entropy(p, y[:, 0].long())"
        " * (float('nan') if len(n) > 6 else 1.0))[1]"
    )
    r = _run(_train_args(work, tmp_path, "--max_epochs", "3", "--loss#loss", loss))
    log = _ok(r)
    assert "contains NaN or Inf. Stop training" in log, log[-3000:]
    assert _epochs_completed(log) == [1]
    latest = torch.load(tmp_path / "eval" / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert latest["trainer"]["iteration"] == 2  # epoch 1 only
    for path_state in (latest["model"], torch.load(tmp_path / "models" / "model.pt", weights_only=True)):
        assert all(torch.isfinite(v).all() for v in path_state.values() if v.is_floating_point())


@pytest.mark.slow  # importing mlflow and creating its database take ~30 s; mlflow is an optional extra
def test_tracking_mlflow_records_the_run(work, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="optional extra: pip install -e '.[mlflow]'")
    _ok(_run(_train_args(work, tmp_path, "--max_epochs", "1", "--tracking", "mlflow")))
    db = tmp_path / "eval" / "mlruns.db"  # MONAI 1.6.1's default: a local SQLite store under output_dir
    assert db.is_file(), sorted((tmp_path / "eval").iterdir())
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {"train_loss", "val_mean_dice", "val_mean_iou"} <= set(runs[0].data.metrics)


# ------------------------------------------------------------------------------------------------
# handlers: gates, atomic checkpoints, the final model
# ------------------------------------------------------------------------------------------------
def test_gate_freeze_handler_follows_the_epoch_counter():
    from ignite.engine import Engine, Events

    from medt_monai.handlers import GateFreezeHandler
    from medt_monai.networks.nets import MedT

    net = MedT(in_channels=3, out_channels=2, img_size=64)
    gates = [p for n, p in net.named_parameters() if "gate" in n]
    assert gates
    seen = {}
    engine = Engine(lambda e, b: None)
    GateFreezeHandler(net, frozen_epochs=2).attach(engine)

    @engine.on(Events.EPOCH_STARTED)
    def _record(e):
        seen[e.state.epoch] = [p.requires_grad for p in gates]

    engine.run([0], max_epochs=4)
    assert {k: all(v) for k, v in seen.items()} == {1: False, 2: False, 3: True, 4: True}
    assert not any(seen[2]) and all(seen[3])

    # resumed after epoch 5 with frozen_epochs=10: still frozen in epoch 6; after epoch 10: trainable
    for start, expect in ((5, False), (10, True)):
        net2 = MedT(in_channels=3, out_channels=2, img_size=64)
        engine2 = Engine(lambda e, b: None)
        GateFreezeHandler(net2, frozen_epochs=10).attach(engine2)
        engine2.add_event_handler(Events.STARTED, lambda e, s=start: setattr(e.state, "epoch", s))
        engine2.add_event_handler(Events.EPOCH_STARTED, lambda e: e.terminate())
        engine2.run([0], max_epochs=20)
        assert all(p.requires_grad == expect for n, p in net2.named_parameters() if "gate" in n)
    with pytest.raises(ValueError, match="frozen_epochs"):
        GateFreezeHandler(net, frozen_epochs=-1)


_KILL_DURING_WRITE = r"""
import os, signal, sys, torch
from ignite.engine import Engine, Events
from {module} import {cls} as Saver

net = torch.nn.Linear(4, 4)
engine = Engine(lambda e, b: None)
Saver(save_dir=sys.argv[1], save_dict={{"model": net}}, save_interval=1, n_saved=1, {fixed}).attach(engine)
real_save = torch.save

def dying_save(obj, f, *a, **k):
    if engine.state.epoch == 2:  # the second save: write half a file, then the process is killed
        data = b"x" * 1000
        (f.write(data) if hasattr(f, "write") else open(f, "wb").write(data))
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f, *a, **k)

torch.save = dying_save
@engine.on(Events.EPOCH_STARTED)
def _change(e):
    with torch.no_grad():
        net.weight.fill_(float(e.state.epoch))
engine.run([0], max_epochs=3)
"""


@pytest.mark.parametrize("fixed_name", [True, False], ids=["fixed_name", "numbered"])
def test_atomic_checkpoint_survives_a_kill_during_the_write(tmp_path, fixed_name):
    fixed = "interval_filename='latest.pt'" if fixed_name else ""
    script = _KILL_DURING_WRITE.format(module="medt_monai.handlers", cls="AtomicCheckpointSaver", fixed=fixed)
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(), capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert len(files) == 1, files  # the epoch-1 checkpoint is still there, complete
    state = torch.load(tmp_path / files[0], weights_only=True)
    assert torch.equal(state["weight"], torch.full((4, 4), 1.0))


def test_monai_checkpoint_saver_is_not_atomic(tmp_path):
    """Why the bundle does not use MONAI's CheckpointSaver directly: the same kill leaves a truncated model file."""
    script = _KILL_DURING_WRITE.format(module="monai.handlers", cls="CheckpointSaver", fixed="")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(), capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    broken = []
    for p in tmp_path.glob("*.pt"):
        try:
            torch.load(p, weights_only=True)
        except Exception:
            broken.append(p.name)
    assert broken, "expected MONAI's non-atomic saver to leave a truncated file"


def test_best_model_file_from_before_the_run_is_kept(tmp_path):
    """Training into a folder that holds shipped weights keeps them as model_previous.pt; later bests overwrite."""
    from ignite.engine import Engine, Events

    from medt_monai.bundle import CheckpointGuard
    from medt_monai.handlers import AtomicCheckpointSaver

    shipped = {"weight": torch.full((2,), 7.0)}
    torch.save(shipped, tmp_path / "model.pt")
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    saver = AtomicCheckpointSaver(
        str(tmp_path),
        {"model": net},
        save_key_metric=True,
        key_metric_name="score",
        key_metric_filename="model.pt",
        key_metric_save_state=False,
    )
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(score=float(e.state.epoch)))
    saver.attach(engine)
    guard = CheckpointGuard([tmp_path], keep=[tmp_path / "model.pt"])
    guard.acquire()
    engine.run([0], max_epochs=2)
    guard.release()
    assert torch.equal(torch.load(tmp_path / "model_previous.pt", weights_only=True)["weight"], shipped["weight"])
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_previous.pt"]


def test_final_model_is_written_only_by_a_run_that_reaches_its_last_epoch(tmp_path):
    """``save_final`` (the bundle's ``--model_selection last_epoch``): a run stopped early or by an exception leaves the
    earlier final model alone (MONAI's saver writes the weights it failed with)."""
    from ignite.engine import Engine, Events

    from medt_monai.handlers import AtomicCheckpointSaver

    net = torch.nn.Linear(2, 2)
    final = tmp_path / "model.pt"

    def run(stop_at: int | None = None, fail: bool = False) -> None:
        def step(engine, batch):
            with torch.no_grad():
                net.weight.fill_(engine.state.epoch)
            if fail and engine.state.epoch == stop_at:
                raise RuntimeError("a bad image")

        engine = Engine(step)
        if stop_at is not None and not fail:
            engine.add_event_handler(Events.EPOCH_COMPLETED(once=stop_at), lambda e: e.terminate())
        AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_final=True, final_filename="model.pt").attach(engine)
        engine.run([0], max_epochs=3)

    run()
    assert float(torch.load(final, weights_only=True)["weight"][0, 0]) == 3.0
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    run(stop_at=2)  # e.g. TerminateOnNan in epoch 2 of 3
    with pytest.raises(RuntimeError, match="a bad image"):
        run(stop_at=3, fail=True)
    assert float(torch.load(final, weights_only=True)["weight"][0, 0]) == 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


# ------------------------------------------------------------------------------------------------
# concurrent and interrupted runs, full disks
# ------------------------------------------------------------------------------------------------
_HOLD_GUARD = r"""
import os, signal, sys, time, torch
from medt_monai.bundle import CheckpointGuard
folder = sys.argv[1]
guard = CheckpointGuard([folder], keep=[os.path.join(folder, "model.pt")])
guard.acquire()
if sys.argv[2] == "kill":  # the run writes its first best model, then is killed
    torch.save({"weight": torch.full((2,), 1.0)}, os.path.join(folder, "model.pt"))
    os.kill(os.getpid(), signal.SIGKILL)
print("locked", flush=True)
time.sleep(120)
"""


def _weight(path: Path) -> float:
    return float(torch.load(path, weights_only=True)["weight"][0])


def test_guard_keeps_the_model_from_before_a_killed_run(tmp_path):
    from medt_monai.bundle import CheckpointGuard

    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "model.pt")  # the shipped model
    r = subprocess.run([sys.executable, "-c", _HOLD_GUARD, str(tmp_path), "kill"], env=_env(), capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (_weight(tmp_path / "model.pt"), _weight(tmp_path / "model_previous.pt")) == (1.0, 7.0)
    guard = CheckpointGuard([tmp_path], keep=[tmp_path / "model.pt"])
    guard.acquire()  # the run started again (resumed or anew): the killed run's lock does not block it
    assert _weight(tmp_path / "model_previous.pt") == 7.0  # not the killed run's model
    guard.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model_previous.pt"]
    guard.acquire()  # a later run, after one that finished: keeps the model it finds
    assert _weight(tmp_path / "model_previous.pt") == 1.0
    guard.release()


def test_guard_refuses_a_second_run_and_names_the_first(tmp_path):
    import socket

    from medt_monai.bundle import CheckpointGuard

    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "model.pt")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_GUARD, str(tmp_path), "hold"], env=_env(),
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = CheckpointGuard([tmp_path / "other", tmp_path], keep=[tmp_path / "model.pt"])
        with pytest.raises(RuntimeError, match=rf"{re.escape(str(tmp_path))} is in use by another training run \(pid "
                                               rf"{holder.pid} on host {re.escape(socket.gethostname())}, started "
                                               r".*: .*-c .*hold\)"):  # fmt: skip
            second.acquire()
        assert not (tmp_path / "other" / ".training.lock").exists()  # the lock it took first is dropped again
    finally:
        holder.kill()
        holder.wait()
    torch.save({"weight": torch.full((2,), 1.0)}, tmp_path / "model.pt")  # as if the killed holder had trained
    second.acquire()  # the killed holder's lock does not block
    assert _weight(tmp_path / "model_previous.pt") == 7.0
    second.release()


def test_full_disk_leaves_the_earlier_model_in_place(tmp_path, monkeypatch):
    import errno

    from ignite.engine import Engine, Events

    from medt_monai.bundle import CheckpointGuard
    from medt_monai.handlers import AtomicCheckpointSaver

    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "model.pt")
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    saver = AtomicCheckpointSaver(str(tmp_path), {"model": net}, save_key_metric=True, key_metric_name="score",
                                  key_metric_filename="model.pt", key_metric_save_state=False)  # fmt: skip
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(score=1.0))
    saver.attach(engine)

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        engine.run([0], max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left
    assert _weight(tmp_path / "model.pt") == 7.0

    # the copy to model_previous.pt at the start of a run: a full disk stops the run before it changes anything
    import shutil

    monkeypatch.setattr(shutil, "copyfileobj", full_disk)
    guard = CheckpointGuard([tmp_path], keep=[tmp_path / "model.pt"])
    with pytest.raises(
        OSError, match=rf"cannot copy {re.escape(str(tmp_path / 'model.pt'))} to .*model_previous.pt .*unchanged"
    ):
        guard.acquire()
    assert _weight(tmp_path / "model.pt") == 7.0 and not (tmp_path / "model_previous.pt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []


@pytest.mark.slow
def test_second_training_on_the_same_folders_is_refused(work, tmp_path):
    """Two ``run training`` on one bundle folder: the second stops at once naming the first, which goes on."""
    (tmp_path / "models").mkdir()
    torch.save({"weight": torch.full((2,), 7.0)}, tmp_path / "models" / "model.pt")
    args = _train_args(work, tmp_path, "--max_epochs", "20")
    lock = tmp_path / "models" / ".training.lock"
    first = subprocess.Popen([sys.executable, "-m", "monai.bundle", *args], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (lock.exists() and lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        r = _run(args)
        assert first.poll() is None, "the first run should still be training"
    finally:
        first.kill()
        first.wait()
    assert r.returncode != 0 and f"is in use by another training run (pid {first.pid} on host" in r.log, r.log[-3000:]
    assert "Loading dataset" not in r.log and "Epoch[1]" not in r.log
    assert _weight(tmp_path / "models" / "model_previous.pt") == 7.0


# ------------------------------------------------------------------------------------------------
# the README's command (slow)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_default_training_command_on_demo_data(tmp_path):
    """``python -m monai.bundle run training --config_file bundle/configs/train.json`` with nothing overridden except
    where it writes (a copy of the bundle) and the demo cache. The README promises install + training within 10
    minutes on 2 idle CPU cores; the training part is held to 7 minutes here (run it on an otherwise idle machine)."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("eval", "logs", "*.pt", "*.ts", "__pycache__"))
    env = {**_env(), "MEDT_MONAI_DATA_DIR": str(tmp_path / "demo")}
    env.pop("OMP_NUM_THREADS")
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundle/configs/train.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    wall = time.monotonic() - start
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert "val_mean_dice" in log and "val_mean_iou" in log
    assert "%|" in log  # the progress bar
    assert (bundle / "models" / "model.pt").is_file()
    import re

    last = re.findall(r"val_mean_dice: ([0-9.]+) val_mean_iou: ([0-9.]+)", log)[-1]
    print(f"default demo training: {wall:.0f} s, last validation Dice {last[0]}, IoU {last[1]}")
    assert wall < 420, f"default demo training took {wall:.0f} s"


def test_output_instances_trains_evaluates_and_writes_instance_maps_through_the_bundle(work, tmp_path):
    """``--output instances``: the network learns background / interior / boundary from the instance maps, evaluation
    scores the watershed's objects, and inference writes each image's instance map (uint16, 0 background, 1..N)
    beside its mask, the mask being the instances' foreground."""
    from PIL import Image

    options = ["--output", "instances", "--boundary_weight", "2.0"]
    log = _ok(_run(_train_args(work, tmp_path, "--max_epochs", "2", *options)))
    assert _epochs_completed(log) == [1, 2]
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state["head.2.weight"].shape[0] == 3 and state["global_head.weight"].shape[0] == 3  # three classes
    model = str(tmp_path / "models" / "model.pt")
    evaluate = [
        "run", "--config_file", _configs(TRAIN, EVALUATE, work["subset"]), *work["common"], *options,
        "--output_dir", str(tmp_path / "evaluate"), "--ckpt_path", model,
    ]  # fmt: skip
    _ok(_run(evaluate))
    metrics = dict(line.split(",") for line in (tmp_path / "evaluate" / "metrics.csv").read_text().split())
    assert {"test_mean_dice", "test_object_f1", "test_object_f1_pooled", "test_aji"} <= set(metrics)
    images = sorted((work["demo"] / "test" / "img").glob("*.png"))[:2]
    folder = tmp_path / "images"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    infer = [
        "run", "--config_file", str(INFERENCE), "--dataset_dir", str(folder), "--output_dir", str(folder),
        "--ckpt_path", model, "--img_size", str(IMG), "--output", "instances", "--image_scale", "$None",
    ]  # fmt: skip
    for _ in range(2):  # the second run into the same folder leaves the first run's outputs alone
        _ok(_run(infer))
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(
        [i.name for i in images] + [f"{i.stem}_{s}.png" for i in images for s in ("seg", "instances")]
    )
    for image in images:
        instances = Image.open(folder / f"{image.stem}_instances.png")
        mask = np.asarray(Image.open(folder / f"{image.stem}_seg.png"))
        assert instances.mode == "I;16" and instances.size == Image.open(image).size
        ids = np.asarray(instances)
        assert set(np.unique(ids[ids > 0]).tolist()) == set(range(1, int(ids.max()) + 1))  # objects 1..N
        np.testing.assert_array_equal(mask > 0, ids > 0)


def test_output_instances_without_instance_labels_is_refused_before_training(work, tmp_path):
    folder = tmp_path / "data"
    for split, count in (("train", 3), ("val", 2), ("test", 2)):
        for sub in ("img", "labelcol"):
            (folder / split / sub).mkdir(parents=True)
            for image in sorted((work["demo"] / "train" / sub).glob("*.png"))[:count]:
                shutil.copy(image, folder / split / sub / image.name)
    args = [
        "run", "training", "--config_file", str(TRAIN), "--dataset", "medt", "--data_dir", str(folder),
        "--output", "instances", "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"),
    ]  # fmt: skip
    r = _run(args)
    log = r.stdout + r.stderr
    assert r.returncode != 0 and "--output instances learns the border between objects from instance maps" in log
    assert "3 of the 3 train images have none" in log and not (tmp_path / "models" / "model.pt").exists()
