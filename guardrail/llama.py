"""A LLaMA decoder stack for inference, in one file, with no transformers or peft import.

Why: importing transformers and peft and letting peft merge the LoRA weights took about
9 of the 9.3 s cold start, while the forward pass of a 12-layer, 576-wide stack needs none
of them. This module reads the base checkpoint's ``config.json`` and ``model.safetensors``
directly (only the layers the adapter uses), folds the LoRA weights in (W += alpha/r * B @ A)
and runs the same computation as ``transformers.LlamaModel`` (tests check they agree).

Only plain LLaMA shapes are supported (default RoPE, SiLU MLP, no biases); for anything
else :func:`supported` says why and the loader falls back to transformers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LlamaShape:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_eps: float
    rope_theta: float
    vocab_size: int

    @classmethod
    def from_config(cls, cfg: dict, num_layers: int) -> "LlamaShape":
        heads = cfg["num_attention_heads"]
        rope = cfg.get("rope_parameters") or {}
        return cls(hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                   num_layers=num_layers, num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads", heads),
                   head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads, rms_eps=cfg["rms_norm_eps"],
                   rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                   vocab_size=cfg["vocab_size"])


def supported(cfg: dict) -> str | None:
    """None when this module computes exactly what transformers would for ``cfg``; else why not."""
    rope = cfg.get("rope_parameters") or {}
    if cfg.get("model_type") != "llama":
        return f"model_type {cfg.get('model_type')!r} is not 'llama'"
    if rope.get("rope_type", "default") != "default" or cfg.get("rope_scaling"):
        return "scaled RoPE"
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        return "biases in attention or MLP"
    if cfg.get("hidden_act", "silu") != "silu":
        return f"activation {cfg.get('hidden_act')!r}"
    if cfg.get("pretraining_tp", 1) != 1:
        return "pretraining_tp != 1"
    return None


class Linear(nn.Linear):
    """nn.Linear without random initialisation: every weight is loaded (init costs cold start)."""

    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    """The weight may be a half-precision map of the checkpoint; rows come out fp32."""

    def reset_parameters(self) -> None:
        pass

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids).float()


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, device=device))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, s: LlamaShape, device=None):
        super().__init__()
        self.s = s
        self.q_proj = Linear(s.hidden_size, s.num_heads * s.head_dim, bias=False, device=device)
        self.k_proj = Linear(s.hidden_size, s.num_kv_heads * s.head_dim, bias=False, device=device)
        self.v_proj = Linear(s.hidden_size, s.num_kv_heads * s.head_dim, bias=False, device=device)
        self.o_proj = Linear(s.num_heads * s.head_dim, s.hidden_size, bias=False, device=device)

    def forward(self, x, cos, sin, last_only=None, past=None, keep=None):
        """Causal self-attention over ``past`` (cached, rotated keys/values of a fixed prefix)
        and ``x``. With ``last_only`` (an index per row) only those positions are queries:
        the top layer needs nothing else. ``keep`` (a list) receives this call's keys/values."""
        b, t, _ = x.shape
        s = self.s
        k = self.k_proj(x).view(b, t, s.num_kv_heads, s.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, s.num_kv_heads, s.head_dim).transpose(1, 2)
        k = k * cos + rotate_half(k) * sin
        if keep is not None:
            keep.append((k, v))
        p = 0
        if past is not None:
            p = past[0].size(2)
            k = torch.cat((past[0].expand(b, -1, -1, -1), k), dim=2)
            v = torch.cat((past[1].expand(b, -1, -1, -1), v), dim=2)
        keys = torch.arange(p + t, device=x.device)
        if last_only is None:
            q = self.q_proj(x).view(b, t, s.num_heads, s.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            if p == 0:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:
                mask = keys[None, :] <= (torch.arange(t, device=x.device) + p)[:, None]
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))
        xq = x[torch.arange(b, device=x.device), last_only].unsqueeze(1)  # b, 1, hidden
        q = self.q_proj(xq).view(b, 1, s.num_heads, s.head_dim).transpose(1, 2)
        c, sn = cos[0, 0, last_only][:, None, None], sin[0, 0, last_only][:, None, None]
        q = q * c + rotate_half(q) * sn
        mask = (keys[None, :] <= (last_only + p)[:, None])[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, 1, -1))


