"""Multi-head axial self-attention along one spatial axis: plain, position-sensitive (MedT Eq. 2) and gated (Eq. 3).

Reference: Valanarasu et al., "Medical Transformer: Gated Axial-Attention for Medical Image Segmentation",
MICCAI 2021 (https://arxiv.org/abs/2102.10662); axial attention after Wang et al., "Axial-DeepLab", ECCV 2020.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["AxialAttention", "ATTENTION_KINDS", "GATE_PLACEMENTS"]

#: ``"axial"``: relative position encodings for q, k, v (Eq. 2); ``"gated"``: the same with the four gates of Eq. 3;
#: ``"nopos"``: no positional encoding (MedT's local branch).
ATTENTION_KINDS = ("axial", "gated", "nopos")
#: ``"authors"``: gates multiply the raw terms before their BatchNorm (the authors' code; BatchNorm cancels them up to its
#: epsilon); ``"effective"``: gates multiply the normalised terms, so they really scale the positional terms as Eq. 3 intends.
GATE_PLACEMENTS = ("authors", "effective")


class AxialAttention(nn.Module):
    """Self-attention along one spatial axis of a ``(N, C, H, W)`` feature map, one head per ``C / num_heads`` channels.

    Every row (``axis=1``) or column (``axis=0``) of the map is an independent sequence of length ``L``. For an output
    position ``i`` of a sequence, with ``q, k, v`` from a 1x1 projection (each head: ``d/2`` query, ``d/2`` key and ``d``
    value channels, ``d = C / num_heads``) and learned relative encodings ``r^q, r^k, r^v`` indexed by the offset ``i - j``:

    - ``"axial"`` (Eq. 2): ``y_i = sum_j softmax_j(q_i.k_j + q_i.r^q_ij + k_j.r^k_ji) (v_j + r^v_ij)``
    - ``"gated"`` (Eq. 3): ``y_i = sum_j softmax_j(q_i.k_j + G_Q q_i.r^q_ij + G_K k_j.r^k_ji) (G_V1 v_j + G_V2 r^v_ij)``
    - ``"nopos"``: ``y_i = sum_j softmax_j(q_i.k_j) v_j``

    As in the authors' code, each of the terms is batch-normalised separately (the logits per head, the outputs per
    channel) and there is no ``1/sqrt(d)`` scaling; the relative table is shared by all heads.

    Args:
        channels: input and output channels ``C``; must be a multiple of ``2 * num_heads``.
        axis_length: largest sequence length the relative encodings cover (the feature map's height for ``axis=0``,
            width for ``axis=1``). Any shorter length works too: it uses the central ``2L - 1`` offsets of the table.
            Ignored for ``"nopos"``, which accepts any length.
        axis: spatial axis to attend along: 0 for height, 1 for width.
        num_heads: number of attention heads. Defaults to 8.
        kind: one of :data:`ATTENTION_KINDS`. Defaults to ``"axial"``.
        gate_placement: one of :data:`GATE_PLACEMENTS`; only used when ``kind="gated"``. Defaults to ``"authors"``.

    Raises:
        ValueError: when ``kind``, ``gate_placement``, ``axis`` is unknown, or ``channels`` is not a positive multiple
            of ``2 * num_heads``, or ``axis_length < 1``.
    """

    def __init__(
        self,
        channels: int,
        axis_length: int,
        axis: int,
        num_heads: int = 8,
        kind: str = "axial",
        gate_placement: str = "authors",
    ) -> None:
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"kind must be one of {ATTENTION_KINDS}, got {kind!r}.")
        if gate_placement not in GATE_PLACEMENTS:
            raise ValueError(f"gate_placement must be one of {GATE_PLACEMENTS}, got {gate_placement!r}.")
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (height) or 1 (width), got {axis}.")
        if num_heads < 1 or channels < 2 * num_heads or channels % (2 * num_heads) != 0:
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
        self.positional = kind != "nopos"
        self.gated = kind == "gated"
        self.gates_after_norm = gate_placement == "effective"

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

    def gates(self) -> list[nn.Parameter]:
        """The four gates ``[G_Q, G_K, G_V1, G_V2]`` of Eq. 3 (empty unless ``kind="gated"``)."""
        return [self.gate_q, self.gate_k, self.gate_v1, self.gate_v2] if self.gated else []

    def relative_embeddings(self, length: int) -> torch.Tensor:
        """Relative encodings ``r[c, i, j]`` for offset ``i - j``, shape ``(2 * head_channels, length, length)``."""
        positions = torch.arange(length, device=self.relative_position.device)
        offsets = positions[:, None] - positions[None, :] + (self.axis_length - 1)
        return self.relative_position[:, offsets]

    def _gate(self, term: torch.Tensor, gate: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """Normalise one term of Eq. 3 and apply its gate where ``gate_placement`` puts it."""
        if self.gates_after_norm:
            return gate * norm(term)
        return norm(gate * term)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(N, C, H, W)``.

        Returns:
            ``(N, C, H, W)``.

        Raises:
            ValueError: when the attended axis is longer than ``axis_length`` (positional kinds only).
        """
        dim = 2 + self.axis
        length = x.shape[dim]
        if self.positional and length > self.axis_length:
            raise ValueError(
                f"input {'height' if self.axis == 0 else 'width'} {length} exceeds the {self.axis_length} positions "
                "this layer's relative encodings were built for; build the network with a larger img_size."
            )
        qkv = self.qkv_norm(self.to_qkv(x))  # (N, 2C, H, W)
        # Every line along the attended axis becomes a sequence: (N, 2C, H, W) -> (N, other, 2C, L) -> (B, G, 2d, L).
        qkv = qkv.movedim(dim, -1).movedim(1, -2)
        lines_shape = qkv.shape[:-2]
        qkv = qkv.reshape(-1, self.num_heads, 2 * self.head_channels, length)
        half = self.head_channels // 2
        q, k, v = torch.split(qkv, [half, half, self.head_channels], dim=2)  # (B, G, d/2 | d/2 | d, L)

        logits = self.qk_norm(torch.einsum("bgci,bgcj->bgij", q, k))  # (B, G, L, L)
        if self.positional:
            r_q, r_k, r_v = torch.split(self.relative_embeddings(length), [half, half, self.head_channels])
            qr = torch.einsum("bgci,cij->bgij", q, r_q)  # q_i . r^q_ij
            kr = torch.einsum("bgcj,cji->bgij", k, r_k)  # k_j . r^k_ji
            if self.gated:
                logits = logits + self._gate(qr, self.gate_q, self.qr_norm) + self._gate(kr, self.gate_k, self.kr_norm)
            else:
                logits = logits + self.qr_norm(qr) + self.kr_norm(kr)
        attention = F.softmax(logits, dim=-1)

        batch = attention.shape[0]
        values = torch.einsum("bgij,bgcj->bgci", attention, v).reshape(batch, self.channels, length)  # (B, C, L)
        if self.positional:
            values_position = torch.einsum("bgij,cij->bgci", attention, r_v).reshape(batch, self.channels, length)
            if self.gated:
                out = self._gate(values, self.gate_v1, self.value_norm) + self._gate(
                    values_position, self.gate_v2, self.value_position_norm
                )
            else:
                out = self.value_norm(values) + self.value_position_norm(values_position)
        else:
            out = self.value_norm(values)
        # (B, C, L) -> (N, other, C, L) -> (N, C, H, W)
        return out.reshape(lines_shape + (self.channels, length)).movedim(-2, 1).movedim(-1, dim)
