"""The Python halves of the compiled attention operators (``axial_attention_cpu.cpp``): their shapes for
``torch.compile`` (fake tensors), their gradients, so ``torch.ops.medt_monai.axial_attention_forward`` and
``axial_attention_statistics`` are differentiable operators like any of PyTorch's own, and their FLOPs for
:class:`torch.utils.flop_counter.FlopCounterMode`.

Registered once, by :func:`medt_monai._extensions.cpu_attention_available`, after the kernel is loaded.
"""

from __future__ import annotations

import torch

__all__ = ["register"]


def _output_format(qkv: torch.Tensor) -> torch.memory_format:
    """The memory format of the kernel's maps: channels-last for a channels-last ``qkv``, else contiguous."""
    channels_last = qkv.is_contiguous(memory_format=torch.channels_last) and not qkv.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _forward_fake(qkv, axis, heads, scales, shift, table, out_affine):
    n, channels, height, width = qkv.shape
    values = qkv.new_empty((n, channels // 2, height, width)).contiguous(memory_format=_output_format(qkv))
    return [values, torch.empty_like(values)] if table is not None and out_affine is None else [values]


def _backward_fake(grad_values, grad_values_position, qkv, axis, heads, scales, shift, table):
    grads = [torch.empty_like(qkv), scales.new_empty((heads, 3))]
    return grads + [table.new_empty(table.shape)] if table is not None else grads


def _statistics_fake(qkv, axis, heads, positional):
    length = qkv.shape[2 + axis]
    half = qkv.shape[1] // (4 * heads)
    sums = [qkv.new_empty((heads,), dtype=torch.float64) for _ in range(2)]
    if not positional:
        return sums
    positions = [
        qkv.new_empty((heads, half, length), dtype=torch.float64),  # sums
        qkv.new_empty((heads, length, half, half), dtype=torch.float64),  # Gram matrices
    ]
    return sums + positions + [torch.empty_like(t) for t in positions]


def _statistics_backward_fake(qkv, axis, heads, *grads):
    return torch.empty_like(qkv)


def _attention_setup(ctx, inputs, output) -> None:
    qkv, axis, heads, scales, shift, table, out_affine = inputs
    if out_affine is not None:
        ctx.mark_non_differentiable(*output)  # inference only: the output BatchNorms are applied in place
    ctx.axis, ctx.heads = axis, heads
    ctx.save_for_backward(qkv, scales, shift, table)


def _attention_backward(ctx, grads):
    qkv, scales, shift, table = ctx.saved_tensors
    outputs = 1 if table is None else 2
    # an output that did not reach the loss has no gradient: zero, in the shape of the values maps
    like = next((g for g in grads if g is not None), None)
    if like is None:
        return (None,) * 7
    grads = [torch.zeros_like(like) if g is None else g for g in grads[:outputs]]
    grad_qkv, grad_scales, *grad_table = torch.ops.medt_monai.axial_attention_backward(
        grads[0], grads[1] if table is not None else None, qkv, ctx.axis, ctx.heads, scales, shift, table
    )
    # the shift's gradient is exactly 0: softmax is invariant to a shift of the logits
    grad_shift = torch.zeros_like(shift) if ctx.needs_input_grad[4] else None
    return grad_qkv, None, None, grad_scales, grad_shift, grad_table[0] if grad_table else None, None


def _statistics_setup(ctx, inputs, output) -> None:
    qkv, axis, heads, positional = inputs
    ctx.axis, ctx.heads, ctx.shapes = axis, heads, [t.shape for t in output]
    ctx.save_for_backward(qkv)


def _statistics_backward(ctx, grads):
    (qkv,) = ctx.saved_tensors
    grads = [qkv.new_zeros(shape, dtype=torch.float64) if g is None else g for g, shape in zip(grads, ctx.shapes)]
    positions = tuple(grads[2:]) if len(grads) > 2 else (None,) * 4
    grad_qkv = torch.ops.medt_monai.axial_attention_statistics_backward(
        qkv, ctx.axis, ctx.heads, *grads[:2], *positions
    )
    return grad_qkv, None, None, None


def _products(qkv_shape, axis: int, heads: int, positional: bool) -> int:
    """Multiply-adds of the attention's products, counted as a matrix formulation performs them: per line and head
    ``L^2 (h + d)`` for ``q.k`` and ``a.v``, plus ``L^2 (2h + d)`` for ``q.r^q``, ``k.r^k`` and ``a.r^v``."""
    n, channels, height, width = qkv_shape
    length, lines = (height, n * width) if axis == 0 else (width, n * height)
    d = channels // (2 * heads)
    per_position = d // 2 + d + (d + d if positional else 0)
    return lines * heads * length * length * per_position


def _forward_flops(qkv, axis, heads, scales, shift, table, out_affine, *args, out_shape=None, **kwargs) -> int:
    return 2 * _products(qkv, axis, heads, table is not None)


def _backward_flops(grad_values, grad_position, qkv, axis, heads, *args, out_shape=None, **kwargs) -> int:
    # both operands of every product get a gradient: twice the forward (the recomputed attention is not counted)
    return 4 * _products(qkv, axis, heads, grad_position is not None)


def register() -> None:
    """Register the shape functions and gradients of the loaded kernel's operators."""
    for name, fake in (
        ("axial_attention_forward", _forward_fake),
        ("axial_attention_backward", _backward_fake),
        ("axial_attention_statistics", _statistics_fake),
        ("axial_attention_statistics_backward", _statistics_backward_fake),
    ):
        torch.library.register_fake(f"medt_monai::{name}", fake)
    torch.library.register_autograd(
        "medt_monai::axial_attention_forward", _attention_backward, setup_context=_attention_setup
    )
    torch.library.register_autograd(
        "medt_monai::axial_attention_statistics", _statistics_backward, setup_context=_statistics_setup
    )
    from torch.utils.flop_counter import register_flop_formula

    register_flop_formula(torch.ops.medt_monai.axial_attention_forward)(_forward_flops)
    register_flop_formula(torch.ops.medt_monai.axial_attention_backward)(_backward_flops)
