"""The one list of networks this package trains, compares and ships: a name -> constructor and its fixed arguments.

The bundle configs (``network_def``), ``scripts/reproduce.py``, ``scripts/benchmark.py`` and the tests build their
networks from :data:`NETWORKS` through :func:`get_network`, so a name means the same network everywhere.
"""

from __future__ import annotations

import inspect
import pydoc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

__all__ = ["NetworkSpec", "NETWORKS", "REMOVED_NAMES", "get_network", "network_and_arguments"]


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one named network.

    Args:
        target: dotted path of the network class (imported when the network is built, so optional dependencies of
            one network do not burden the others).
        description: what the network is, for tables and error messages.
        kwargs: fixed constructor arguments that make this name differ from the class's defaults.
        takes_img_size: whether the constructor takes ``img_size`` (the axial-attention networks size their relative
            position encodings with it; the CNNs do not have it).
    """

    target: str
    description: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    takes_img_size: bool = False


_NETS = "medt_monai.networks.nets."
_MONAI_UNET = {"channels": (32, 64, 128, 256, 512), "strides": (2, 2, 2, 2)}

#: name -> :class:`NetworkSpec`, in the order of the results tables: the CNN baselines, then the paper's family. A variant
#: of a network (an ablation, the bundle's recipe) is the network's name with constructor arguments, not a name.
NETWORKS: dict[str, NetworkSpec] = {
    "unet": NetworkSpec("monai.networks.nets.UNet", "U-Net (MONAI `UNet`)", {**_MONAI_UNET, "num_res_units": 0}),
    "resunet": NetworkSpec(
        "monai.networks.nets.UNet",
        "Res-UNet (MONAI `UNet`, 2 residual units)",
        {**_MONAI_UNET, "num_res_units": 2, "norm": "batch"},
    ),
    "unetpp": NetworkSpec(_NETS + "UNetPlusPlus", "U-Net++ (MONAI `BasicUNetPlusPlus`)"),
    "swin_unetr": NetworkSpec(
        "monai.networks.nets.SwinUNETR", "SwinUNETR (MONAI, feature size 24; needs einops)", {"feature_size": 24}
    ),
    "axial_unet": NetworkSpec(_NETS + "AxialUNet", "Axial U-Net", takes_img_size=True),
    "gated_axial_unet": NetworkSpec(_NETS + "GatedAxialUNet", "Gated Axial U-Net", takes_img_size=True),
    "logo": NetworkSpec(_NETS + "LoGo", "LoGo (Local-Global, plain axial attention)", takes_img_size=True),
    "medt": NetworkSpec(_NETS + "MedT", "MedT (Local-Global, gated axial attention)", takes_img_size=True),
}


_FULL_RESOLUTION = {"full_resolution_skip": True}
_ZERO_INIT = {**_FULL_RESOLUTION, "zero_init_residual": True}

#: names of bundles <= 0.13 that were a network with fixed arguments: name -> (network name, arguments).
#: :func:`get_network` refuses them with their replacement; the results tables keep them as row labels
#: (:func:`network_and_arguments`, used by ``scripts/reproduce.py`` and ``scripts/benchmark.py``).
REMOVED_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "gated_axial_unet_effective": ("gated_axial_unet", {"gate_placement": "after_norm"}),
    "medt_effective": ("medt", {"gate_placement": "after_norm"}),
    "medt_global": ("medt", {"branches": ["global"]}),
    "medt_local": ("medt", {"branches": ["local"]}),
    "medt_fullres": ("medt", _FULL_RESOLUTION),
    "medt_fullres_zero_init": ("medt", _ZERO_INIT),
    "medt_fullres_zero_init_branch_supervision": ("medt", {**_ZERO_INIT, "branch_supervision": True}),
}


def network_and_arguments(label: str) -> tuple[str, dict[str, Any]]:
    """A results table's row label as ``(network name, constructor arguments)``: a name of :data:`NETWORKS` with no
    arguments, or a label of :data:`REMOVED_NAMES` (``"medt_global"`` -> ``("medt", {"branches": ["global"]})``).

    Raises:
        ValueError: for a label that is neither (the message lists the choices).
    """
    if label in NETWORKS:
        return label, {}
    if label in REMOVED_NAMES:
        name, arguments = REMOVED_NAMES[label]
        return name, dict(arguments)
    raise ValueError(f"unknown model {label!r}; the choices are: {', '.join([*NETWORKS, *REMOVED_NAMES])}.")


def _arguments(network_class: type) -> list[str]:
    """The keyword arguments of ``network_class``'s constructor, following ``**kwargs`` up to the base classes (e.g.
    :class:`~medt_monai.networks.nets.LoGo` passes them to :class:`~medt_monai.networks.nets.MedT`)."""
    names: list[str] = []
    for cls in network_class.__mro__:
        if cls is nn.Module or "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names += [
            p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def get_network(
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 2,
    img_size: Sequence[int] | int = 128,
    **kwargs: Any,
) -> nn.Module:
    """Build network ``name`` of :data:`NETWORKS`.

    Args:
        name: a key of :data:`NETWORKS`.
        spatial_dims: spatial dimensions (2).
        in_channels: image channels.
        out_channels: classes, including background.
        img_size: largest input size; passed only to networks that take it.
        kwargs: further constructor arguments; they override the name's fixed ones (e.g.
            ``get_network("medt", global_num_blocks=(1, 2, 4, 1))``).

    Raises:
        ValueError: for a name that is not in :data:`NETWORKS` (the message lists the names).
        TypeError: for an argument that the network does not take (the message names the network's arguments).
    """
    if name not in NETWORKS:
        if name in REMOVED_NAMES:
            former, arguments = REMOVED_NAMES[name]
            raise ValueError(
                f"network name {name!r} was removed in bundle 0.14.0: it is network {former!r} with the arguments "
                f'{arguments} (in the bundle: --network_name {former} --network_args "{arguments}").'
            )
        raise ValueError(f"unknown network name {name!r}; the networks are: {', '.join(NETWORKS)}.")
    spec = NETWORKS[name]
    arguments = {**spec.kwargs, **kwargs}
    if spec.takes_img_size:
        arguments["img_size"] = img_size
    network_class: Callable[..., nn.Module] = pydoc.locate(spec.target)  # type: ignore[assignment]
    accepted = _arguments(network_class)
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise TypeError(
            f"network {name!r} ({spec.target}) does not take {', '.join(unknown)}; its arguments are: "
            f"{', '.join(accepted)} (in the bundle, --network_args holds arguments of the network that --network_name "
            'names: with another network, pass --network_args "{}" or that network\'s own arguments).'
        )
    return network_class(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **arguments)
