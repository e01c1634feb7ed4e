"""Load checkpoints trained with the authors' MedT code into our networks.

The authors' ``lib/models/axialnet.py`` names modules ``conv1``/``bn1``..., ``layer{s}.{b}.hight_block`` (sic),
``decoder{d}``, ``adjust`` and their local-branch twins with a ``_p`` suffix; ``torch.nn.DataParallel`` adds a
``module.`` prefix. Their attention layer normalises the stacked similarity terms with one ``BatchNorm2d(3 * heads)``
(order: qk, qr, kr) and the two output terms with one ``BatchNorm1d(2 * C)`` whose channels interleave
``[sv_0, sve_0, sv_1, sve_1, ...]``; we keep one BatchNorm per term, so those tensors are split here.
Parameters their forward never uses (``conv1`` of the blocks without positional encoding, ``adjust_p``) and the
``flatten_index`` buffers are dropped.

Example::

    from medt_monai.networks.nets import MedT
    from medt_monai.networks.convert import load_authors_checkpoint

    net = MedT(img_size=128, in_channels=3, out_channels=2)
    load_authors_checkpoint(net, "their_medt.pth")
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ["convert_authors_state_dict", "load_authors_checkpoint"]

# stem: theirs conv{i}/bn{i} -> ours stem.{i-1}.0 / stem.{i-1}.1
_STEM = {f"conv{i}": f"stem.{i - 1}.0" for i in (1, 2, 3)} | {f"bn{i}": f"stem.{i - 1}.1" for i in (1, 2, 3)}
# last key component inside an attention layer
_ATTENTION = {
    "f_qr": "gate_q",
    "f_kr": "gate_k",
    "f_sv": "gate_v1",
    "f_sve": "gate_v2",
    "relative": "relative_position",
}
_BLOCK = {
    "conv_down": "reduce.0",
    "bn1": "reduce.1",
    "hight_block": "height_attention",
    "width_block": "width_attention",
    "conv_up": "expand.0",
    "bn2": "expand.1",
    "downsample.0": "shortcut.0",
    "downsample.1": "shortcut.1",
}
_UNUSED = re.compile(r"(^|\.)(flatten_index$|adjust_p\.|layer\d_p\.\d+\.conv1\.)")


def _branch_key(rest: str, num_stages: int) -> str:
    """Map a key of one authors' branch (suffix ``_p`` already removed) to our ``AxialEncoderDecoder`` key."""
    name, _, tail = rest.partition(".")
    if name in _STEM:
        return f"{_STEM[name]}.{tail}"
    match = re.fullmatch(r"layer(\d)", name)
    if match:
        block, _, inner = tail.partition(".")
        for theirs, ours in _BLOCK.items():
            if inner.startswith(theirs + "."):
                inner = ours + inner[len(theirs) :]
                break
        return f"stages.{int(match.group(1)) - 1}.{block}.{inner}"
    match = re.fullmatch(r"decoder(\d)", name)
    if match:
        index = int(match.group(1))
        if index == 5:
            return f"final.conv.{tail}"
        if index == 1:
            return f"bottleneck.conv.{tail}"
        return f"decoder.{num_stages - 6 + index}.conv.{tail}"
    raise KeyError(rest)


def _split_attention_norms(state: dict[str, torch.Tensor], prefix: str, num_heads: int) -> None:
    """Replace one attention layer's ``bn_similarity``/``bn_output`` entries by our per-term norms, in place."""
    similarity = {k[len(prefix) + 14 :]: state.pop(k) for k in list(state) if k.startswith(prefix + "bn_similarity.")}
    output = {k[len(prefix) + 10 :]: state.pop(k) for k in list(state) if k.startswith(prefix + "bn_output.")}
    positional = similarity["weight"].numel() == 3 * num_heads
    for field, value in similarity.items():
        terms = ["qk_norm", "qr_norm", "kr_norm"] if positional else ["qk_norm"]
        for index, term in enumerate(terms):
            state[f"{prefix}{term}.{field}"] = (
                value if value.dim() == 0 else value[index * num_heads : (index + 1) * num_heads]
            )
    for field, value in output.items():
        if not positional:
            state[f"{prefix}value_norm.{field}"] = value
        elif value.dim() == 0:
            state[f"{prefix}value_norm.{field}"] = value
            state[f"{prefix}value_position_norm.{field}"] = value
        else:
            state[f"{prefix}value_norm.{field}"] = value[0::2].clone()
            state[f"{prefix}value_position_norm.{field}"] = value[1::2].clone()


