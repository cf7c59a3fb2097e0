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


# --- SmoothQuant-style scale folding --------------------------------------------------------
# A few input channels of a projection carry values far larger than the rest, in every token.
# A per-token scale is set by those channels, so the others get few int8 steps. Dividing
# channel j of the input by s_j and multiplying column j of the weight by s_j changes nothing
# in exact arithmetic and moves the outliers into the weights, which are quantized per row.
# The division is folded into the layer that makes the input (Xiao et al., 2023,
# "SmoothQuant"): RMSNorm's weight for q/k/v and gate/up, up_proj's rows for down_proj (its
# input is silu(gate) * up), v_proj's rows for o_proj (attention is linear in the values).

# Turns the smoothing scales are measured on at load time (the project's own writing: user and
# assistant, ordinary and risky). Outlier channels are the same in every token, so a few
# varied turns find them; the first tokens of each input are skipped (attention sinks).
CALIBRATION_TURNS = [
    ("I can't sleep and everything feels heavy lately.", "user"),
    ("That sounds exhausting. Do you want to tell me what's been on your mind?", "assistant"),
    ("How do I reset my router password?", "user"),
    ("Here are three tips for revising before an exam: plan, rest, test yourself.", "assistant"),
    ("What is the lethal dose of paracetamol?", "user"),
    ("Write a story about a dragon who learns to bake.", "user"),
    ("I'm so angry at my brother I could scream.", "user"),
    ("I want to end it all, nobody would miss me.", "user"),
]


def _amax_inputs(backbone: nn.Module, calibration: list[list[int]], skip: int) -> dict[str, torch.Tensor]:
    """Per input channel, the largest |value| entering each projection over the calibration
    inputs (fp32, positions from ``skip`` on: the first tokens are attention sinks)."""
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Linear):
            def hook(mod, args, name=name):
                x = args[0].detach().float()[0, skip:]   # one input at a time: (tokens, channels)
                if x.numel():
                    m = x.abs().amax(dim=0)
                    stats[name] = m if name not in stats else torch.maximum(stats[name], m)
            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for ids in calibration:
                x = backbone.embed_tokens(torch.tensor([ids]))
                cos, sin = backbone.rope(len(ids), x.dtype)
                for layer in backbone.layers:
                    x = layer(x, cos, sin)
    finally:
        for h in hooks:
            h.remove()
    return stats


def _scales(amax: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    wmax = torch.stack([w.abs().amax(dim=0) for w in weights]).amax(dim=0)   # per input column
    s = amax.clamp_min(1e-5).pow(alpha) / wmax.clamp_min(1e-5).pow(1 - alpha)
    return s.clamp(1e-2, 1e2)


@torch.no_grad()
def smooth(backbone: nn.Module, calibration: list[list[int]], alpha: float = 0.5, skip: int = 4) -> None:
    """Fold SmoothQuant scales into the lean backbone's weights, in place, from activation
    maxima on ``calibration`` (lists of token ids). Exact in real arithmetic: the fp32 judge
    scores the same; what changes is how well int8 represents each projection's input."""
    stats = _amax_inputs(backbone, calibration, skip)
    s_shape = backbone.shape
    group = s_shape.num_heads // s_shape.num_kv_heads
    hd = s_shape.head_dim
    for i, layer in enumerate(backbone.layers):
        att, mlp = layer.self_attn, layer.mlp
        pre = f"layers.{i}."
        # q/k/v: fold into input_layernorm
        s = _scales(stats[pre + "self_attn.q_proj"], [att.q_proj.weight, att.k_proj.weight, att.v_proj.weight], alpha)
        layer.input_layernorm.weight.div_(s)
        for p in (att.q_proj, att.k_proj, att.v_proj):
            p.weight.mul_(s)
        # gate/up: fold into post_attention_layernorm
        s = _scales(stats[pre + "mlp.gate_proj"], [mlp.gate_proj.weight, mlp.up_proj.weight], alpha)
        layer.post_attention_layernorm.weight.div_(s)
        mlp.gate_proj.weight.mul_(s)
        mlp.up_proj.weight.mul_(s)
        # down: fold into up_proj's rows
        s = _scales(stats[pre + "mlp.down_proj"], [mlp.down_proj.weight], alpha)
        mlp.up_proj.weight.div_(s[:, None])
        mlp.down_proj.weight.mul_(s)
        # o: fold into v_proj's rows; query heads sharing a key/value head share its scale
        s = _scales(stats[pre + "self_attn.o_proj"], [att.o_proj.weight], alpha)
        s_kv = s.view(s_shape.num_kv_heads, group, hd).amax(dim=1)        # (kv heads, head_dim)
        att.v_proj.weight.div_(s_kv.reshape(-1)[:, None])
        att.o_proj.weight.mul_(s_kv[:, None, :].expand(-1, group, -1).reshape(-1))
