"""MedT and its Local-Global (LoGo) family: a global branch on the whole image plus a local branch on a patch grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import lcm
from typing import Any, List, Union

import torch
import torch.nn as nn

from medt_monai.networks.blocks.axial_attention import axial_attention_layer
from medt_monai.networks.blocks.axial_block import AxialBlock
from medt_monai.networks.blocks.encoder_decoder import AxialEncoderDecoder, conv_bn_relu
from medt_monai.networks.nets.utils import check_input_size, check_network_args

__all__ = ["MedT", "LoGo", "BRANCHES", "medt_arguments_of"]

BRANCHES = ("global", "local")


class MedT(nn.Module):
    """Medical Transformer: Local-Global training with gated axial attention (Valanarasu et al., MICCAI 2021).

    The global branch (a shallow axial-attention encoder-decoder) sees the whole image; the local branch (a deeper
    one) sees each cell of a ``patch_grid`` of patches. Both produce ``channels[0] // 2`` maps at full resolution,
    which are added and mapped to logits by a 3x3 conv, ReLU and a 1x1 conv (the paper's LoGo, Sec. 3.3).
    The local branch runs all patches as one batch (``N * grid_h * grid_w`` images), not in a per-patch loop.

    With the defaults this is the authors' ``MedT`` (gated attention in the global branch, attention without
    positional encoding in the local branch); :class:`LoGo` uses plain axial attention in both branches, and
    ``branches=("global",)`` / ``("local",)`` give the ablation's global-only and local-only networks.

    Note:
        Training-mode BatchNorm statistics of the local branch are computed over all patches of the batch together;
        the authors' loop normalised each patch position separately (and updated the running statistics 16 times
        per step). Eval-mode outputs are identical.

    Args:
        spatial_dims: number of spatial dimensions; only 2 is supported.
        in_channels: image channels (3 for H&E, 1 for ultrasound). Defaults to 3.
        out_channels: classes, including background; raw logits are returned. Defaults to 2.
        img_size: largest input ``(height, width)`` (or one int); sizes the relative position encodings of both
            branches (the local branch's for one patch). Smaller inputs work too. Defaults to 128.
        patch_grid: ``(rows, columns)`` of the local branch's patch grid. Defaults to ``(4, 4)``.
        channels: stage output channels shared by both branches; the global branch uses the first
            ``len(global_num_blocks)``. Defaults to ``(32, 64, 128, 256)``.
        global_num_blocks: blocks per stage of the global branch. Defaults to ``(1, 2)``.
        local_num_blocks: blocks per stage of the local branch. Defaults to ``(1, 2, 4, 1)``.
        stem_channels: stem channels of the global branch. Defaults to 8.
        local_stem_channels: stem channels of the local branch. Defaults to 64, the value the authors' code ends up
            with (their local stem reuses a counter left at 64 by the global layers).
        num_heads: attention heads. Defaults to 8.
        global_attention: attention kind of the global branch (``"gated"``, ``"axial"`` or ``"nopos"``).
            Defaults to ``"gated"``.
        local_attention: attention kind of the local branch. Defaults to ``"nopos"``.
        gate_placement: ``"before_norm"`` (the authors' code) or ``"after_norm"`` (Eq. 3 as intended), see
            :class:`~medt_monai.networks.blocks.AxialAttention`. Defaults to ``"before_norm"``.
        branches: which branches to build, a subset of ``("global", "local")``. Defaults to both.
        full_resolution_skip: add a convolutional path at the input's resolution (two 3x3 conv + BN + ReLU,
            ``channels[0] // 2`` maps) to the branches' features before the head. Both branches begin with a stride-2
            7x7 stem, so without it every feature the head sees was computed at half resolution and upsampled; the
            path gives outlines and small structures a full-resolution route, as a U-Net's first skip does. Not in
            the paper; defaults to False (the published network).
        zero_init_residual: start every axial-attention block as its shortcut: the BatchNorm that closes each block's
            residual branch starts with zero weight (as in torchvision's ``ResNet(zero_init_residual=True)``, after
            Goyal et al., 2017), so training begins from the stems, shortcuts and decoders and grows the attention
            branches in. Only the initialisation changes (same parameters and state-dict keys). Not in the paper;
            defaults to False (the published network's initialisation).
        branch_supervision: give each branch its own 1x1 head and, in training mode, return ``[logits,
            global_logits, local_logits]`` so that a loss can supervise each branch alone as well as their sum (deep
            supervision of the two branches, for :class:`monai.losses.DeepSupervisionLoss`, which the bundle wraps
            around every loss). In eval mode the network returns the logits tensor only, so inference, evaluation and
            MONAI Label are unchanged. Needs both branches. Not in the paper; defaults to False.

    Raises:
        ValueError: for ``spatial_dims != 2``, an unknown branch, a ``patch_grid`` that is not two positive ints,
            widths not divisible by ``4 * num_heads``, ``branch_supervision`` with one branch, or (in ``forward``) an
            input whose height/width is not a multiple of :attr:`size_divisor` or exceeds ``img_size``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        img_size: Sequence[int] | int = 128,
        patch_grid: Sequence[int] = (4, 4),
        channels: Sequence[int] = (32, 64, 128, 256),
        global_num_blocks: Sequence[int] = (1, 2),
        local_num_blocks: Sequence[int] = (1, 2, 4, 1),
        stem_channels: int = 8,
        local_stem_channels: int = 64,
        num_heads: int = 8,
        global_attention: str = "gated",
        local_attention: str = "nopos",
        gate_placement: str = "before_norm",
        branches: Sequence[str] = BRANCHES,
        full_resolution_skip: bool = False,
        zero_init_residual: bool = False,
        branch_supervision: bool = False,
    ) -> None:
        super().__init__()
        self.img_size = check_network_args(spatial_dims, in_channels, out_channels, img_size, channels, num_heads)
        global_layer = axial_attention_layer(global_attention, num_heads, gate_placement)
        local_layer = axial_attention_layer(local_attention, num_heads, gate_placement)
        unknown = set(branches) - set(BRANCHES)
        if unknown or not branches:
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {tuple(branches)}.")
        if branch_supervision and set(branches) != set(BRANCHES):
            raise ValueError(f"branch_supervision needs both branches {BRANCHES}, got {tuple(branches)}.")
        grid = tuple(int(g) for g in patch_grid)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"patch_grid must be two positive ints (rows, columns), got {patch_grid!r}.")
        for name, blocks in (("global_num_blocks", global_num_blocks), ("local_num_blocks", local_num_blocks)):
            if not 1 <= len(blocks) <= len(channels):
                raise ValueError(f"{name} must have 1 to {len(channels)} entries (one per stage), got {tuple(blocks)}.")
        self.patch_grid = grid
        self.global_branch = None
        self.local_branch = None
        divisor = (1, 1)
        if "global" in branches:
            depth = len(global_num_blocks)
            self.global_branch = AxialEncoderDecoder(
                in_channels=in_channels,
                img_size=self.img_size,
                channels=channels[:depth],
                num_blocks=global_num_blocks,
                stem_channels=stem_channels,
                attention_layer=global_layer,
                bottleneck=False,
            )
            divisor = (2**depth, 2**depth)
        if "local" in branches:
            depth = len(local_num_blocks)
            patch_size = [s // g for s, g in zip(self.img_size, grid)]
            self.local_branch = AxialEncoderDecoder(
                in_channels=in_channels,
                img_size=patch_size,
                channels=channels[:depth],
                num_blocks=local_num_blocks,
                stem_channels=local_stem_channels,
                attention_layer=local_layer,
                bottleneck=True,
            )
            divisor = tuple(lcm(d, g * 2**depth) for d, g in zip(divisor, grid))
        #: height and width of an input must be multiples of these.
        self.size_divisor = divisor
        features = channels[0] // 2
        self.full_resolution = None
        if full_resolution_skip:
            self.full_resolution = nn.Sequential(
                conv_bn_relu(in_channels, features, 3), conv_bn_relu(features, features, 3)
            )
        self.head = nn.Sequential(
            nn.Conv2d(features, features, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, out_channels, kernel_size=1),
        )
        self.global_head = self.local_head = None
        if branch_supervision:
            self.global_head = nn.Conv2d(features, out_channels, kernel_size=1)
            self.local_head = nn.Conv2d(features, out_channels, kernel_size=1)

        if zero_init_residual:
            for block in self.modules():
                if isinstance(block, AxialBlock):
                    nn.init.zeros_(block.expand[1].weight)  # the BatchNorm that closes the residual branch

    def _local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Run the local branch on every patch of the grid at once and tile the results back together."""
        n, c, h, w = x.shape
        rows, cols = self.patch_grid
        ph, pw = h // rows, w // cols
        # (N, C, H, W) -> (N, rows, cols, C, ph, pw) -> (N * rows * cols, C, ph, pw)
        patches = x.reshape(n, c, rows, ph, cols, pw).permute(0, 2, 4, 1, 3, 5).reshape(n * rows * cols, c, ph, pw)
        features = self.local_branch(patches)
        f = features.shape[1]
        # (N * rows * cols, F, ph, pw) -> (N, F, rows, ph, cols, pw) -> (N, F, H, W)
        return features.reshape(n, rows, cols, f, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, f, h, w)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """``(N, in_channels, H, W)`` -> logits ``(N, out_channels, H, W)``.

        With ``branch_supervision`` in training mode: ``[logits, global_logits, local_logits]``, each of that shape.
        """
        check_input_size(x, self.img_size, self.size_divisor)
        branch_logits: List[torch.Tensor] = []
        if self.global_branch is not None and self.local_branch is not None:
            global_features = self.global_branch(x)
            local_features = self._local_features(x)
            features = global_features + local_features
            if self.training and self.global_head is not None and self.local_head is not None:
                branch_logits = [self.global_head(global_features), self.local_head(local_features)]
        elif self.global_branch is not None:
            features = self.global_branch(x)
        else:
            features = self._local_features(x)
        if self.full_resolution is not None:
            features = features + self.full_resolution(x)
        logits = self.head(features)
        if len(branch_logits) > 0:
            return [logits] + branch_logits
        return logits


def medt_arguments_of(state_dict: Mapping[str, Any]) -> dict[str, Any] | None:
    """The :class:`MedT` arguments that decide which parameters ``state_dict`` holds (``branches``,
    ``full_resolution_skip``, ``branch_supervision``), or None when it is not a MedT's (nor a LoGo's) state dict.

    For the error of a checkpoint that does not fit the configured network: e.g. a ``model.pt`` of bundles 0.10-0.12
    (no branch heads) gives ``{"full_resolution_skip": True, "branch_supervision": False}``.
    """
    prefixes = {key.split(".", 1)[0] for key in state_dict}
    if "head" not in prefixes or not prefixes & {"global_branch", "local_branch"}:
        return None
    arguments: dict[str, Any] = {}
    branches = [branch for branch in BRANCHES if f"{branch}_branch" in prefixes]
    if len(branches) < len(BRANCHES):
        arguments["branches"] = branches
    arguments["full_resolution_skip"] = "full_resolution" in prefixes
    arguments["branch_supervision"] = "global_head" in prefixes
    return arguments


class LoGo(MedT):
    """Local-Global network with plain (ungated) axial attention in both branches: the paper's "LoGo" row.

    Takes the same arguments as :class:`MedT`; ``global_attention`` and ``local_attention`` default to ``"axial"``.
    """

    def __init__(self, *args, global_attention: str = "axial", local_attention: str = "axial", **kwargs) -> None:
        super().__init__(*args, global_attention=global_attention, local_attention=local_attention, **kwargs)