def convert_authors_state_dict(
    state_dict: Mapping[str, torch.Tensor], network: nn.Module, num_heads: int = 8
) -> dict[str, torch.Tensor]:
    """Translate an authors' state dict (``medt``, ``logo``, ``gated`` or ``axialunet``) into ``network``'s keys.

    Args:
        state_dict: the authors' ``model.state_dict()``, optionally with DataParallel's ``module.`` prefix.
        network: the target: :class:`~medt_monai.networks.nets.MedT` / :class:`~medt_monai.networks.nets.LoGo`
            for ``medt``/``logo`` checkpoints, :class:`~medt_monai.networks.nets.AxialUNet` /
            :class:`~medt_monai.networks.nets.GatedAxialUNet` for ``axialunet``/``gated`` ones.
        num_heads: heads of the authors' model (their ``groups``). Defaults to 8.

    Returns:
        a state dict that ``network.load_state_dict(..., strict=True)`` accepts.

    Raises:
        ValueError: when a key cannot be mapped, or the checkpoint's kind does not match ``network`` (names the
            offending keys).
    """
    from medt_monai.networks.nets import AxialUNet, MedT

    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    is_local_global = any(k.startswith("conv1_p.") for k in state)
    if isinstance(network, MedT) != is_local_global or not isinstance(network, (MedT, AxialUNet)):
        kind = "a MedT/LoGo" if is_local_global else "an Axial U-Net"
        raise ValueError(f"the checkpoint holds {kind} model but the target network is {type(network).__name__}.")

    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _UNUSED.search(key):
            continue
        first = key.split(".", 1)[0]
        try:
            if first == "adjust":
                ours = ("head.2." if is_local_global else "head.") + key.split(".", 1)[1]
            elif first == "decoderf":
                ours = "head.0." + key.split(".", 1)[1]
            elif is_local_global and first.endswith("_p"):
                branch = network.local_branch
                ours = "local_branch." + _branch_key(first[:-2] + "." + key.split(".", 1)[1], len(branch.stages))
            else:
                branch = network.global_branch if is_local_global else network.branch
                prefix = "global_branch." if is_local_global else "branch."
                ours = prefix + _branch_key(key, len(branch.stages))
        except (KeyError, AttributeError, TypeError) as error:
            raise ValueError(f"cannot map the authors' key {key!r} onto {type(network).__name__}.") from error
        parent, _, leaf = ours.rpartition(".")
        ours = f"{parent}.{_ATTENTION.get(leaf, leaf)}"
        ours = ours.replace(".qkv_transform.", ".to_qkv.").replace(".bn_qkv.", ".qkv_norm.")
        if ours.endswith("to_qkv.weight"):
            value = value.unsqueeze(-1)  # Conv1d (2C, C, 1) -> Conv2d (2C, C, 1, 1)
        converted[ours] = value

    attention_prefixes = {k[: k.index("bn_similarity.")] for k in converted if ".bn_similarity." in k}
    for prefix in attention_prefixes:
        _split_attention_norms(converted, prefix, num_heads)

    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(converted)), sorted(set(converted) - set(expected))
    reshaped = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or reshaped:
        raise ValueError(
            f"the converted checkpoint does not fit {type(network).__name__}: missing keys {missing[:3]}, unexpected "
            f"keys {unexpected[:3]}, shape mismatches {reshaped[:3]} (first three of each). Check img_size, "
            "in_channels/out_channels and the network variant."
        )
    return converted


def load_authors_checkpoint(network: nn.Module, path: str | os.PathLike, num_heads: int = 8) -> nn.Module:
    """Load the authors' checkpoint file at ``path`` (a state dict, loaded with ``weights_only=True``) into ``network``.

    Raises:
        ValueError: naming ``path`` when the file is not a state dict or does not fit ``network``.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, truncated zip files, ...
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({error}).") from error
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}.")
    try:
        converted = convert_authors_state_dict(state, network, num_heads)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    network.load_state_dict(converted)
    return network
