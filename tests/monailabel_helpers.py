"""A real MONAI Label server for the live tests (``tests/test_monailabel.py``, ``tests/test_monailabel_wsi.py``):
started in its own process group, waited for, and stopped with everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 180  # server start (imports torch, monai, the app, the bundle)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, n: int = 80) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def running_server(cmd: list[str], env: dict, log_path: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """Start ``cmd`` logging to ``log_path``, wait until ``ready()`` (connection errors count as not yet), and on exit
    stop the whole process group (uvicorn and any training subprocess): SIGTERM, then SIGKILL what is left."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"MONAI Label server exited with {proc.returncode}:\n{log_tail(log_path)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"MONAI Label server not up in {START_TIMEOUT} s:\n{log_tail(log_path)}", pytrace=False)
            try:
                if ready():
                    break
            except OSError:
                pass
            time.sleep(1)
        yield
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        log.close()
        if os.environ.get("MEDT_MONAILABEL_SHOW_LOG") == "1":
            print(log_tail(log_path, 400))
