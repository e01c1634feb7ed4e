"""Atomic checkpoints and resumption of an interrupted training run.

MONAI's :class:`monai.handlers.CheckpointSaver` writes with ``atomic=False`` and, for a fixed file name such as
``model.pt``, deletes the previous file before writing the new one: a run killed in between leaves no model or a
truncated one. :class:`AtomicCheckpointSaver` keeps MONAI's handler (same arguments, same file names) but writes every
file through ignite's :class:`~ignite.handlers.DiskSaver` with ``atomic=True`` (a temporary file in the same folder,
fsynced, then ``os.replace``), so each checkpoint on disk is always a complete one. :class:`ResumeCheckpointLoader`
restores such a checkpoint when the run is started again; :class:`CheckpointLoader` is MONAI's loader with errors that
name the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader as _MonaiCheckpointLoader
from monai.handlers import CheckpointSaver

from medt_monai.networks.nets.medt import medt_arguments_of
from medt_monai.utils.files import fsync_dir

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ignite.engine import Engine

__all__ = ["AtomicCheckpointSaver", "CheckpointLoader", "ResumeCheckpointLoader"]


class _AtomicDiskSaver(DiskSaver):
    """ignite's ``DiskSaver(atomic=True)`` that never leaves the folder without a complete checkpoint.

    The new file is written to a temporary file, fsynced and renamed over the old one (a full disk or a kill leaves the
    old file as it was). ignite's :class:`~ignite.handlers.Checkpoint` removes the file it no longer keeps *before*
    writing the new one; here the removal waits until the new file is complete: with a fixed ``filename``
    ``os.replace`` swaps the new file in for the old one in one step (nothing to remove), and with numbered names the
    old file is deleted only after the new one is in place.
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, create_dir=True, require_empty=False)
        self.filename = filename
        self._pending_removal: list[str] = []

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        def save_and_sync(obj: Mapping, file: Any, **kwargs: Any) -> None:
            func(obj, file, **kwargs)
            file.flush()
            os.fsync(file.fileno())

        super()._save_func(checkpoint, path, save_and_sync)
        fsync_dir(self.dirname)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        target = self.filename or filename
        super().__call__(checkpoint, target, metadata)
        pending, self._pending_removal = self._pending_removal, []
        for old in pending:
            if old != target and (self.dirname / old).exists():
                super().remove(old)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            self._pending_removal.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's :class:`~monai.handlers.CheckpointSaver` with atomic writes and a fixed-name "latest" checkpoint.

    Every argument of :class:`~monai.handlers.CheckpointSaver` is accepted with the same meaning. Differences:

    - files are written atomically (temporary file, fsync, ``os.replace``), so a killed run or a full disk never
      leaves a partial file and the previous file stays until the new one is complete (the bundle keeps the model from
      before a run as ``model_previous.pt`` with :class:`~medt_monai.bundle.CheckpointGuard`);
    - ``interval_filename`` (e.g. ``"checkpoint_latest.pt"``) makes the interval checkpoint one fixed file that is
      replaced at every save, which :class:`ResumeCheckpointLoader` reads back;
    - :meth:`state_dict` returns the key-metric tracking state (best score so far), so putting this handler itself in
      another saver's ``save_dict`` makes a resumed run keep comparing against the best model saved before the kill;
    - the final checkpoint (``save_final``) is written only when the engine ran all its epochs: not when a handler
      stopped it early (e.g. ``TerminateOnNan``) and not when an exception ended it, so a failed run never replaces
      the final model with the weights it failed with.

    Args:
        save_dir: the folder the checkpoints are written to (created if missing).
        save_dict: the objects to save, e.g. ``{"model": network, "optimizer": optimizer, "trainer": trainer}``; entries
            that are ``None`` (an optional object that is switched off, such as the bundle's EMA weights) are left out,
            as :class:`ResumeCheckpointLoader` leaves them out of ``load_dict``.
        interval_filename: fixed file name of the interval checkpoint; ``None`` keeps MONAI's numbered names.
        engine_key: if given, the engine this handler is attached to (the trainer) is added to ``save_dict`` under
            this key when attaching, so its epoch and iteration counters are saved. A config cannot reference the
            trainer from one of the trainer's own handlers (circular reference); this is the way around it.
        kwargs: the other arguments of :class:`~monai.handlers.CheckpointSaver` (``save_key_metric``,
            ``key_metric_filename``, ``save_interval``, ``n_saved``, ``epoch_level``, ...).

    Raises:
        ValueError: when ``interval_filename`` is given with ``n_saved`` other than 1.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        interval_filename: str | None = None,
        engine_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        if interval_filename is not None and kwargs.get("n_saved", 1) not in (1, None):
            raise ValueError(
                f"AtomicCheckpointSaver: a fixed interval_filename ({interval_filename!r}) keeps one file, "
                f"so n_saved must be 1, got {kwargs['n_saved']}."
            )
        save_dict = {k: v for k, v in save_dict.items() if v is not None}
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        if self._final_checkpoint is not None:
            self._final_checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, self._final_filename)
        if self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.save_handler = _AtomicDiskSaver(
                self.save_dir, kwargs.get("key_metric_filename")
            )
        if self._interval_checkpoint is not None:
            self._interval_checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, interval_filename)
        self.engine_key = engine_key

    def attach(self, engine: Engine) -> None:
        """Attach the savers to ``engine`` (and add it to ``save_dict`` under ``engine_key``, if given)."""
        if self.engine_key is not None:
            # the ignite Checkpoint objects hold this same dict, so they save the engine too
            self.save_dict[self.engine_key] = engine
        super().attach(engine)

    def completed(self, engine: Engine) -> None:
        """Write the final checkpoint if ``engine`` ran to its last epoch (``save_final``)."""
        if engine.should_terminate or engine.state.epoch < (engine.state.max_epochs or 0):
            engine.logger.warning(
                f"{self._final_filename or 'final checkpoint'} not written: the run stopped at epoch "
                f"{engine.state.epoch} of {engine.state.max_epochs}."
            )
            return
        super().completed(engine)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        """Re-raise ``e`` without writing the final checkpoint (MONAI's saver writes it)."""
        raise e

    def state_dict(self) -> dict:
        """The key-metric tracking state (saved checkpoints and their scores); empty without ``save_key_metric``."""
        return {} if self._key_metric_checkpoint is None else self._key_metric_checkpoint.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state returned by :meth:`state_dict` (nothing to do when it is empty)."""
        if state_dict and self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.load_state_dict(state_dict)


_RESUME_WAY_OUT = (
    "Pass --resume False to start a new run (which replaces it), or another --output_dir to keep it and start anew "
    "there."
)


class ResumeCheckpointLoader:
    """At the start of training, continue an interrupted run from its last complete checkpoint.

    If ``load_path`` exists and holds a run that had not finished (its trainer epoch is below the trainer's
    ``max_epochs``), every object of ``load_dict`` is restored from it: network, optimizer, LR scheduler, the trainer's
    epoch and iteration counters, and the best-model tracking of an :class:`AtomicCheckpointSaver`. Training then goes
    on with the next epoch, so a run killed at any moment loses at most the epoch in progress. A missing file starts a
    new run; a finished run (epoch >= ``max_epochs``) is not resumed either, so running the same command again, or
    MONAI Label's training on new labels, trains anew. The checkpoint is read with ``torch.load(weights_only=True)``.
    A checkpoint that cannot be read or does not fit the objects (another network) raises an error that names the
    file and the ways out (``--resume False``, another ``--output_dir``).

    Unlike MONAI's :class:`~monai.handlers.CheckpointLoader`, a missing file is not an error, and the handler is not
    named ``CheckpointLoader``, so MONAI Label still adds its own loader of ``models/model.pt`` for fine-tuning.

    Args:
        load_path: the checkpoint written by :class:`AtomicCheckpointSaver` with ``interval_filename``.
        load_dict: the objects to restore, with the same keys as the saver's ``save_dict``.
        enabled: ``False`` disables the handler (``--resume False`` in the bundle).
        engine_key: if given, the engine this handler is attached to (the trainer) is restored from this key of the
            checkpoint (its epoch and iteration counters); see :class:`AtomicCheckpointSaver`.
        map_location: ``map_location`` of ``torch.load``.
        name: identifier of the logger; ``None`` uses the trainer's logger.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: dict,
        enabled: bool = True,
        engine_key: str | None = None,
        map_location: Any = "cpu",
        name: str | None = None,
    ) -> None:
        self.load_path = str(load_path)
        self.load_dict = {k: v for k, v in load_dict.items() if v is not None}
        self.enabled = bool(enabled)
        self.engine_key = engine_key
        self.map_location = map_location
        self.logger = logging.getLogger(name) if name is not None else None
        self.resumed_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``Events.STARTED`` of the trainer.

        Args:
            engine: the trainer.
        """
        from ignite.engine import Events

        if self.logger is None:
            self.logger = engine.logger
        if self.engine_key is not None:
            self.load_dict[self.engine_key] = engine
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Load the checkpoint if there is an unfinished run to continue."""
        log = self.logger or logging.getLogger(__name__)
        if not self.enabled or not os.path.isfile(self.load_path):
            return
        try:
            checkpoint = torch.load(self.load_path, map_location=self.map_location, weights_only=True)
        except Exception as e:
            raise RuntimeError(
                f"ResumeCheckpointLoader: cannot read {self.load_path}, the checkpoint this run would resume from "
                f"({type(e).__name__}: {e}). {_RESUME_WAY_OUT}"
            ) from e
        held = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        if not isinstance(checkpoint, Mapping) or set(self.load_dict) - set(checkpoint):
            raise KeyError(
                f"ResumeCheckpointLoader: {self.load_path} holds {held}, not {sorted(self.load_dict)}; it was written "
                f"by another configuration. {_RESUME_WAY_OUT}"
            )
        max_epochs = engine.state.max_epochs
        engine_state = checkpoint.get(self.engine_key, {}) if self.engine_key is not None else {}
        # ignite's Engine.state_dict() holds "iteration" and "epoch_length" (not "epoch") for an epoch-level save
        if "epoch" in engine_state:
            saved_epoch = int(engine_state["epoch"])
        else:
            saved_epoch = int(engine_state.get("iteration", 0)) // max(int(engine_state.get("epoch_length") or 1), 1)
        if max_epochs is not None and saved_epoch >= max_epochs:
            log.info(
                f"ResumeCheckpointLoader: {self.load_path} holds a finished run ({saved_epoch} epochs >= "
                f"max_epochs={max_epochs}); starting a new run."
            )
            return
        try:
            Checkpoint.load_objects(to_load=self.load_dict, checkpoint=checkpoint)
        except Exception as e:
            raise RuntimeError(
                f"ResumeCheckpointLoader: {self.load_path} does not fit this run ({type(e).__name__}: {e}); it was "
                f"written by another configuration (another --network_name, --img_size, ...). {_RESUME_WAY_OUT}"
            ) from e
        # the trainer's state_dict carries the old run's max_epochs: the current setting wins
        engine.state.max_epochs = max_epochs
        self.resumed_epoch = engine.state.epoch
        log.info(
            f"ResumeCheckpointLoader: resumed from {self.load_path} after epoch {engine.state.epoch} "
            f"(iteration {engine.state.iteration}); training continues to epoch {max_epochs}."
        )


