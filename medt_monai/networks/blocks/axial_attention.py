"""Multi-head axial self-attention along one spatial axis: plain, position-sensitive (MedT Eq. 2) and gated (Eq. 3).

The module holds the parameters and BatchNorms; the attention itself (the fused CPU kernel or its PyTorch fallback)
and the closed-form BatchNorm statistics are the functions of :mod:`medt_monai.networks.layers.axial_attention`.

Reference: Valanarasu et al., "Medical Transformer: Gated Axial-Attention for Medical Image Segmentation",
MICCAI 2021 (https://arxiv.org/abs/2102.10662); axial attention after Wang et al., "Axial-DeepLab", ECCV 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor

from medt_monai.networks.layers.axial_attention import (
    apply_value_affine,
    attend_lines,
    attend_qkv,
    line_statistics,
    position_moments,
    product_moments,
    qkv_lines,
    relative_embeddings,
)
from medt_monai.networks.layers.batch_norm import batch_norm_affine, batch_norm_affine_from_moments, gated_batch_norm

__all__ = ["AxialAttention", "ATTENTION_KINDS", "GATE_PLACEMENTS", "AttentionLayer", "axial_attention_layer"]

#: ``"axial"``: relative position encodings for q, k, v (Eq. 2); ``"gated"``: the same with the four gates of Eq. 3;
#: ``"nopos"``: no positional encoding (MedT's local branch).
ATTENTION_KINDS = ("axial", "gated", "nopos")
#: ``"before_norm"``: gates multiply the raw terms before their BatchNorm (the authors' code; BatchNorm cancels them up
#: to its epsilon); ``"after_norm"``: gates multiply the normalised terms, so they really scale the positional terms
#: as Eq. 3 intends.
GATE_PLACEMENTS = ("before_norm", "after_norm")

#: builds one attention layer from ``(channels, axis_length, axis)``; see :func:`axial_attention_layer`.
AttentionLayer = Callable[[int, int, int], nn.Module]


def _check_options(attention: str, num_heads: int, gate_placement: str) -> None:
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}.")
    if gate_placement not in GATE_PLACEMENTS:
        raise ValueError(f"gate_placement must be one of {GATE_PLACEMENTS}, got {gate_placement!r}.")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}.")


def axial_attention_layer(
    attention: str = "axial", num_heads: int = 8, gate_placement: str = "before_norm"
) -> AttentionLayer:
    """The attention options of a network, checked once: a factory ``(channels, axis_length, axis) ->``
    :class:`AxialAttention` that the blocks call for each of their layers (as MONAI's ``Act`` / ``Norm`` factories).

    Args:
        attention: one of :data:`ATTENTION_KINDS`.
        num_heads: attention heads.
        gate_placement: one of :data:`GATE_PLACEMENTS` (only used by ``"gated"``).

    Raises:
        ValueError: for an unknown ``attention`` or ``gate_placement``, or ``num_heads < 1``.
    """
    _check_options(attention, num_heads, gate_placement)
    return partial(AxialAttention, num_heads=num_heads, attention=attention, gate_placement=gate_placement)


class AxialAttention(nn.Module):
    """Self-attention along one spatial axis of a ``(N, C, H, W)`` feature map, one head per ``C / num_heads`` channels.

    Every row (``axis=1``) or column (``axis=0``) of the map is an independent sequence of length ``L``. For an output
    position ``i`` of a sequence, with ``q, k, v`` from a 1x1 projection (each head: ``d/2`` query, ``d/2`` key and ``d``
    value channels, ``d = C / num_heads``) and learned relative encodings ``r^q, r^k, r^v`` indexed by the offset ``i - j``:

    - ``"axial"`` (Eq. 2): ``y_i = sum_j softmax_j(q_i.k_j + q_i.r^q_ij + k_j.r^k_ji) (v_j + r^v_ij)``
    - ``"gated"`` (Eq. 3): ``y_i = sum_j softmax_j(q_i.k_j + G_Q q_i.r^q_ij + G_K k_j.r^k_ji) (G_V1 v_j + G_V2 r^v_ij)``
    - ``"nopos"``: ``y_i = sum_j softmax_j(q_i.k_j) v_j``

    As in the authors' code, each of the terms is batch-normalised separately (the logits per head, the outputs per
    channel) and there is no ``1/sqrt(d)`` scaling; the relative table is shared by all heads. :meth:`reference_forward`
    writes these equations out directly; :meth:`forward` computes the same with the BatchNorms folded into per-head
    factors (the fused CPU kernel, or the PyTorch operators of :mod:`medt_monai.networks.layers.axial_attention`).

    Args:
        channels: input and output channels ``C``; must be a multiple of ``2 * num_heads``.
        axis_length: largest sequence length the relative encodings cover (the feature map's height for ``axis=0``,
            width for ``axis=1``). Any shorter length works too: it uses the central ``2L - 1`` offsets of the table.
            Ignored for ``"nopos"``, which accepts any length.
        axis: spatial axis to attend along: 0 for height, 1 for width.
        num_heads: number of attention heads. Defaults to 8.
        attention: attention kind, one of :data:`ATTENTION_KINDS`. Defaults to ``"axial"``.
        gate_placement: one of :data:`GATE_PLACEMENTS`; only used when ``attention="gated"``. Defaults to
            ``"before_norm"``.

    TorchScript: ``torch.jit.script`` compiles the PyTorch implementation in eval mode (a scripted layer in training
    mode raises ``RuntimeError``); ``torch.jit.trace`` records the PyTorch implementation in either mode.

    Raises:
        ValueError: when ``attention``, ``gate_placement`` or ``axis`` is unknown, or ``channels`` is not a positive
            multiple of ``2 * num_heads``, or ``axis_length < 1``.
    """

    # TorchScript compiles only the branches these select (the gates and positional tables exist only when used)
    __constants__ = ("axis", "num_heads", "head_channels", "channels", "axis_length", "positional", "gated",
                     "gates_after_norm")  # fmt: skip

    def __init__(
        self,
        channels: int,
        axis_length: int,
        axis: int,
        num_heads: int = 8,
        attention: str = "axial",
        gate_placement: str = "before_norm",
    ) -> None:
        super().__init__()
        _check_options(attention, num_heads, gate_placement)
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (height) or 1 (width), got {axis}.")
        if channels < 2 * num_heads or channels % (2 * num_heads) != 0:
            raise ValueError(
                f"channels must be a positive multiple of 2 * num_heads = {2 * num_heads} so every head gets at "
                f"least one query and one key channel, got channels={channels}, num_heads={num_heads}."
            )
        if axis_length < 1:
            raise ValueError(f"axis_length must be >= 1, got {axis_length}.")
        self.channels = channels
        self.axis = axis
        self.num_heads = num_heads
        self.head_channels = channels // num_heads
        self.axis_length = axis_length
        self.positional = attention != "nopos"
        self.gated = attention == "gated"
        self.gates_after_norm = gate_placement == "after_norm"

        # q, k and v of all heads: per head [d/2 query | d/2 key | d value] channels.
        self.to_qkv = nn.Conv2d(channels, 2 * channels, kernel_size=1, bias=False)
        self.qkv_norm = nn.BatchNorm2d(2 * channels)
        self.qk_norm = nn.BatchNorm2d(num_heads)
        self.value_norm = nn.BatchNorm1d(channels)
        nn.init.normal_(self.to_qkv.weight, 0.0, channels**-0.5)
        if self.positional:
            # rows [0, d/2): r^q, [d/2, d): r^k, [d, 2d): r^v; column m holds the offset i - j = m - (axis_length - 1).
            self.relative_position = nn.Parameter(torch.randn(2 * self.head_channels, 2 * axis_length - 1))
            nn.init.normal_(self.relative_position, 0.0, self.head_channels**-0.5)
            self.qr_norm = nn.BatchNorm2d(num_heads)
            self.kr_norm = nn.BatchNorm2d(num_heads)
            self.value_position_norm = nn.BatchNorm1d(channels)
        if self.gated:
            # Eq. 3: G_Q, G_K, G_V1, G_V2 with the authors' initial values.
            self.gate_q = nn.Parameter(torch.tensor(0.1))
            self.gate_k = nn.Parameter(torch.tensor(0.1))
            self.gate_v1 = nn.Parameter(torch.tensor(1.0))
            self.gate_v2 = nn.Parameter(torch.tensor(0.1))
        #: PyTorch implementation (GPUs, bf16, tracing; see :func:`~medt_monai.networks.layers.fused_kernel_applies`):
        #: attend at most this many lines (rows or columns) at a time; ``None`` (default): about
        #: :data:`~medt_monai.networks.layers.CHUNK_LOGITS` logits per chunk on CPU, so the ``(lines, G, L, L)`` tensors
        #: of a chunk stay in cache, and all lines at once on other devices. Set it for a whole network with
        #: :func:`medt_monai.networks.set_memory_lean`. The CPU kernel never forms those tensors.
        self.max_lines: int | None = None

    def gates(self) -> list[nn.Parameter]:
        """The four gates ``[G_Q, G_K, G_V1, G_V2]`` of Eq. 3 (empty unless ``attention="gated"``)."""
        return [self.gate_q, self.gate_k, self.gate_v1, self.gate_v2] if self.gated else []

    def relative_embeddings(self, length: int) -> torch.Tensor:
        """Relative encodings ``r[c, i, j]`` for offset ``i - j``, shape ``(2 * head_channels, length, length)``."""
        return relative_embeddings(self.relative_position, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, C, H, W)``.

        Returns:
            ``(N, C, H, W)``.

        Raises:
            ValueError: when the attended axis is longer than ``axis_length`` (positional kinds only).
        """
        if not torch.jit.is_scripting() and isinstance(x, MetaTensor):
            # a plain tensor: the kernel's operators take no subclasses, and slicing a batch of MetaTensors into chunks
            # of lines would split their per-image metadata
            x = x.as_tensor()
        length = x.shape[2 + self.axis]
        if self.positional and length > self.axis_length:
            raise ValueError(
                f"input {'height' if self.axis == 0 else 'width'} {length} exceeds the {self.axis_length} positions "
                "this layer's relative encodings were built for; build the network with a larger img_size."
            )
        if self.qkv_norm.training:
            qkv = self.qkv_norm(self.to_qkv(x))  # (N, 2C, H, W)
        else:
            # Eval: BatchNorm after a bias-free 1x1 conv is a per-channel affine, folded into the conv's weight/bias.
            norm = self.qkv_norm
            scale, shift = batch_norm_affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps)
            qkv = F.conv2d(x, self.to_qkv.weight * scale[:, None, None, None], shift)
        table: torch.Tensor | None = None
        if self.positional:
            table = self.relative_position
        if torch.jit.is_scripting():
            # TorchScript: the PyTorch implementation with the running statistics (the kernel's operators and the
            # closed-form training statistics are not compiled)
            if self.qkv_norm.training:
                raise RuntimeError(
                    "a scripted AxialAttention runs in eval mode only: call .eval() on the scripted model (train the "
                    "eager network)."
                )
            scales, shift = self._running_logit_affine()
            lines = qkv_lines(qkv, self.axis, self.num_heads)
            terms = attend_lines(lines, self.axis, scales, shift, table)
            return apply_value_affine(terms, self._value_affine())
        return self._forward_eager(qkv, table, length)

    @torch.jit.unused
    def _forward_eager(self, qkv: torch.Tensor, table: torch.Tensor | None, length: int) -> torch.Tensor:
        """:meth:`forward` after the projection, outside TorchScript: the fused CPU kernel or the PyTorch
        implementation (:func:`~medt_monai.networks.layers.attend_qkv`); closed-form statistics in training mode."""
        statistics = None
        if self.qkv_norm.training:
            statistics = line_statistics(qkv, self.axis, self.num_heads, self.positional)
        lines = qkv.shape[0] * qkv.shape[3 - self.axis]
        scales, shift = self._logit_affine(statistics, lines, length)
        if not self.value_norm.training:
            return attend_qkv(
                qkv, self.axis, self.num_heads, scales, shift, table, self._value_affine(), self.max_lines
            )[0]
        terms = attend_qkv(qkv, self.axis, self.num_heads, scales, shift, table, max_lines=self.max_lines)
        gate_v1, gate_v2 = self.gates()[2:] if self.gated else (None, None)
        out = gated_batch_norm(self.value_norm, terms[0], gate_v1, self.gates_after_norm)
        if self.positional:
            out = out + gated_batch_norm(self.value_position_norm, terms[1], gate_v2, self.gates_after_norm)
        return out

    def _logit_affine(
        self, statistics: tuple[torch.Tensor, ...] | None, lines: int, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The three logit terms' BatchNorms (and gates G_Q, G_K of Eq. 3) as per-head factors and one shift:
        ``logit_ij = shift + s_qk q_i.k_j + s_qr q_i.r^q_ij + s_kr k_j.r^k_ji``, with training statistics in closed form
        (nothing of size ``L x L`` is formed) or running statistics in eval.

        Args:
            statistics: training mode: :func:`~medt_monai.networks.layers.line_statistics`; eval mode: None.
            lines: number of lines ``B``.
            length: ``L``.

        Returns:
            ``scales`` ``(G, 3)`` (``s_qk, s_qr, s_kr``; the last two zero without positional encoding) and ``shift``
            ``(G,)``. Nothing couples the lines after this.
        """
        if statistics is None:  # eval mode
            return self._running_logit_affine()
        count = lines * length * length
        scale, shift = batch_norm_affine_from_moments(self.qk_norm, product_moments(*statistics[:2], count))
        if not self.positional:
            zeros = torch.zeros_like(scale)
            return torch.stack([scale, zeros, zeros], dim=1), shift
        gate_q, gate_k = self.gates()[:2] if self.gated else (None, None)
        after = self.gates_after_norm
        half = self.head_channels // 2
        r_q, r_k, _ = torch.split(self.relative_embeddings(length), [half, half, self.head_channels])
        moments_qr = position_moments(*statistics[2:4], r_q, count)
        moments_kr = position_moments(*statistics[4:6], r_k, count)
        scale_qr, shift_qr = batch_norm_affine_from_moments(self.qr_norm, moments_qr, gate_q, after)
        scale_kr, shift_kr = batch_norm_affine_from_moments(self.kr_norm, moments_kr, gate_k, after)
        return torch.stack([scale, scale_qr, scale_kr], dim=1), shift + shift_qr + shift_kr

    def _running_logit_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval mode: :meth:`_logit_affine` from the running statistics of the logit terms' BatchNorms."""
        norm = self.qk_norm
        scale, shift = batch_norm_affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps)
        if not self.positional:
            zeros = torch.zeros_like(scale)
            return torch.stack([scale, zeros, zeros], dim=1), shift
        gate_q: torch.Tensor | None = None
        gate_k: torch.Tensor | None = None
        if self.gated:
            gate_q, gate_k = self.gate_q, self.gate_k
        # one module per assignment: TorchScript loses a module's constants (eps) in a tuple of modules
        qr = self.qr_norm
        kr = self.kr_norm
        after = self.gates_after_norm
        scale_qr, shift_qr = batch_norm_affine(
            qr.weight, qr.bias, qr.running_mean, qr.running_var, qr.eps, gate_q, after
        )
        scale_kr, shift_kr = batch_norm_affine(
            kr.weight, kr.bias, kr.running_mean, kr.running_var, kr.eps, gate_k, after
        )
        return torch.stack([scale, scale_qr, scale_kr], dim=1), shift + shift_qr + shift_kr

    def _value_affine(self) -> torch.Tensor:
        """``(3, C)`` rows ``a, b, c`` with ``a values + b values_position + c`` equal to the eval-mode output
        BatchNorms (and gates G_V1, G_V2) of Eq. 2 / 3 (``b = 0`` without positional encoding)."""
        gate_v1: torch.Tensor | None = None
        gate_v2: torch.Tensor | None = None
        if self.gated:
            gate_v1, gate_v2 = self.gate_v1, self.gate_v2
        norm = self.value_norm
        after = self.gates_after_norm
        scale, shift = batch_norm_affine(
            norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps, gate_v1, after
        )
        if not self.positional:
            return torch.stack([scale, torch.zeros_like(scale), shift])
        position = self.value_position_norm
        scale_position, shift_position = batch_norm_affine(
            position.weight, position.bias, position.running_mean, position.running_var, position.eps, gate_v2, after
        )
        return torch.stack([scale, scale_position, shift + shift_position])

    @torch.jit.unused
    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 2 / Eq. 3 written out directly with this layer's BatchNorm modules and gates: the plain formulation that
        :meth:`forward` must equal (in eval and training mode; the tests compare the two), at the cost of
        ``(lines, G, L, L)`` tensors for every term. ``(N, C, H, W)`` -> ``(N, C, H, W)``.
        """
        dim = 2 + self.axis
        length = x.shape[dim]
        qkv = self.qkv_norm(self.to_qkv(x)).movedim(dim, -1).movedim(1, -2)  # (N, others, 2C, L)
        lines = qkv.shape[:-2]
        qkv = qkv.reshape(-1, self.num_heads, 2 * self.head_channels, length)  # (B, G, 2d, L)
        half = self.head_channels // 2
        q, k, v = torch.split(qkv, [half, half, self.head_channels], dim=2)
        gate_q, gate_k, gate_v1, gate_v2 = self.gates() if self.gated else [None] * 4

        def gated(term: torch.Tensor, gate: torch.Tensor | None, norm: nn.Module) -> torch.Tensor:
            if gate is None:
                return norm(term)
            return gate * norm(term) if self.gates_after_norm else norm(gate * term)

        logits = self.qk_norm(torch.einsum("bgci,bgcj->bgij", q, k))  # (B, G, L, L)
        if self.positional:
            r_q, r_k, r_v = torch.split(self.relative_embeddings(length), [half, half, self.head_channels])
            logits = logits + gated(torch.einsum("bgci,cij->bgij", q, r_q), gate_q, self.qr_norm)
            logits = logits + gated(torch.einsum("bgcj,cji->bgij", k, r_k), gate_k, self.kr_norm)
        attention = F.softmax(logits, dim=-1)
        batch = attention.shape[0]
        values = torch.einsum("bgij,bgcj->bgci", attention, v).reshape(batch, self.channels, length)
        out = gated(values, gate_v1, self.value_norm)
        if self.positional:
            values_position = torch.einsum("bgij,cij->bgci", attention, r_v).reshape(batch, self.channels, length)
            out = out + gated(values_position, gate_v2, self.value_position_norm)
        return out.reshape(lines + (self.channels, length)).movedim(-2, 1).movedim(-1, dim)
