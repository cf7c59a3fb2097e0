"""int8 matrix multiplies for the lean judge: weights and activations both in int8 (W8A8).

torch's dynamic quantization (``quantize_dynamic``) scales a layer's whole input with one
number, so a few large activations (LLaMA's MLP input has them) squash every other value
into a handful of int8 steps: on down_proj that cost the judge many points. Here each
token's activations get their own scale and each weight row its own, and the product runs
in torch's int8 kernel (``torch._int_mm``, int32 accumulation), so the error stays near
one percent per layer whatever the outliers of other tokens.
"""
from __future__ import annotations

import torch
from torch import nn


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: (int8 values, fp32 scale per row)."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127.0
    return torch.round(x / scale).clamp_(-127, 127).to(torch.int8), scale


class W8A8Linear(nn.Module):
    """A bias-free ``nn.Linear`` with int8 weights (one scale per output row) and int8
    activations (one scale per token), computed with ``torch._int_mm``."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("W8A8Linear takes bias-free layers (LLaMA's projections)")
        w, scale = _quantize_rows(linear.weight.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", w.t().contiguous())           # (in, out) int8
        self.register_buffer("weight_scale", scale.reshape(1, -1))     # (1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        q, scale = _quantize_rows(rows.float())
        y = torch._int_mm(q, self.weight_t).to(torch.float32) * scale * self.weight_scale
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)


def quantize_w8a8(backbone: nn.Module, modules: tuple[str, ...]) -> int:
    """Replace the decoder's ``modules`` projections (e.g. "gate_proj") with W8A8Linear, in
    place; returns how many were replaced."""
    n = 0
    for name, parent in list(backbone.named_modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in modules and isinstance(child, nn.Linear):
                setattr(parent, child_name, W8A8Linear(child))
                n += 1
    return n
