"""Checks of a bundle workflow's settings that run before any data are loaded or cached."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medt_monai.networks.registry import get_network

__all__ = ["check_instance_labels", "check_model_scale", "check_workflow", "size_divisor"]


def size_divisor(network: torch.nn.Module) -> tuple[int, int] | None:
    """The numbers a network's input height and width must be multiples of, or ``None`` when not known.

    The MedT family exposes ``size_divisor``; MONAI's :class:`~monai.networks.nets.UNet` needs multiples of the product
    of its ``strides``.
    """
    from monai.networks.nets import UNet

    divisor = getattr(network, "size_divisor", None)
    if divisor is None and isinstance(network, UNet):
        divisor = math.prod(int(s) for s in network.strides)
    if divisor is None:
        return None
    return (int(divisor), int(divisor)) if isinstance(divisor, int) else (int(divisor[0]), int(divisor[1]))


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_workflow(
    network_name: str | None = None,
    network_args: Mapping[str, Any] | None = None,
    img_size: int | None = None,
    writable: Mapping[str, str] | None = None,
    readable: Mapping[str, str] | None = None,
) -> None:
    """Raise a clear error for a setting the workflow cannot run with, before any data are loaded.

    The bundle's configs call this as the first step of their ``run`` / ``training`` / ``evaluating`` lists, before the
    datasets (MONAI instantiates a ``CacheDataset``, and caches it, when the trainer is built).

    Args:
        network_name: the chosen network; must be a name of :data:`medt_monai.networks.NETWORKS`. The network is built
            once with ``network_args`` to check both, with the random number generator's state restored afterwards,
            so the run's initial weights do not change.
        network_args: the arguments the workflow builds it with (:func:`medt_monai.networks.get_network`).
        img_size: the network input size (height = width); must be a multiple of the chosen network's
            :func:`size_divisor`.
        writable: option name -> folder the workflow writes (``{"ckpt_dir": ..., "output_dir": ...}``); each must be a
            folder that can be written, or not exist yet below one.
        readable: option name -> file the workflow reads (``{"ckpt_path": ...}``); each must be a non-empty file.

    Raises:
        ValueError: an unknown ``network_name`` (the message lists the names, or names the network and arguments of a
            removed name), an ``img_size`` the network cannot take, or an empty file.
        TypeError: ``network_args`` that the network does not take (the message names its arguments).
        FileNotFoundError: a ``readable`` file is missing.
        PermissionError: a ``writable`` folder cannot be written.
    """
    if network_name is not None:
        with torch.random.fork_rng(devices=[]):  # built to check its name and arguments; the run's weights unchanged
            divisor = size_divisor(get_network(network_name, **(network_args or {})))
        if img_size is not None and divisor is not None and (img_size % divisor[0] or img_size % divisor[1]):
            step = math.lcm(*divisor)
            fits = sorted({max(step, img_size // step * step), (img_size // step + 1) * step})
            multiples = f"{divisor[0]}" if divisor[0] == divisor[1] else f"{divisor[0]} and {divisor[1]}"
            raise ValueError(
                f"--img_size {img_size} does not fit --network_name {network_name}: its input height and width "
                f"must be multiples of {multiples}; e.g. --img_size {' or '.join(map(str, fits))}."
            )
    for option, folder in (writable or {}).items():
        path = Path(folder).expanduser()
        existing = _nearest_existing(path.absolute())
        if not existing.is_dir():
            raise PermissionError(f"--{option} {folder}: cannot create this folder, {existing} is not a folder.")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"--{option} {folder}: {existing} is not writable; choose another --{option}.")
    for option, file in (readable or {}).items():
        path = Path(file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--{option} {file}: file not found.")
        if path.stat().st_size == 0:
            raise ValueError(f"--{option} {file}: the file is empty (0 bytes), not a checkpoint.")


def check_instance_labels(splits: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "instance") -> None:
    """Raise a clear error when training for instances (``--output instances``) on data without instance maps.

    Args:
        splits: the workflow's ``{"train": [...], "validation": [...], ...}`` datalists.
        key: the datalist key of the instance maps.

    Raises:
        ValueError: an image of the training or validation split has no instance map (the message names it).
    """
    for split in ("train", "validation"):
        items = splits.get(split, [])
        missing = [item for item in items if key not in item]
        if missing:
            raise ValueError(
                f"--output instances learns the border between objects from instance maps, but {len(missing)} of "
                f"the {len(items)} {split} images have none (e.g. {missing[0].get('image')}); give the data set its "
                f"instance labels (GlaS labelinst/, MoNuSeg XML, a MedT-layout labelinst/ folder of 8- or 16-bit "
                f"id images, a '{key}' entry in a Decathlon datalist), or train with --output semantic."
            )


def check_model_scale(model_mpp: float | None, image_scale: float | None = None) -> float:
    """The model's micrometres per pixel, or a clear error when it has none (slide inference needs one).

    A model trained on whole images squeezed to ``img_size`` (``--image_scale`` null) sees every tile at its own
    scale, so it cannot be placed on a slide.

    Raises:
        ValueError: ``model_mpp`` is None or not positive.
    """
    if model_mpp is None:
        raise ValueError(
            "slide inference needs a model with a physical scale: this one was set up with --image_scale null "
            "(whole images squeezed to img_size); use weights trained with --image_scale (the shipped model's "
            "setting) and the same --image_scale and --image_mpp here."
        )
    if not float(model_mpp) > 0:
        raise ValueError(
            f"the model's micrometres per pixel (--image_mpp / --image_scale) must be > 0, got {model_mpp}."
        )
    return float(model_mpp)
