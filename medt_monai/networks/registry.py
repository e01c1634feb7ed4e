"""The one list of networks this package trains, compares and ships: a name -> constructor and its fixed arguments.

The bundle configs (``network_def``), ``scripts/reproduce.py``, ``scripts/benchmark.py`` and the tests build their
networks from :data:`NETWORKS` through :func:`get_network`, so a name means the same network everywhere.
"""

from __future__ import annotations

import pydoc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

__all__ = ["NetworkSpec", "NETWORKS", "get_network"]


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

#: name -> :class:`NetworkSpec`, in the order of the results tables.
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
    "gated_axial_unet": NetworkSpec(
        _NETS + "GatedAxialUNet", "Gated Axial U-Net, gates before norm (authors' code)", takes_img_size=True
    ),
    "gated_axial_unet_effective": NetworkSpec(
        _NETS + "GatedAxialUNet",
        "Gated Axial U-Net, gates after norm",
        {"gate_placement": "after_norm"},
        takes_img_size=True,
    ),
    "logo": NetworkSpec(_NETS + "LoGo", "LoGo", takes_img_size=True),
    "medt_global": NetworkSpec(
        _NETS + "MedT", "MedT, global branch only", {"branches": ("global",)}, takes_img_size=True
    ),
    "medt_local": NetworkSpec(_NETS + "MedT", "MedT, local branch only", {"branches": ("local",)}, takes_img_size=True),
    "medt": NetworkSpec(_NETS + "MedT", "MedT, gates before norm (authors' code)", takes_img_size=True),
    "medt_effective": NetworkSpec(
        _NETS + "MedT", "MedT, gates after norm", {"gate_placement": "after_norm"}, takes_img_size=True
    ),
    "medt_fullres": NetworkSpec(
        _NETS + "MedT",
        "MedT + full-resolution path (not in the paper)",
        {"full_resolution_skip": True},
        takes_img_size=True,
    ),
    "medt_fullres_zero_init": NetworkSpec(
        _NETS + "MedT",
        "MedT + full-resolution path, zero-initialised residual branches (not in the paper)",
        {"full_resolution_skip": True, "zero_init_residual": True},
        takes_img_size=True,
    ),
    "medt_fullres_zero_init_branch_supervision": NetworkSpec(
        _NETS + "MedT",
        "medt_fullres_zero_init + a loss on each branch's own head in training (not in the paper)",
        {"full_resolution_skip": True, "zero_init_residual": True, "branch_supervision": True},
        takes_img_size=True,
    ),
}


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
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network name {name!r}; the networks are: {', '.join(NETWORKS)}.")
    spec = NETWORKS[name]
    arguments = {**spec.kwargs, **kwargs}
    if spec.takes_img_size:
        arguments["img_size"] = img_size
    network_class: Callable[..., nn.Module] = pydoc.locate(spec.target)  # type: ignore[assignment]
    return network_class(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **arguments)
