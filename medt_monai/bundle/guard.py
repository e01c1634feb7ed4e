"""One training run at a time per checkpoint folder, and the model that was there before the run kept.

:class:`CheckpointGuard` takes an exclusive ``fcntl.flock`` on a lock file in every folder a training run writes, for
the run's lifetime, so a second run on the same folders is refused with a message naming the first one. The kernel
releases the lock when the process dies, so a killed run never blocks the next one. Before the run changes anything,
each file of ``keep`` (the bundle's ``models/model.pt``) is copied to ``<stem>_previous<suffix>``. The lock file
records that this was done; it is removed when the run ends normally. A run that was killed or crashed leaves its
record behind, and the run started after it (a resumption, or a new run in the same folders) does not copy again: the
``model.pt`` it finds is the interrupted run's, while ``model_previous.pt`` still holds the model from before.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from medt_monai.utils.files import atomic_copy, previous_path

__all__ = ["CheckpointGuard", "LOCK_NAME"]

#: name of the lock file in each guarded folder.
LOCK_NAME = ".training.lock"

logger = logging.getLogger(__name__)


def _describe(record: dict | None, lock_file: Path) -> str:
    if not record:
        return f"{lock_file} is held; its holder has not written its record yet"
    return (
        f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}: "
        f"{record.get('command')}"
    )


class CheckpointGuard:
    """Lock the folders of a training run for its lifetime and keep the files that were there before it.

    :meth:`acquire` (the first step of the bundle's ``training`` list, before any data are cached):

    1. takes an exclusive, non-blocking ``fcntl.flock`` on ``<folder>/.training.lock`` in each of ``folders``; a folder
       locked by a running training raises ``RuntimeError`` naming that run (pid, host, start time, command). The
       kernel drops the lock of a process that dies, so a killed run never blocks the next one;
    2. copies each existing file of ``keep`` to ``<stem>_previous<suffix>`` (temporary file, fsync, rename, so both
       files are complete at every moment, and a full disk stops the run before it starts with ``model.pt``
       untouched), unless the lock file holds the record of an interrupted run that already did so;
    3. writes its record (pid, host, start time, command, the files it took care of) into the lock files.

    :meth:`release` (the last step of the list) removes the lock files and drops the locks. A run that is killed or
    crashes leaves its record; the next run in these folders, whether it resumes or starts anew, then leaves
    ``<stem>_previous<suffix>`` alone, because the ``keep`` file it finds is the interrupted run's, not the one from
    before. So the file that was there before a run survives resumption, a second run, a full disk and a kill at any
    moment. Locks are only as reliable as ``flock`` on the file system (local disks; NFS v4 with lock support).

    Args:
        folders: the folders the run writes (the bundle's ``ckpt_dir`` and ``output_dir``; one given twice is locked
            once). Created if missing.
        keep: the files to keep a copy of (the bundle's ``ckpt_dir/model.pt``); each must lie in one of ``folders``.
        enabled: ``False`` makes :meth:`acquire` and :meth:`release` do nothing (non-main ranks of a multi-GPU run).

    Raises:
        ValueError: a ``keep`` file outside ``folders``.
    """

    def __init__(self, folders: Sequence[str | Path], keep: Sequence[str | Path] = (), enabled: bool = True) -> None:
        self.folders = list(dict.fromkeys(Path(os.path.realpath(f)) for f in folders))
        self.keep = [Path(os.path.realpath(k)) for k in keep]
        for path in self.keep:
            if path.parent not in self.folders:
                raise ValueError(
                    f"CheckpointGuard: keep file {path} is not in one of the guarded folders "
                    f"{[str(f) for f in self.folders]}."
                )
        self.enabled = bool(enabled)
        self._held: dict[Path, IO[str]] = {}

    def _lock(self, folder: Path) -> tuple[IO[str], dict | None]:
        """Lock ``folder`` and return the open lock file and the record an interrupted run left in it, if any."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock_file = folder / LOCK_NAME
            while True:
                handle = os.fdopen(os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644), "r+")
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    record = self._read(handle)
                    handle.close()
                    raise RuntimeError(
                        f"{folder} is in use by another training run ({_describe(record, lock_file)}). Wait for it to "
                        "finish, or give this run other folders (--ckpt_dir and --output_dir)."
                    ) from None
                try:
                    current = os.stat(lock_file).st_ino == os.fstat(handle.fileno()).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    return handle, self._read(handle)
                handle.close()  # its holder removed that file while we opened it: lock the new one
        except OSError as e:
            raise OSError(e.errno, f"{folder}: cannot create the lock file of this training run ({e})") from e

    @staticmethod
    def _read(handle: IO[str]) -> dict | None:
        handle.seek(0)
        try:
            record = json.loads(handle.read() or "null")
        except json.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None

    def acquire(self) -> None:
        """Lock the folders and keep the ``keep`` files (see the class); nothing when already held or disabled.

        Raises:
            RuntimeError: a folder is in use by another run (the message names it).
            OSError: a folder cannot be created or written, or a copy failed (the message names the files); nothing is
                changed then.
        """
        if not self.enabled or self._held:
            return
        records: dict[Path, dict | None] = {}
        try:
            for folder in self.folders:
                self._held[folder], records[folder] = self._lock(folder)
            for path in self.keep:
                record = records[path.parent]
                if record is not None and path.name in record.get("kept", []):
                    logger.warning(
                        f"{path.parent / LOCK_NAME}: the run there before this one was interrupted "
                        f"({_describe(record, path.parent / LOCK_NAME)}); {path} is that run's, "
                        f"{previous_path(path)} is left as it is."
                    )
                elif path.is_file():
                    atomic_copy(path, previous_path(path))
                    logger.warning(f"{path} existed before this run; kept as {previous_path(path)}.")
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "command": " ".join(sys.argv),
                "kept": [p.name for p in self.keep],  # names: the record lies in their folder, which may move
            }
            for handle in self._held.values():
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(record))
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            # drop the locks; keep the lock files that hold an interrupted run's record, the next run needs it
            for folder, handle in self._held.items():
                if records.get(folder) is None:
                    self._remove(folder, handle)
                handle.close()
            self._held.clear()
            raise

    @staticmethod
    def _remove(folder: Path, handle: IO[str]) -> None:
        """Remove ``folder``'s lock file if it is still the one ``handle`` holds."""
        lock_file = folder / LOCK_NAME
        try:
            if os.stat(lock_file).st_ino == os.fstat(handle.fileno()).st_ino:
                lock_file.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Remove the lock files and drop the locks (the run has ended normally); nothing when not held."""
        for folder, handle in self._held.items():
            self._remove(folder, handle)
            handle.close()
        self._held.clear()
