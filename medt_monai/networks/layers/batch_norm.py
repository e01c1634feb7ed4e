"""BatchNorm as a per-channel affine ``scale * x + shift``, optionally gated: the algebra that lets a BatchNorm be
folded into the operator before it (a convolution's weight, the attention logits' factors) or computed from
statistics known in closed form.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Moments", "batch_norm_affine", "batch_norm_affine_from_moments", "gated_batch_norm"]

#: ``(mean, biased variance, count)`` of a term over the batch, per channel: ``(C,)`` tensors and the number of values.
Moments = tuple[torch.Tensor, torch.Tensor, int]


def batch_norm_affine(
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    gate: torch.Tensor | None = None,
    gate_after_norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale, shift`` such that ``scale * term + shift`` equals a BatchNorm with statistics ``mean, var``.

    Without a gate this is the BatchNorm (``weight``, ``bias``, ``eps``) of ``term``. With a gate it is that BatchNorm
    of ``gate * term`` (``gate_after_norm=False``: ``mean, var`` are then the statistics of the gated term), or
    ``gate`` times the BatchNorm of ``term`` (``gate_after_norm=True``). In eval mode ``mean, var`` are the running
    statistics (for ``gate_after_norm=False`` already those of the gated term).

    Args:
        weight: the BatchNorm's weight, ``(C,)``.
        bias: the BatchNorm's bias, ``(C,)``.
        mean: mean of the normalised term, ``(C,)``.
        var: biased variance of the normalised term, ``(C,)``.
        eps: the BatchNorm's epsilon.
        gate: a scalar gate (Eq. 3 of MedT), or None. Defaults to None.
        gate_after_norm: whether the gate multiplies the normalised term (True) or the raw term (False).
            Defaults to False.

    Returns:
        ``scale`` and ``shift``, each ``(C,)``.
    """
    scale = weight * torch.rsqrt(var + eps)
    shift = bias - mean * scale
    if gate is not None:
        # before the norm: scale applies to gate * term; after the norm: gate multiplies scale and shift.
        scale = gate * scale
        if gate_after_norm:
            shift = gate * shift
    return scale, shift


def batch_norm_affine_from_moments(
    norm: nn.modules.batchnorm._BatchNorm,
    moments: Moments,
    gate: torch.Tensor | None = None,
    gate_after_norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training mode: :func:`batch_norm_affine` of ``norm`` with a term's batch ``moments``, updating ``norm``'s
    running statistics exactly as :class:`torch.nn.BatchNorm2d` would (from the gated statistics ``gate * mean,
    gate^2 * var`` when the gate comes before the norm).

    Args:
        norm: the BatchNorm whose affine and running statistics are used.
        moments: ``(mean, biased var, count)`` of the ungated term over the batch.
        gate: see :func:`batch_norm_affine`.
        gate_after_norm: see :func:`batch_norm_affine`.

    Returns:
        ``scale`` and ``shift``, each ``(C,)``.
    """
    mean, var, count = moments
    mean, var = mean.to(norm.weight.dtype), var.to(norm.weight.dtype)
    if gate is not None and not gate_after_norm:
        mean, var = gate * mean, gate * gate * var
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.lerp_(mean, momentum)
        norm.running_var.lerp_(var * (count / max(count - 1, 1)), momentum)
    return batch_norm_affine(norm.weight, norm.bias, mean, var, norm.eps, gate, gate_after_norm)


def gated_batch_norm(
    norm: nn.modules.batchnorm._BatchNorm,
    x: torch.Tensor,
    gate: torch.Tensor | None = None,
    gate_after_norm: bool = False,
) -> torch.Tensor:
    """Training mode: ``norm(gate * x)`` (``gate_after_norm=False``) or ``gate * norm(x)`` (True) over the channels of
    ``(N, C, ...)`` ``x``; ``norm(x)`` without a gate. Running statistics are updated as :class:`torch.nn.BatchNorm2d`
    does.

    Args:
        norm: the BatchNorm.
        x: the term to normalise, ``(N, C, ...)``.
        gate: see :func:`batch_norm_affine`.
        gate_after_norm: see :func:`batch_norm_affine`.
    """
    weight, bias = norm.weight, norm.bias
    if gate is not None and gate_after_norm:
        weight, bias = gate * weight, gate * bias  # gate * BN(x)
    elif gate is not None:
        x = gate * x  # BN(gate * x)
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
    momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    return F.batch_norm(x, norm.running_mean, norm.running_var, weight, bias, True, momentum, norm.eps)