class MLP(nn.Module):
    def __init__(self, s: LlamaShape, device=None):
        super().__init__()
        self.gate_proj = Linear(s.hidden_size, s.intermediate_size, bias=False, device=device)
        self.up_proj = Linear(s.hidden_size, s.intermediate_size, bias=False, device=device)
        self.down_proj = Linear(s.intermediate_size, s.hidden_size, bias=False, device=device)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, s: LlamaShape, device=None):
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_eps, device)
        self.self_attn = Attention(s, device)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_eps, device)
        self.mlp = MLP(s, device)

    def forward(self, x, cos, sin, last_only=None, past=None, keep=None):
        h = self.self_attn(self.input_layernorm(x), cos, sin, last_only, past, keep)
        x = (x if last_only is None else x[torch.arange(x.size(0), device=x.device), last_only].unsqueeze(1)) + h
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """Embeddings + decoder layers + final norm; the state-dict keys are transformers' LlamaModel keys."""

    def __init__(self, s: LlamaShape, device=None):
        super().__init__()
        self.shape = s
        self.embed_tokens = Embedding(s.vocab_size, s.hidden_size, device=device)
        self.layers = nn.ModuleList(Block(s, device) for _ in range(s.num_layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_eps, device)
        self.inv_freq = 1.0 / (s.rope_theta ** (torch.arange(0, s.head_dim, 2, dtype=torch.float32) / s.head_dim))

        self.prefix: torch.Tensor | None = None   # token ids every input starts with
        self.prefix_kv: list | None = None         # their keys/values per layer

    def rope(self, t: int, dtype: torch.dtype, offset: int = 0):
        freqs = torch.outer(torch.arange(offset, offset + t, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]

    @torch.no_grad()
    def cache_prefix(self, ids: list[int]) -> None:
        """Compute once the keys/values of the fixed start of every input (the judge's system
        prompt); later inputs that start with it skip those positions. Exact, not approximate."""
        self.prefix_kv = None
        x = self.embed_tokens(torch.tensor([ids]))
        cos, sin = self.rope(len(ids), x.dtype)
        kv: list = []
        for layer in self.layers:
            x = layer(x, cos, sin, keep=kv)
        self.prefix, self.prefix_kv = torch.tensor(ids), kv

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, skip: int = 0,
                with_mean: bool = False):
        """Hidden state of each row's last real token (right padding), shape (batch, hidden).

        Right padding and a causal mask mean real tokens never see padding, so no padding
        mask is needed; the top layer computes only the last real token. ``with_mean`` also
        returns the mean over real tokens from position ``skip`` on of the (normed) states
        entering the top layer: what taught categories read besides the last token."""
        past, p = None, 0
        if self.prefix_kv is not None and not torch.is_grad_enabled():
            p = self.prefix.numel()
            if input_ids.size(1) > p and bool((input_ids[:, :p] == self.prefix).all()):
                past = self.prefix_kv
                input_ids, attention_mask = input_ids[:, p:], attention_mask[:, p:]
            else:
                p = 0
        x = self.embed_tokens(input_ids)
        cos, sin = self.rope(input_ids.size(1), x.dtype, offset=p)
        last = attention_mask.sum(dim=1) - 1
        top = len(self.layers) - 1
        mean = None
        for i, layer in enumerate(self.layers):
            if with_mean and i == top:
                keep = attention_mask.clone()
                keep[:, : max(0, skip - p)] = 0
                keep = keep[..., None].to(x.dtype)
                mean = (self.norm(x) * keep).sum(1) / keep.sum(1).clamp_min(1)
            x = layer(x, cos, sin, last_only=last if i == top else None, past=past[i] if past else None)
        return (self.norm(x[:, 0]), mean) if with_mean else self.norm(x[:, 0])

    @torch.no_grad()
    def forward_cached(self, ids: list[int], cache: KVCache, skip: int = 0, with_mean: bool = False):
        """``forward`` of one unpadded input, reusing ``cache`` (the keys/values of the previous
        input of the same stream) for the tokens both start with; the cache then holds this
        input. Exact: causal attention makes a position's keys/values depend only on the tokens
        before it. Returns what ``forward`` returns for a batch of one."""
        n = len(ids)
        common = 0
        for a, b in zip(ids, cache.ids):
            if a != b:
                break
            common += 1
        common = min(common, n - 1)   # at least the last token is computed: the heads read it
        past, top = None, None
        if common > 0 and cache.kv:
            past = [(k[:, :, :common], v[:, :, :common]) for k, v in cache.kv]
            top = cache.top[:, :common] if cache.top is not None else None
        elif self.prefix_kv is not None and n > self.prefix.numel() and ids[: self.prefix.numel()] == self.prefix.tolist():
            common = self.prefix.numel()   # a fresh stream still skips the system prefix
            past = self.prefix_kv
            top = torch.zeros(1, common, self.shape.hidden_size)   # before ``skip``: never averaged
        x = self.embed_tokens(torch.tensor([ids[common:]]))
        cos, sin = self.rope(n - common, x.dtype, offset=common)
        last = torch.tensor([n - common - 1])
        kv: list = []
        top_layer = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == top_layer:
                normed = self.norm(x)
                top = normed if top is None else torch.cat((top, normed), dim=1)
            x = layer(x, cos, sin, last_only=last if i == top_layer else None,
                      past=past[i] if past else None, keep=kv)
        cache.ids = list(ids)
        cache.kv = kv if past is None else [(torch.cat((pk, k), 2), torch.cat((pv, v), 2))
                                            for (pk, pv), (k, v) in zip(past, kv)]
        cache.top = top
        cache.computed += n - common
        out = self.norm(x[:, 0])
        if not with_mean:
            return out
        return out, top[:, skip:].mean(1) if n > skip else top.mean(1)


class KVCache:
    """The keys/values of one earlier input, kept to judge the next input of the same stream
    (a streamed reply judged window by window): :meth:`Llama.forward_cached` reuses them for
    the tokens the two inputs share at their start and computes only the rest."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []   # per layer, (1, kv_heads, len(ids), head_dim)
        self.top: torch.Tensor | None = None                    # normed states entering the top layer (1, len(ids), hidden)
        self.computed = 0                                       # tokens computed so far (reused ones not counted)


def load(base_dir: Path, num_layers: int, lora_dir: Path | None = None,
         on_layer: Callable[[nn.Module], object] | None = None) -> Llama:
    """The first ``num_layers`` layers of the checkpoint in ``base_dir``, with the LoRA
    adapter in ``lora_dir`` (peft's files) folded into the weights.

    Memory, not just speed: the weights are read layer by layer into the process's own
    memory and ``on_layer(block)`` runs on each block as soon as it is loaded (the int8 judge
    quantizes its MLP there), so the fp32 copies it replaces are freed before the next layer
    is read. The token embedding stays a read-only map of the checkpoint file: only the rows of
    tokens actually seen are ever in memory. Mapping the whole file instead kept every page
    read for loading resident, and the LoRA merge turned them into private copies."""
    cfg = json.loads((base_dir / "config.json").read_text())
    why = supported(cfg)
    if why:
        raise NotImplementedError(why)
    model = Llama(LlamaShape.from_config(cfg, num_layers), device="meta")
    wanted = set(model.state_dict())
    files = sorted(base_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {base_dir}")
    deltas = lora_deltas(lora_dir) if lora_dir is not None else {}
    unknown = set(deltas) - wanted
    if unknown:
        raise KeyError(f"LoRA weight for {sorted(unknown)[0]} has no base weight")
    where = {key.removeprefix("model."): (file, info) for file in files
             for key, info in _header(file).items() if key.removeprefix("model.") in wanted}
    missing = wanted - set(where)
    if missing:
        raise KeyError(f"{base_dir} lacks {len(missing)} weights, e.g. {sorted(missing)[0]}")

    def weight(name: str) -> torch.Tensor:
        t = _read(*where[name]).to(torch.float32)
        if name in deltas:
            b, a, scale = deltas[name]
            t.add_(b @ a, alpha=scale)
        return t

    emb = "embed_tokens.weight"
    model.embed_tokens.weight = nn.Parameter(weight(emb) if emb in deltas else _read(*where[emb], mapped=True),
                                             requires_grad=False)
    model.norm.load_state_dict({"weight": weight("norm.weight")}, assign=True)
    for i, block in enumerate(model.layers):
        prefix = f"layers.{i}."
        block.load_state_dict({n[len(prefix):]: weight(n) for n in sorted(wanted) if n.startswith(prefix)},
                              assign=True)
        if on_layer is not None:
            on_layer(block)
    model.eval()
    return model


# safetensors: an 8-byte little-endian header size, a JSON header {name: {dtype, shape,
# data_offsets}}, then the data. Read here directly so that a weight can be read into the
# process (not mapped: a map keeps every page it has read) or mapped alone.
_SAFETENSORS_DTYPES = {"F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
                       "BF16": (np.int16, torch.bfloat16)}


def _header(file: Path) -> dict[str, dict]:
    with open(file, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    header.pop("__metadata__", None)
    for info in header.values():
        info["offset"] = 8 + size + info["data_offsets"][0]
    return header


def _read(file: Path, info: dict, mapped: bool = False) -> torch.Tensor:
    """One tensor: read into memory, or (``mapped``) a copy-on-write map of just its bytes."""
    if info["dtype"] not in _SAFETENSORS_DTYPES:
        raise ValueError(f"{file}: a weight is {info['dtype']}, not a float type")
    np_dtype, dtype = _SAFETENSORS_DTYPES[info["dtype"]]
    shape = tuple(info["shape"])
    count = int(np.prod(shape))
    if mapped and count:
        arr = np.memmap(file, dtype=np_dtype, mode="c", offset=info["offset"], shape=shape)
    else:
        arr = np.fromfile(file, dtype=np_dtype, count=count, offset=info["offset"]).reshape(shape)
        if arr.size != count:
            raise ValueError(f"{file} is truncated")
    return torch.from_numpy(arr).view(dtype)


def lora_deltas(lora_dir: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{base weight name: (B, A, alpha / r)} of a peft LoRA adapter folder (plain LoRA only):
    the loader adds scale * B @ A to each weight as it reads it."""
    from safetensors.torch import load_file

    cfg = json.loads((lora_dir / "adapter_config.json").read_text())
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora") or cfg.get("use_rslora") \
            or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise NotImplementedError("only plain LoRA adapters can be folded in without peft")
    scale = cfg["lora_alpha"] / cfg["r"]
    weights = load_file(str(lora_dir / "adapter_model.safetensors"))
    out = {}
    for key, a in weights.items():
        if ".lora_A." not in key:
            continue
        b = weights[key.replace(".lora_A.", ".lora_B.")]
        out[key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")] = (b.float(), a.float(), scale)
    if not out:
        raise ValueError(f"{lora_dir / 'adapter_model.safetensors'} holds no LoRA weights")
    return out