class CheckpointLoader(_MonaiCheckpointLoader):
    """MONAI's :class:`~monai.handlers.CheckpointLoader` whose errors name the file and say what it must be.

    Same arguments and behaviour; a checkpoint that cannot be read (empty, truncated, not written by ``torch.save``)
    or that does not fit ``load_dict`` (the weights of another network or size) raises ``RuntimeError`` naming
    ``load_path``, with the original error as its cause. The bundle's evaluation and inference use it for
    ``--ckpt_path``.
    """

    def __call__(self, engine: Engine) -> None:
        """Load the checkpoint into the objects of ``load_dict``.

        Raises:
            RuntimeError: the checkpoint cannot be read or does not fit (the message names the file).
        """
        try:
            super().__call__(engine)
        except Exception as e:
            raise RuntimeError(
                f"CheckpointLoader: cannot load {self.load_path} into {sorted(self.load_dict)} "
                f"({type(e).__name__}: {e}). --ckpt_path must be a complete model.pt written by this bundle's training "
                "with the same --network_name, --network_args, --img_size, --in_channels and --num_classes."
                f"{self._fitting_arguments()}"
            ) from e

    def _fitting_arguments(self) -> str:
        """For a MedT checkpoint: the ``--network_args`` it was trained with, as far as its parameters tell (a model.pt
        of an earlier bundle, whose network had a name of its own, e.g. ``medt_fullres_zero_init``)."""
        try:
            checkpoint = torch.load(self.load_path, map_location="cpu", weights_only=True)
        except Exception:
            return ""
        state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
        arguments = medt_arguments_of(state) if isinstance(state, Mapping) else None
        if arguments is None:
            return ""
        return f' This file holds a MedT: --network_name medt --network_args "{arguments}" loads it.'
