"""The re-parameterized linear layer of Multimodal Pathway: y = x·(W + Σ_k λ_k·W_aux,k)ᵀ + b."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def scale_groups(granularity: str, name: str, out_features: int) -> int:
    """λ values per auxiliary for one layer: 1 (``"layer"``), 3 for a fused qkv and 1 otherwise (``"qkv"``),
    or one per output channel (``"channel"``)."""
    if granularity == "channel":
        return out_features
    if granularity not in ("layer", "qkv"):
        raise ValueError(f"scale_granularity must be 'layer', 'qkv' or 'channel', got {granularity!r}")
    return 3 if granularity == "qkv" and name.endswith("qkv") else 1


def _expand_scale(scale: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """(g,) scale -> (rows, 1): one value per group of consecutive output rows."""
    return scale.to(dtype).repeat_interleave(rows // scale.numel()).unsqueeze(1)


def _accumulate_dtype(weight: torch.Tensor) -> torch.dtype:
    """float32, or wider when the weight is (float64 gradient checks)."""
    return torch.promote_types(weight.dtype, torch.float32)


def effective_weight(weight: torch.Tensor, scales: Sequence[torch.Tensor], aux_weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """W + Σ_k λ_k·W_aux,k, formed in float32 at least (in bf16 a small λ term rounds away).

    Args:
        weight: (o, i) target weight, any float dtype.
        scales: K tensors of shape (g,), g dividing o.
        aux_weights: K tensors of shape (o, i), any float dtype.

    Returns:
        (o, i) float32 (float64 for a float64 weight).
    """
    dtype = _accumulate_dtype(weight)
    merged = weight.to(dtype)
    for scale, aux in zip(scales, aux_weights):  # addcmul: one pass over the weights, no (o, i) temporary
        merged = torch.addcmul(merged, _expand_scale(scale, merged.shape[0], dtype), aux.to(dtype))
    return merged


def _group_dot(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """(groups,) inner products of ``groups`` consecutive row blocks of two (o, i) tensors; one group is a
    BLAS dot with no (o, i) temporary."""
    if groups == 1:
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(1)
    return torch.linalg.vecdot(a.reshape(groups, -1), b.reshape(groups, -1))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


class _PathwayLinearFunction(torch.autograd.Function):
    """One matmul forward; the effective weight is recomputed in backward instead of being saved, so a
    pathway layer keeps no weight-sized activation beyond what a plain linear keeps."""

    @staticmethod
    def forward(ctx, x, weight, bias, num_aux: int, *scales_and_aux):
        scales, aux_weights = scales_and_aux[:num_aux], scales_and_aux[num_aux:]
        dtype = _compute_dtype(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_c = x.to(dtype)
            out = F.linear(x_c, effective_weight(weight, scales, aux_weights).to(dtype),
                           bias.to(dtype) if bias is not None else None)
        ctx.num_aux, ctx.x_dtype = num_aux, x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.save_for_backward(x_c, weight, *scales_and_aux)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x_c, weight, *scales_and_aux = ctx.saved_tensors
        scales, aux_weights = scales_and_aux[:ctx.num_aux], scales_and_aux[ctx.num_aux:]
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        needs_scales = ctx.needs_input_grad[4:4 + ctx.num_aux]
        needs_aux = ctx.needs_input_grad[4 + ctx.num_aux:]
        grad_out = grad_out.to(x_c.dtype)
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])  # (b·n, o)
        grad_x = grad_w = grad_b = None
        if needs_x:
            eff = effective_weight(weight, scales, aux_weights).to(x_c.dtype)
            grad_x = (grad_out @ eff).to(ctx.x_dtype)
        grad_scales = [None] * ctx.num_aux
        grad_aux = [None] * ctx.num_aux
        if needs_w or any(needs_scales) or any(needs_aux):
            accumulate = _accumulate_dtype(weight)
            grad_eff = (grad_2d.t() @ x_c.reshape(-1, x_c.shape[-1])).to(accumulate)  # (o, i) = dL/dW_eff
            if needs_w:
                grad_w = grad_eff.to(weight.dtype)
            for k, (scale, aux) in enumerate(zip(scales, aux_weights)):
                if needs_scales[k]:  # dL/dλ = <dL/dW_eff, W_aux> per group of rows
                    grad_scales[k] = _group_dot(grad_eff, aux.to(accumulate), scale.numel()).to(scale.dtype)
                if needs_aux[k]:
                    grad_aux[k] = (_expand_scale(scale, grad_eff.shape[0], accumulate) * grad_eff).to(aux.dtype)
        if needs_b:
            grad_b = grad_2d.sum(0, dtype=torch.promote_types(grad_2d.dtype, torch.float32)).to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, *grad_scales, *grad_aux


class PathwayLinear(nn.Module):
    """A linear layer re-parameterized with K auxiliary weights: y = x·(W + Σ λ_k·W_aux,k)ᵀ + b.

    Reading ``.weight`` returns the effective weight (differentiable), so code that inspects or uses
    the weight directly sees what the layer computes. The target's own weight is ``target_weight``.

    Args:
        linear: the target layer; its weight and bias parameters are taken over, not copied.
        aux_weights: K tensors (o, i); copied onto the target's device.
        scale_groups: λ values per auxiliary: 1 (one per layer), 3 (q/k/v slices of a fused qkv) or o
            (one per output channel). All stay mergeable.
        scale_init: initial λ (0 keeps the target's function at the start, the paper's best setting).
        learnable_scale: train λ (the paper) or keep it fixed (a control).
        trainable_aux: train the auxiliary weights (the paper) or freeze them (no gradients, no optimizer state).
        aux_dtype: storage dtype of the auxiliary weights (e.g. torch.bfloat16 when frozen); the
            effective weight is still formed in float32.

    Inputs:
        x: (..., i).

    Returns:
        (..., o).
    """

    def __init__(
            self,
            linear: nn.Linear,
            aux_weights: Sequence[torch.Tensor],
            *,
            scale_groups: int = 1,
            scale_init: float = 0.0,
            learnable_scale: bool = True,
            trainable_aux: bool = True,
            aux_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        out_features, in_features = linear.weight.shape
        if out_features % scale_groups:
            raise ValueError(f"scale_groups={scale_groups} does not divide the {out_features} output features")
        self.in_features, self.out_features = in_features, out_features
        self.target_weight = linear.weight
        self.bias = linear.bias
        device = linear.weight.device
        self.aux_weights = nn.ParameterList()
        self.scales = nn.ParameterList()
        for aux in aux_weights:
            if aux.shape != linear.weight.shape:
                raise ValueError(f"auxiliary weight {tuple(aux.shape)} does not match the target {tuple(linear.weight.shape)}")
            copy = aux.detach().to(device=device, dtype=aux_dtype or linear.weight.dtype, copy=True)
            self.aux_weights.append(nn.Parameter(copy, requires_grad=trainable_aux))
            self.scales.append(nn.Parameter(torch.full((scale_groups,), float(scale_init), device=device,
                                                       dtype=torch.float32), requires_grad=learnable_scale))

    def _apply(self, fn, recurse=True):
        # λ stays float32 under model.to(torch.bfloat16) / .half(): its small updates would round away.
        super()._apply(fn, recurse)
        for scale in self.scales:
            if scale.dtype != torch.float32:
                scale.data = scale.data.float()
        return self

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight W + Σ λ_k·W_aux,k, in the target weight's dtype."""
        return self.merged_weight().to(self.target_weight.dtype)

    def merged_weight(self) -> torch.Tensor:
        """(o, i) effective weight in float32 (or float64 for a float64 target)."""
        return effective_weight(self.target_weight, list(self.scales), list(self.aux_weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PathwayLinearFunction.apply(x, self.target_weight, self.bias, len(self.scales),
                                            *self.scales, *self.aux_weights)

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear with the merged weight, in the target's dtype and device (zero inference cost)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.target_weight.device, dtype=self.target_weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.merged_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.target_weight.requires_grad)
        if self.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"num_aux={len(self.aux_weights)}, scale_groups={self.scales[0].numel() if len(self.scales) else 0}")
