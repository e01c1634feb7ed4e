"""Multi-head axial self-attention along one spatial axis: plain, position-sensitive (MedT Eq. 2) and gated (Eq. 3).

Reference: Valanarasu et al., "Medical Transformer: Gated Axial-Attention for Medical Image Segmentation",
MICCAI 2021 (https://arxiv.org/abs/2102.10662); axial attention after Wang et al., "Axial-DeepLab", ECCV 2020.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor

from medt_monai._extensions import cpu_attention_available

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

    TorchScript: ``torch.jit.script`` compiles the PyTorch implementation in eval mode (a scripted layer in training
    mode raises ``RuntimeError``); ``torch.jit.trace`` records the PyTorch implementation in either mode.

    Raises:
        ValueError: when ``kind``, ``gate_placement``, ``axis`` is unknown, or ``channels`` is not a positive multiple
            of ``2 * num_heads``, or ``axis_length < 1``.
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
        #: PyTorch implementation (GPUs, bf16, tracing; see :func:`_fused_kernel_applies`): attend at most this many
        #: lines (rows or columns) at a time; ``None`` (default): about :data:`CHUNK_LOGITS` logits per chunk on CPU, so
        #: the ``(lines, G, L, L)`` tensors of a chunk stay in cache, and all lines at once on other devices. Set it for
        #: a whole network with :func:`medt_monai.networks.set_memory_lean`. The CPU kernel never forms those tensors.
        self.max_lines: int | None = None

    def gates(self) -> list[nn.Parameter]:
        """The four gates ``[G_Q, G_K, G_V1, G_V2]`` of Eq. 3 (empty unless ``kind="gated"``)."""
        return [self.gate_q, self.gate_k, self.gate_v1, self.gate_v2] if self.gated else []

    def relative_embeddings(self, length: int) -> torch.Tensor:
        """Relative encodings ``r[c, i, j]`` for offset ``i - j``, shape ``(2 * head_channels, length, length)``."""
        positions = torch.arange(length, device=self.relative_position.device)
        offsets = positions[:, None] - positions[None, :] + (self.axis_length - 1)
        return self.relative_position[:, offsets]

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
            scale, shift = _affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps)
            qkv = F.conv2d(x, self.to_qkv.weight * scale[:, None, None, None], shift)
        # Every line along the attended axis is a sequence: a view (N, others, G, 2d, L) of the map, no copy.
        n, height, width = qkv.shape[0], qkv.shape[2], qkv.shape[3]
        lines = qkv.view(n, self.num_heads, 2 * self.head_channels, height, width)
        lines = lines.permute(0, 4, 1, 2, 3) if self.axis == 0 else lines.permute(0, 3, 1, 2, 4)
        if torch.jit.is_scripting():
            # TorchScript: the PyTorch implementation with the running statistics (the kernel's operators and the
            # closed-form training statistics are not compiled)
            if self.qk_norm.training:
                raise RuntimeError(
                    "a scripted AxialAttention runs in eval mode only: call .eval() on the scripted model (train the "
                    "eager network)."
                )
            scales, shift = self._running_logit_affine()
            return self._apply_value_affine(self._attend_lines(lines, scales, shift, length))
        return self._forward_eager(qkv, lines, length)

    @torch.jit.unused
    def _forward_eager(self, qkv: torch.Tensor, lines: torch.Tensor, length: int) -> torch.Tensor:
        """:meth:`forward` after the projection, outside TorchScript: the fused CPU kernel where it applies (see
        :func:`_fused_kernel_applies`), else the PyTorch implementation; closed-form statistics in training mode."""
        fused = _fused_kernel_applies(qkv)
        statistics = None
        if self.qk_norm.training:
            if fused:
                kernel = torch.ops.medt_monai
                statistics = kernel.axial_attention_statistics(qkv, self.axis, self.num_heads, self.positional)
            else:
                half = self.head_channels // 2
                statistics = _line_statistics(lines[..., :half, :], lines[..., half : 2 * half, :], self.positional)
        scales, shift = self._logit_affine(statistics, lines.shape[:2].numel(), length)

        if fused:
            table = self.relative_position if self.positional else None
            needs_grad = torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (qkv, scales, shift, table)
            )
            # eval without gradients: the output BatchNorms (running statistics) are applied inside the kernel
            inference = not (self.value_norm.training or needs_grad)
            out_affine = self._value_affine() if inference else None
            terms = torch.ops.medt_monai.axial_attention_forward(
                qkv, self.axis, self.num_heads, scales, shift, table, out_affine
            )
            if inference:
                return terms[0]
        else:
            terms = self._attend_lines(lines, scales, shift, length)
        if not self.value_norm.training:
            return self._apply_value_affine(terms)
        gate_v1, gate_v2 = self.gates()[2:] if self.gated else (None, None)
        out = self._normalise_values(terms[0], self.value_norm, gate_v1)
        if self.positional:
            out = out + self._normalise_values(terms[1], self.value_position_norm, gate_v2)
        return out

    def _logit_affine(
        self, statistics: tuple[torch.Tensor, ...] | None, lines: int, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The three logit terms' BatchNorms (and gates G_Q, G_K of Eq. 3) as per-head factors and one shift:
        ``logit_ij = shift + s_qk q_i.k_j + s_qr q_i.r^q_ij + s_kr k_j.r^k_ji``, with training statistics in closed form
        (nothing of size ``L x L`` is formed) or running statistics in eval.

        Args:
            statistics: training mode: the line statistics of :func:`_line_statistics`; eval: None.
            lines: number of lines ``B``.
            length: ``L``.

        Returns:
            ``scales`` ``(G, 3)`` (``s_qk, s_qr, s_kr``; the last two zero without positional encoding) and ``shift``
            ``(G,)``. Nothing couples the lines after this.
        """
        if statistics is None:
            return self._running_logit_affine()
        count = lines * length * length
        scale, shift = _norm_affine(self.qk_norm, _product_moments(*statistics[:2], count))
        if not self.positional:
            zeros = torch.zeros_like(scale)
            return torch.stack([scale, zeros, zeros], dim=1), shift
        gate_q, gate_k = self.gates()[:2] if self.gated else (None, None)
        after = self.gates_after_norm
        half = self.head_channels // 2
        r_q, r_k, _ = torch.split(self.relative_embeddings(length), [half, half, self.head_channels])
        scale_qr, shift_qr = _norm_affine(self.qr_norm, _position_moments(*statistics[2:4], r_q, count), gate_q, after)
        scale_kr, shift_kr = _norm_affine(self.kr_norm, _position_moments(*statistics[4:6], r_k, count), gate_k, after)
        return torch.stack([scale, scale_qr, scale_kr], dim=1), shift + shift_qr + shift_kr

    def _running_logit_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval mode: :meth:`_logit_affine` from the running statistics of the logit terms' BatchNorms."""
        norm = self.qk_norm
        scale, shift = _affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps)
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
        scale_qr, shift_qr = _affine(qr.weight, qr.bias, qr.running_mean, qr.running_var, qr.eps, gate_q, after)
        scale_kr, shift_kr = _affine(kr.weight, kr.bias, kr.running_mean, kr.running_var, kr.eps, gate_k, after)
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
        scale, shift = _affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps, gate_v1, after)
        if not self.positional:
            return torch.stack([scale, torch.zeros_like(scale), shift])
        position = self.value_position_norm
        scale_position, shift_position = _affine(
            position.weight, position.bias, position.running_mean, position.running_var, position.eps, gate_v2, after
        )
        return torch.stack([scale, scale_position, shift + shift_position])

    def _apply_value_affine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        """Eval mode: the output BatchNorms (and gates G_V1, G_V2) of Eq. 2 / 3 applied to the attention's
        ``(N, C, H, W)`` terms ``[sum_j a_ij v_j, sum_j a_ij r^v_ij]`` (the second only when positional)."""
        affine = self._value_affine()[:, :, None, None]
        out = torch.addcmul(affine[2], terms[0], affine[0])
        if self.positional:
            out = torch.addcmul(out, terms[1], affine[1])
        return out

    def _attend_lines(
        self, lines: torch.Tensor, scales: torch.Tensor, shift: torch.Tensor, length: int
    ) -> list[torch.Tensor]:
        """The attention in PyTorch operators (GPUs, bf16, tracing, TorchScript, or no compiled kernel): ``lines``
        ``(N, others, G, 2d, L)`` -> ``sum_j a_ij v_j`` (and ``sum_j a_ij r^v_ij``), each ``(N, C, H, W)``."""
        batch, others = lines.shape[0], lines.shape[1]
        lines = lines.reshape(-1, self.num_heads, 2 * self.head_channels, length)  # (B, G, 2d, L)
        half, d = self.head_channels // 2, self.head_channels
        q, k, v = torch.split(lines, [half, half, d], dim=2)  # (B, G, d/2 | d/2 | d, L)
        heads = [self.num_heads, 1, 1]
        if self.positional:
            r_q, r_k, r_v = torch.split(self.relative_embeddings(length), [half, half, d])  # (d/2 | d/2 | d, L, L)
            # all three indexed [c, i, j] (r^k_ji transposed once), so every relative term is a contiguous broadcast
            inputs = (
                q * scales[:, 0].view(heads), k, v, shift.view(heads), q * scales[:, 1].view(heads),
                k * scales[:, 2].view(heads), r_q, r_k.transpose(1, 2).contiguous(), r_v,
            )  # fmt: skip
        else:
            inputs = (q * scales[:, 0].view(heads), k, v, shift.view(heads))
        if torch.jit.is_scripting():
            terms = _attend(*inputs)  # all lines at once: no loop over chunks of a size known only at run time
        else:
            terms = self._attend_chunked(inputs, length)
        # (B, G, L, d) -> (N, others, G, L, d) -> (N, G, d, H, W) -> (N, C, H, W)
        order = [0, 2, 4, 3, 1] if self.axis == 0 else [0, 2, 4, 1, 3]
        size = [length, others] if self.axis == 0 else [others, length]
        return [
            t.view(batch, others, self.num_heads, length, d).permute(order).reshape([batch, self.channels] + size)
            for t in terms
        ]

    @torch.jit.unused
    def _attend_chunked(self, inputs: tuple[torch.Tensor, ...], length: int) -> tuple[torch.Tensor, ...]:
        """:func:`_attend` of ``inputs`` in chunks of :attr:`max_lines` lines (cache-sized on CPU by default), with the
        recomputing backward of :class:`_ChunkedAttention` when gradients are needed."""
        total = inputs[0].shape[0]
        cache_sized = max(1, CHUNK_LOGITS // (self.num_heads * length * length))
        chunk = self.max_lines or (cache_sized if inputs[0].is_cpu else total)
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            chunk = total  # a loop over shape-dependent chunks would be frozen into the trace / graph
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            return _ChunkedAttention.apply(chunk, *inputs)
        return _attend_chunks(chunk, *inputs)

    def _normalise_values(self, term: torch.Tensor, norm: nn.Module, gate: torch.Tensor | None) -> torch.Tensor:
        """Training mode: one output term of Eq. 2 / 3, ``(N, C, H, W)``, batch-normalised per channel and gated."""
        weight, bias = norm.weight, norm.bias
        if gate is not None and self.gates_after_norm:
            weight, bias = gate * weight, gate * bias  # gate * BN(term)
        elif gate is not None:
            term = gate * term  # BN(gate * term)
        return _batch_norm(norm, term, weight, bias)


def _batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """Training-mode ``norm(x)`` over the channels of ``(N, C, ...)`` ``x``, with ``weight`` and ``bias`` in place of
    ``norm``'s own affine (a gated form of them), running statistics updated as :class:`torch.nn.BatchNorm2d` does."""
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
    momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    return F.batch_norm(x, norm.running_mean, norm.running_var, weight, bias, True, momentum, norm.eps)


#: Logits per chunk of lines on CPU (``max_lines=None``): 2**18 fp32 values (1 MiB) per ``(lines, G, L, L)`` tensor keep
#: a chunk's softmax and products in a core's L2 cache; whole-image tensors of 30+ MB are ~10x slower per pass here.
CHUNK_LOGITS = 2**18


def _attention(
    q: torch.Tensor,
    k: torch.Tensor,
    shift: torch.Tensor,
    q_r: torch.Tensor | None = None,
    k_r: torch.Tensor | None = None,
    r_q: torch.Tensor | None = None,
    r_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention weights ``a_ij = softmax_j(logits_ij)`` of ``B`` lines, ``(B, G, L, L)``, from factors in which the
    logits' BatchNorms are already folded (arguments as in :func:`_attend`)."""
    logits = torch.matmul(q.transpose(-1, -2), k).add_(shift)  # (B, G, L, L): scaled q_i . k_j + shifts
    if q_r is not None:
        assert k_r is not None and r_q is not None and r_k is not None  # TorchScript: all four or none
        # q_i . r^q_ij and k_j . r^k_ji, one broadcast multiply-add per channel (d/2 is 1-8: a matrix product with so
        # short an inner dimension is several times slower than these contiguous passes)
        for c in range(q_r.shape[2]):
            logits.addcmul_(q_r[:, :, c, :, None], r_q[c])
            logits.addcmul_(k_r[:, :, c, None, :], r_k[c])
    if _short_rows(logits):
        logits = (logits - logits.amax(-1, keepdim=True)).exp_()
        return logits.div_(logits.sum(-1, keepdim=True))
    return F.softmax(logits, dim=-1)


def _short_rows(x: torch.Tensor) -> bool:
    """Rows shorter than 16 on CPU, where PyTorch's fused softmax (and its backward) is up to 5x slower per element
    than the same computation written as a few element-wise passes (rows of 8 in MedT's deep local stages)."""
    return x.is_cpu and x.shape[-1] < 16


def _softmax_backward(grad: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Gradient of the logits from that of ``attention = softmax(logits)``: ``a * (grad - sum_j a grad)``."""
    if _short_rows(attention):
        return grad.sub_((grad * attention).sum(-1, keepdim=True)).mul_(attention)
    return torch._softmax_backward_data(grad, attention, -1, attention.dtype)


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    shift: torch.Tensor,
    q_r: torch.Tensor | None = None,
    k_r: torch.Tensor | None = None,
    r_q: torch.Tensor | None = None,
    r_k: torch.Tensor | None = None,
    r_v: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Attention of ``B`` independent lines whose logit BatchNorms are already folded into the scaled ``q, k``.

    Args:
        q, k: ``(B, G, d/2, L)`` queries and keys, ``q`` scaled per head for ``q_i . k_j``; ``v``: ``(B, G, d, L)``.
        shift: ``(G, 1, 1)`` sum of the logit terms' BatchNorm shifts.
        q_r, k_r: ``(B, G, d/2, L)`` queries and keys scaled for ``q_i . r^q_ij`` and ``k_j . r^k_ji``; ``r_q, r_k, r_v``:
            the relative encodings ``r^q_ij``, ``r^k_ji`` and ``r^v_ij`` as contiguous ``(d/2 | d/2 | d, i, j)``
            tensors. All ``None`` for attention without positional encoding.

    Returns:
        ``[sum_j a_ij v_j]`` and, when positional, ``sum_j a_ij r^v_ij``, each ``(B, G, L, d)`` (Eq. 2 / 3 before
        the output BatchNorms).
    """
    attention = _attention(q, k, shift, q_r, k_r, r_q, r_k)
    values = torch.matmul(attention, v.transpose(-1, -2))  # (B, G, L, d)
    if r_v is None:
        return [values]
    values_position = torch.stack([torch.linalg.vecdot(attention, r, dim=-1) for r in r_v.unbind(0)], dim=-1)
    return [values, values_position]


def _chunks(lines: int, chunk: int) -> list[slice]:
    return [slice(start, start + chunk) for start in range(0, lines, chunk)]


def _attend_chunks(
    chunk: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *rest: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """:func:`_attend` over ``chunk`` lines at a time (arguments as there; ``rest``: ``shift`` and the relative ones)."""
    shift, relative = rest[0], rest[1:]
    scaled, encodings = relative[:2], relative[2:]
    parts = [_attend(q[s], k[s], v[s], shift, *[t[s] for t in scaled], *encodings) for s in _chunks(q.shape[0], chunk)]
    return tuple(term[0] if len(parts) == 1 else torch.cat(term) for term in zip(*parts))


class _ChunkedAttention(torch.autograd.Function):
    """:func:`_attend_chunks` with a hand-written backward that recomputes each chunk's attention weights instead of
    storing them: training keeps no ``(lines, G, L, L)`` tensor (memory ``O(lines L C)``, which lets 512x512 MedT train
    on CPU in a few GB), and every pass over a chunk runs in cache. Gradients are those of autograd on
    :func:`_attend` to float round-off (``tests/test_performance.py``)."""

    @staticmethod
    def forward(ctx, chunk: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.chunk = chunk
        ctx.save_for_backward(*inputs)
        return _attend_chunks(chunk, *inputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, shift, *relative = ctx.saved_tensors
        positional = bool(relative)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_shift = torch.zeros_like(shift)  # exactly: softmax is invariant to a shift of the logits
        if positional:
            q_r, k_r, r_q, r_k, r_v = relative
            grad_q_r, grad_k_r = torch.empty_like(q_r), torch.empty_like(k_r)
            grad_r_q, grad_r_k, grad_r_v = torch.zeros_like(r_q), torch.zeros_like(r_k), torch.zeros_like(r_v)
        for s in _chunks(q.shape[0], ctx.chunk):
            scaled = (q_r[s], k_r[s], r_q, r_k) if positional else ()
            attention = _attention(q[s], k[s], shift, *scaled)  # (b, G, i, j), recomputed
            grad_values = grads[0][s]  # (b, G, i, d)
            grad_attention = torch.matmul(grad_values, v[s])  # (b, G, i, d) @ (b, G, d, j)
            grad_v[s] = torch.matmul(grad_values.transpose(-1, -2), attention)  # (b, G, d, i) @ (b, G, i, j)
            if positional:
                grad_position = grads[1][s]  # (b, G, i, d)
                for c, r in enumerate(r_v):
                    grad_attention.addcmul_(grad_position[..., c, None], r)
                    grad_r_v[c] += (attention * grad_position[..., c, None]).sum((0, 1))
            grad_logits = _softmax_backward(grad_attention, attention)
            grad_q[s] = torch.matmul(k[s], grad_logits.transpose(-1, -2))  # (b, G, d/2, j) @ (b, G, j, i)
            grad_k[s] = torch.matmul(q[s], grad_logits)  # (b, G, d/2, i) @ (b, G, i, j)
            if positional:
                for c in range(q_r.shape[2]):
                    grad_q_r[s, :, c] = torch.linalg.vecdot(grad_logits, r_q[c], dim=-1)
                    grad_k_r[s, :, c] = (grad_logits * r_k[c]).sum(-2)
                    grad_r_q[c] += (grad_logits * q_r[s, :, c, :, None]).sum((0, 1))
                    grad_r_k[c] += (grad_logits * k_r[s, :, c, None, :]).sum((0, 1))
        if not positional:
            return None, grad_q, grad_k, grad_v, grad_shift
        return None, grad_q, grad_k, grad_v, grad_shift, grad_q_r, grad_k_r, grad_r_q, grad_r_k, grad_r_v


def _fused_kernel_applies(qkv: torch.Tensor) -> bool:
    """Whether the compiled CPU kernel (``medt_monai/_extensions``) attends the lines of ``qkv``: CPU float32 / float64
    maps, when the kernel could be built, except while tracing or exporting (TorchScript and ONNX models must not
    depend on this package's operators). ``torch.compile`` keeps the kernel's operators in its graphs."""
    return (
        qkv.is_cpu
        and qkv.dtype in (torch.float32, torch.float64)
        and not (torch.jit.is_tracing() or torch.compiler.is_exporting())
        and cpu_attention_available()
    )


Moments = tuple[torch.Tensor, torch.Tensor, int]


def _stats_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for the closed-form statistics (their ``E[x^2] - E[x]^2`` must not cancel), where the device has it."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def _line_statistics(q: torch.Tensor, k: torch.Tensor, positional: bool) -> tuple[torch.Tensor, ...]:
    """Sums over all lines behind the closed-form BatchNorm statistics of the logit terms (what the CPU kernel's
    ``axial_attention_statistics`` computes), from ``(..., G, d/2, L)`` ``q, k`` (leading dimensions: the lines):

    - ``qk_sum = sum_b (sum_i q_i) . (sum_j k_j)`` and ``qk_squares = sum_b <Q Q^T, K K^T>`` (``Q``: a line's
      ``d/2 x L`` queries), ``(G,)`` each;
    - with positions, ``q_sum = sum_b q_i`` ``(G, d/2, L)``, ``q_gram = sum_b q_i q_i^T`` ``(G, L, d/2, d/2)``, and
      ``k_sum``, ``k_gram`` alike.
    """
    q, k = q.to(_stats_dtype(q)), k.to(_stats_dtype(k))
    statistics = (
        torch.einsum("...gc,...gc->g", q.sum(-1), k.sum(-1)),
        torch.einsum("...gce,...gce->g", q @ q.transpose(-1, -2), k @ k.transpose(-1, -2)),
    )
    if not positional:
        return statistics
    lines = tuple(range(q.dim() - 3))
    for x in (q, k):
        statistics += (x.sum(lines), torch.einsum("...gci,...gei->gice", x, x))
    return statistics


def _product_moments(qk_sum: torch.Tensor, qk_squares: torch.Tensor, count: int) -> Moments:
    """Per-head mean and biased variance of ``q_i . k_j`` over lines and ``i, j`` (``count`` terms), from the line
    statistics of :func:`_line_statistics`; returns ``(mean, var, count)`` with ``(G,)`` tensors."""
    mean = qk_sum / count
    return mean, qk_squares / count - mean * mean, count


def _position_moments(x_sum: torch.Tensor, x_gram: torch.Tensor, r: torch.Tensor, count: int) -> Moments:
    """Per-head mean and biased variance of ``x_i . r_ij`` over lines and ``i, j`` (``q_i . r^q_ij``, or ``k_j . r^k_ji``
    with ``i, j`` renamed), without forming the ``L x L`` terms: ``sum = sum_i (sum_b x_i) . (sum_j r_ij)`` and
    ``sum of squares = sum_i <sum_b x_i x_i^T, sum_j r_ij r_ij^T>``, from ``x_sum = sum_b x_i`` ``(G, d/2, L)`` and
    ``x_gram = sum_b x_i x_i^T`` ``(G, L, d/2, d/2)`` (:func:`_line_statistics`) and ``r`` ``(d/2, L, L)``.
    """
    r = r.to(x_sum.dtype)
    total = torch.einsum("gci,ci->g", x_sum, r.sum(-1))
    r_gram = torch.einsum("cij,eij->ice", r, r)  # (L, d/2, d/2)
    squares = torch.einsum("gice,ice->g", x_gram, r_gram)
    mean = total / count
    return mean, squares / count - mean * mean, count


def _norm_affine(
    norm: nn.modules.batchnorm._BatchNorm,
    moments: Moments,
    gate: torch.Tensor | None = None,
    gate_after_norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training mode: :func:`_affine` of ``norm`` with a term's batch ``moments`` ``(mean, biased var, count)``,
    updating ``norm``'s running statistics exactly as :class:`torch.nn.BatchNorm2d` would (gated statistics
    ``g mean, g^2 var`` for the authors' placement)."""
    mean, var, count = moments
    mean, var = mean.to(norm.weight.dtype), var.to(norm.weight.dtype)
    if gate is not None and not gate_after_norm:
        mean, var = gate * mean, gate * gate * var
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.lerp_(mean, momentum)
        norm.running_var.lerp_(var * (count / max(count - 1, 1)), momentum)
    return _affine(norm.weight, norm.bias, mean, var, norm.eps, gate, gate_after_norm)


def _affine(
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    gate: torch.Tensor | None = None,
    gate_after_norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale, shift`` such that ``scale * term + shift`` equals a BatchNorm (``weight``, ``bias``,
    ``eps``) with statistics ``mean``, ``var`` of ``gate * term`` (the authors' placement, ``gate_after_norm=False``)
    or ``gate`` times that BatchNorm of ``term`` (``True``); without a gate, the BatchNorm of ``term``. In eval mode
    ``mean, var`` are the running statistics (for the authors' placement already those of the gated term).
    Returns 1-D ``(channels,)`` tensors."""
    scale = weight * torch.rsqrt(var + eps)
    shift = bias - mean * scale
    if gate is not None:
        # authors: scale applies to gate * term; effective: gate multiplies the normalised term (scale and shift).
        scale = gate * scale
        if gate_after_norm:
            shift = gate * shift
    return scale, shift
