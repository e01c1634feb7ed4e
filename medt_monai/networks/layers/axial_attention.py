"""Axial attention as functions of a layer's ``qkv`` map: the fused CPU kernel of :mod:`medt_monai._extensions` where
it applies, else the same mathematics in PyTorch operators (chunks of lines, a recomputing backward), and the
closed-form BatchNorm statistics of the attention logits.

The module that owns the parameters is :class:`medt_monai.networks.blocks.AxialAttention`; every function here takes
the logits' BatchNorms already folded into per-head factors (``scales``, ``shift``), so nothing couples the lines of
a batch once those are known.

Shapes: ``N`` images, ``G`` heads, ``d`` channels per head (``d/2`` query, ``d/2`` key, ``d`` value channels),
``L`` the attended length, ``B`` lines (rows or columns of all images), ``C = G d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medt_monai._extensions import cpu_attention_available
from medt_monai.networks.layers.batch_norm import Moments

__all__ = [
    "CHUNK_LOGITS",
    "relative_embeddings",
    "qkv_lines",
    "attend",
    "attend_lines",
    "apply_value_affine",
    "fused_kernel_applies",
    "line_statistics",
    "product_moments",
    "position_moments",
    "attend_qkv",
]

#: Logits per chunk of lines on CPU when ``max_lines`` is None: 2**18 values (1 MiB in float32) per
#: ``(lines, G, L, L)`` tensor, so that a chunk's softmax and products fit in a core's L2 cache.
CHUNK_LOGITS = 2**18


def relative_embeddings(table: torch.Tensor, length: int) -> torch.Tensor:
    """Relative encodings ``r[c, i, j]`` for offset ``i - j`` from a ``(2d, 2K - 1)`` table (column ``m``: offset
    ``m - (K - 1)``, ``K`` the table's axis length, ``length <= K``), shape ``(2d, length, length)``."""
    axis_length = (table.shape[1] + 1) // 2
    positions = torch.arange(length, device=table.device)
    offsets = positions[:, None] - positions[None, :] + (axis_length - 1)
    return table[:, offsets]


def qkv_lines(qkv: torch.Tensor, axis: int, num_heads: int) -> torch.Tensor:
    """Every line along ``axis`` of a ``(N, 2C, H, W)`` map as a sequence: a view ``(N, others, G, 2d, L)``, no copy."""
    n, channels, height, width = qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3]
    lines = qkv.view(n, num_heads, channels // num_heads, height, width)
    return lines.permute(0, 4, 1, 2, 3) if axis == 0 else lines.permute(0, 3, 1, 2, 4)


def _attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    shift: torch.Tensor,
    q_r: torch.Tensor | None = None,
    k_r: torch.Tensor | None = None,
    r_q: torch.Tensor | None = None,
    r_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention weights ``a_ij = softmax_j(logits_ij)`` of ``B`` lines, ``(B, G, L, L)``, from factors in which the
    logits' BatchNorms are already folded (arguments as in :func:`attend`)."""
    logits = torch.matmul(q.transpose(-1, -2), k).add_(shift)  # (B, G, L, L): scaled q_i . k_j + shifts
    if q_r is not None:
        assert k_r is not None and r_q is not None and r_k is not None  # TorchScript: all four or none
        # q_i . r^q_ij and k_j . r^k_ji: one broadcast multiply-add per query channel (d/2 is 1-8) instead of a
        # matrix product over so short an inner dimension
        for c in range(q_r.shape[2]):
            logits.addcmul_(q_r[:, :, c, :, None], r_q[c])
            logits.addcmul_(k_r[:, :, c, None, :], r_k[c])
    if _short_rows(logits):
        logits = (logits - logits.amax(-1, keepdim=True)).exp_()
        return logits.div_(logits.sum(-1, keepdim=True))
    return F.softmax(logits, dim=-1)


def _short_rows(x: torch.Tensor) -> bool:
    """Whether the softmax over the last axis of ``x`` (and its backward) is written as a few element-wise passes
    instead of PyTorch's fused softmax: on CPU, for rows shorter than 16 (rows of 8 in MedT's deep local stages)."""
    return x.is_cpu and x.shape[-1] < 16


def _softmax_backward(grad: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Gradient of the logits from that of ``attention = softmax(logits)``: ``a * (grad - sum_j a grad)``."""
    if _short_rows(attention):
        return grad.sub_((grad * attention).sum(-1, keepdim=True)).mul_(attention)
    return torch._softmax_backward_data(grad, attention, -1, attention.dtype)


def attend(
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
    attention = _attention_weights(q, k, shift, q_r, k_r, r_q, r_k)
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
    """:func:`attend` over ``chunk`` lines at a time (arguments as there; ``rest``: ``shift`` and the relative ones)."""
    shift, relative = rest[0], rest[1:]
    scaled, encodings = relative[:2], relative[2:]
    parts = [attend(q[s], k[s], v[s], shift, *[t[s] for t in scaled], *encodings) for s in _chunks(q.shape[0], chunk)]
    return tuple(term[0] if len(parts) == 1 else torch.cat(term) for term in zip(*parts))


class _ChunkedAttention(torch.autograd.Function):
    """:func:`_attend_chunks` with a hand-written backward that recomputes each chunk's attention weights instead of
    storing them: training keeps no ``(lines, G, L, L)`` tensor (memory ``O(lines L C)``, which lets 512x512 MedT train
    on CPU in a few GB), and every pass over a chunk runs in cache. Gradients are those of autograd on
    :func:`attend` to float round-off (``tests/test_performance.py``)."""

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
            attention = _attention_weights(q[s], k[s], shift, *scaled)  # (b, G, i, j), recomputed
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


@torch.jit.unused
def _attend_chunked(inputs: tuple[torch.Tensor, ...], max_lines: int | None) -> tuple[torch.Tensor, ...]:
    """:func:`attend` of ``inputs`` in chunks of ``max_lines`` lines (``None``: about :data:`CHUNK_LOGITS` logits per
    chunk on CPU, all lines at once elsewhere), with the recomputing backward of :class:`_ChunkedAttention` when
    gradients are needed."""
    total, num_heads, length = inputs[0].shape[0], inputs[0].shape[1], inputs[0].shape[3]
    cache_sized = max(1, CHUNK_LOGITS // (num_heads * length * length))
    chunk = max_lines or (cache_sized if inputs[0].is_cpu else total)
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        chunk = total  # a loop over shape-dependent chunks would be frozen into the trace / graph
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _ChunkedAttention.apply(chunk, *inputs)
    return _attend_chunks(chunk, *inputs)


def attend_lines(
    lines: torch.Tensor,
    axis: int,
    scales: torch.Tensor,
    shift: torch.Tensor,
    table: torch.Tensor | None = None,
    max_lines: int | None = None,
) -> list[torch.Tensor]:
    """The attention in PyTorch operators (GPUs, bf16, tracing, TorchScript, or no compiled kernel).

    Args:
        lines: ``(N, others, G, 2d, L)`` lines of the projected ``qkv`` map (:func:`qkv_lines`).
        axis: the attended spatial axis, 0 (height) or 1 (width).
        scales: ``(G, 3)`` per-head factors ``s_qk, s_qr, s_kr`` of the logit terms (folded BatchNorms and gates).
        shift: ``(G,)`` sum of the logit terms' shifts.
        table: ``(2d, 2K - 1)`` relative position table (``K >= L``), or None without positional encoding.
        max_lines: attend at most this many lines at a time; None: see :func:`_attend_chunked`. TorchScript attends
            all lines at once.

    Returns:
        ``sum_j a_ij v_j`` and, with a table, ``sum_j a_ij r^v_ij``, each ``(N, C, H, W)``.
    """
    batch, others, num_heads, length = lines.shape[0], lines.shape[1], lines.shape[2], lines.shape[4]
    d = lines.shape[3] // 2
    half = d // 2
    lines = lines.reshape(-1, num_heads, 2 * d, length)  # (B, G, 2d, L)
    q, k, v = torch.split(lines, [half, half, d], dim=2)  # (B, G, d/2 | d/2 | d, L)
    heads = [num_heads, 1, 1]
    q_scaled, shift = q * scales[:, 0].view(heads), shift.view(heads)
    q_r: torch.Tensor | None = None
    k_r: torch.Tensor | None = None
    r_q: torch.Tensor | None = None
    r_k: torch.Tensor | None = None
    r_v: torch.Tensor | None = None
    if table is not None:
        embeddings = torch.split(relative_embeddings(table, length), [half, half, d])  # (d/2 | d/2 | d, L, L)
        # all three indexed [c, i, j] (r^k_ji transposed once), so every relative term is a contiguous broadcast
        r_q, r_k, r_v = embeddings[0], embeddings[1].transpose(1, 2).contiguous(), embeddings[2]
        q_r, k_r = q * scales[:, 1].view(heads), k * scales[:, 2].view(heads)
    if torch.jit.is_scripting():
        terms = attend(q_scaled, k, v, shift, q_r, k_r, r_q, r_k, r_v)  # no loop over chunks sized at run time
    else:
        inputs = (q_scaled, k, v, shift) if table is None else (q_scaled, k, v, shift, q_r, k_r, r_q, r_k, r_v)
        terms = _attend_chunked(inputs, max_lines)
    # (B, G, L, d) -> (N, others, G, L, d) -> (N, G, d, H, W) -> (N, C, H, W)
    order = [0, 2, 4, 3, 1] if axis == 0 else [0, 2, 4, 1, 3]
    size = [length, others] if axis == 0 else [others, length]
    return [
        t.view(batch, others, num_heads, length, d).permute(order).reshape([batch, num_heads * d] + size) for t in terms
    ]


def apply_value_affine(terms: list[torch.Tensor], affine: torch.Tensor) -> torch.Tensor:
    """``a values + b values_position + c``: the eval-mode output BatchNorms (and gates G_V1, G_V2) of Eq. 2 / 3 applied
    to the attention's ``(N, C, H, W)`` terms ``[sum_j a_ij v_j, sum_j a_ij r^v_ij]`` (the second only when
    positional), from the ``(3, C)`` rows ``a, b, c`` of ``affine``."""
    affine = affine[:, :, None, None]
    out = torch.addcmul(affine[2], terms[0], affine[0])
    if len(terms) > 1:
        out = torch.addcmul(out, terms[1], affine[1])
    return out


def fused_kernel_applies(qkv: torch.Tensor) -> bool:
    """Whether the compiled CPU kernel (``medt_monai/_extensions``) attends the lines of ``qkv``: CPU float32 / float64
    maps, when the kernel could be built, except while tracing or exporting (TorchScript and ONNX models must not
    depend on this package's operators). ``torch.compile`` keeps the kernel's operators in its graphs."""
    return (
        qkv.is_cpu
        and qkv.dtype in (torch.float32, torch.float64)
        and not (torch.jit.is_tracing() or torch.compiler.is_exporting())
        and cpu_attention_available()
    )


def _stats_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for the closed-form statistics (their ``E[x^2] - E[x]^2`` must not cancel), where the device has it."""
    return torch.float32 if x.device.type == "mps" else torch.float64


def _pytorch_line_statistics(q: torch.Tensor, k: torch.Tensor, positional: bool) -> tuple[torch.Tensor, ...]:
    """:func:`line_statistics` in PyTorch operators, from ``(..., G, d/2, L)`` ``q, k`` (leading dimensions: the
    lines)."""
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


def line_statistics(qkv: torch.Tensor, axis: int, num_heads: int, positional: bool) -> tuple[torch.Tensor, ...]:
    """Sums over all lines of ``(N, 2C, H, W)`` ``qkv`` behind the closed-form BatchNorm statistics of the logit
    terms, by the CPU kernel's ``axial_attention_statistics`` where :func:`fused_kernel_applies`, else in PyTorch:

    - ``qk_sum = sum_b (sum_i q_i) . (sum_j k_j)`` and ``qk_squares = sum_b <Q Q^T, K K^T>`` (``Q``: a line's
      ``d/2 x L`` queries), ``(G,)`` each;
    - with ``positional``, ``q_sum = sum_b q_i`` ``(G, d/2, L)``, ``q_gram = sum_b q_i q_i^T`` ``(G, L, d/2, d/2)``,
      and ``k_sum``, ``k_gram`` alike.

    Differentiable (the statistics of the training-mode BatchNorms carry gradients).
    """
    if fused_kernel_applies(qkv):
        return torch.ops.medt_monai.axial_attention_statistics(qkv, axis, num_heads, positional)
    lines = qkv_lines(qkv, axis, num_heads)
    half = lines.shape[3] // 4
    return _pytorch_line_statistics(lines[..., :half, :], lines[..., half : 2 * half, :], positional)


def product_moments(qk_sum: torch.Tensor, qk_squares: torch.Tensor, count: int) -> Moments:
    """Per-head mean and biased variance of ``q_i . k_j`` over lines and ``i, j`` (``count`` terms), from the line
    statistics of :func:`line_statistics`; returns ``(mean, var, count)`` with ``(G,)`` tensors."""
    mean = qk_sum / count
    return mean, qk_squares / count - mean * mean, count


def position_moments(x_sum: torch.Tensor, x_gram: torch.Tensor, r: torch.Tensor, count: int) -> Moments:
    """Per-head mean and biased variance of ``x_i . r_ij`` over lines and ``i, j`` (``q_i . r^q_ij``, or ``k_j . r^k_ji``
    with ``i, j`` renamed), without forming the ``L x L`` terms: ``sum = sum_i (sum_b x_i) . (sum_j r_ij)`` and
    ``sum of squares = sum_i <sum_b x_i x_i^T, sum_j r_ij r_ij^T>``, from ``x_sum = sum_b x_i`` ``(G, d/2, L)`` and
    ``x_gram = sum_b x_i x_i^T`` ``(G, L, d/2, d/2)`` (:func:`line_statistics`) and ``r`` ``(d/2, L, L)``.
    """
    r = r.to(x_sum.dtype)
    total = torch.einsum("gci,ci->g", x_sum, r.sum(-1))
    r_gram = torch.einsum("cij,eij->ice", r, r)  # (L, d/2, d/2)
    squares = torch.einsum("gice,ice->g", x_gram, r_gram)
    mean = total / count
    return mean, squares / count - mean * mean, count


def attend_qkv(
    qkv: torch.Tensor,
    axis: int,
    num_heads: int,
    scales: torch.Tensor,
    shift: torch.Tensor,
    table: torch.Tensor | None = None,
    value_affine: torch.Tensor | None = None,
    max_lines: int | None = None,
) -> list[torch.Tensor]:
    """Axial attention of a projected ``(N, 2C, H, W)`` ``qkv`` map whose logit BatchNorms are folded into ``scales``
    and ``shift``: the fused CPU kernel where :func:`fused_kernel_applies`, else :func:`attend_lines`.

    Args:
        qkv: per head ``[d/2 query | d/2 key | d value]`` channels.
        axis: the attended spatial axis, 0 (height) or 1 (width).
        num_heads: ``G``.
        scales, shift, table, max_lines: see :func:`attend_lines`.
        value_affine: ``(3, C)`` eval-mode output affine (:func:`apply_value_affine`), or None for the raw terms.

    Returns:
        With ``value_affine``: ``[output]``, ``(N, C, H, W)``. Without: ``sum_j a_ij v_j`` and, with a table,
        ``sum_j a_ij r^v_ij``, each ``(N, C, H, W)`` (Eq. 2 / 3 before the output BatchNorms).
    """
    if not fused_kernel_applies(qkv):
        terms = attend_lines(qkv_lines(qkv, axis, num_heads), axis, scales, shift, table, max_lines)
        return terms if value_affine is None else [apply_value_affine(terms, value_affine)]
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (qkv, scales, shift, table))
    # without gradients, the output affine is applied inside the kernel
    inside = value_affine if not needs_grad else None
    terms = torch.ops.medt_monai.axial_attention_forward(qkv, axis, num_heads, scales, shift, table, inside)
    if value_affine is None or inside is not None:
        return terms
    return [apply_value_affine(terms, value_affine)]
