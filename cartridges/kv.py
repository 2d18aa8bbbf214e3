"""Cartridge tensors and how a model attends to them.

A cartridge is, per layer, keys and values of ``p`` virtual tokens, shaped
``[kv_heads, p, head_dim]``, keys stored after RoPE at positions ``0..p-1``.
It is fed to the model as a pre-filled ``DynamicCache``; new tokens get
positions ``p, p+1, ...`` and an attention mask that covers the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from indexer.errors import InvalidInput


@dataclass(frozen=True)
class KVShape:
    """What a cartridge must match in a model: layers, kv heads, head dim."""

    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, model) -> KVShape:
        cfg = model.config.get_text_config(decoder=True)
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(cfg.num_hidden_layers, getattr(cfg, "num_key_value_heads", heads), head_dim)


def context_window(model) -> int:
    cfg = model.config.get_text_config(decoder=True)
    return int(getattr(cfg, "max_position_embeddings", 2048))


class Cartridge(nn.Module):
    """Trainable keys and values; the first ``frozen`` tokens are buffers.

    Parameters
    ----------
    keys, values : list of tensors, one per layer, each ``[kv_heads, p, head_dim]``.
    frozen : number of leading tokens that never train (the attention sink).
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], frozen: int = 1):
        super().__init__()
        if not keys or len(keys) != len(values):
            raise InvalidInput("a cartridge needs keys and values for every layer")
        p = keys[0].shape[1]
        if not 0 <= frozen < p:
            raise InvalidInput(f"frozen tokens must be in [0, {p}), got {frozen}")
        self.frozen = frozen
        for i, (k, v) in enumerate(zip(keys, values)):
            self.register_buffer(f"fk{i}", k[:, :frozen].detach().float().clone())
            self.register_buffer(f"fv{i}", v[:, :frozen].detach().float().clone())
        # float32 even under a bfloat16 model: Adam's small updates would vanish in bfloat16
        self.train_keys = nn.ParameterList([nn.Parameter(k[:, frozen:].detach().float().clone())
                                            for k in keys])
        self.train_values = nn.ParameterList([nn.Parameter(v[:, frozen:].detach().float().clone())
                                              for v in values])

    @property
    def num_layers(self) -> int:
        return len(self.train_keys)

    @property
    def p(self) -> int:
        return self.frozen + self.train_keys[0].shape[1]

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of layer ``i``, each ``[kv_heads, p, head_dim]``."""
        k = torch.cat([getattr(self, f"fk{i}"), self.train_keys[i]], dim=1)
        v = torch.cat([getattr(self, f"fv{i}"), self.train_values[i]], dim=1)
        return k, v

    def tensors(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pairs = [self.layer(i) for i in range(self.num_layers)]
        return [k.detach() for k, _ in pairs], [v.detach() for _, v in pairs]

    def nbytes(self) -> int:
        keys, values = self.tensors()
        return sum(t.numel() * t.element_size() for t in keys + values)


def prefix_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], batch: int, config) -> DynamicCache:
    """A fresh ``DynamicCache`` holding ``layers`` (each ``[kv_heads, p, head_dim]``) for ``batch`` rows.

    Built anew for every forward: ``DynamicCache.update`` appends in place, and
    the cat keeps gradients flowing back into the cartridge parameters.
    """
    data = [(k.unsqueeze(0).expand(batch, -1, -1, -1), v.unsqueeze(0).expand(batch, -1, -1, -1))
            for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)


def concat_layers(cartridges: list[Cartridge]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Compose cartridges by concatenating along the token axis (as in the paper)."""
    per = [[c.layer(i) for i in range(c.num_layers)] for c in cartridges]
    return [(torch.cat([p[i][0] for p in per], dim=1), torch.cat([p[i][1] for p in per], dim=1))
            for i in range(len(per[0]))]


def forward_with_prefix(model, layers, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        hidden: bool = False):
    """Logits for ``input_ids`` ``[B, T]`` placed after a prefix of ``p`` cached tokens.

    Returns
    -------
    logits : ``[B, T, vocab]``, or the decoder's last hidden states ``[B, T, d]`` when
    ``hidden`` (so callers can project only the positions they need); positions are ``p..p+T-1``.
    """
    b, t = input_ids.shape
    p = layers[0][0].shape[1] if layers else 0
    if attention_mask is None:
        attention_mask = torch.ones(b, t, dtype=torch.long, device=input_ids.device)
    full_mask = torch.cat([torch.ones(b, p, dtype=attention_mask.dtype, device=input_ids.device),
                           attention_mask], dim=1)
    position_ids = torch.arange(p, p + t, device=input_ids.device).unsqueeze(0).expand(b, -1)
    dtype = next(model.parameters()).dtype
    cache = prefix_cache([(k.to(dtype), v.to(dtype)) for k, v in layers], b, model.config) if p else None
    net = model.get_decoder() if hidden else model
    out = net(input_ids=input_ids, attention_mask=full_mask, position_ids=position_ids,
              past_key_values=cache, use_cache=cache is not None)
    return out.last_hidden_state if hidden else out.logits


def corpus_tokens(tokenizer, text: str) -> torch.Tensor:
    """The corpus as token ids ``[n]`` (no special tokens)."""
    if not text or not text.strip():
        raise InvalidInput("the corpus is empty")
    return torch.tensor(tokenizer(text, add_special_tokens=False).input_ids, dtype=torch.long)


@torch.no_grad()
def init_from_prefix(model, ids: torch.Tensor, p: int, frozen: int = 1) -> Cartridge:
    """Cartridge initialised from the KV cache of the first ``p`` ids of ``ids`` ``[n]``."""
    if p <= 0:
        raise InvalidInput(f"p must be positive, got {p}")
    if p >= context_window(model):
        raise InvalidInput(f"p={p} does not fit the model's context window ({context_window(model)})")
    if ids.numel() < p:
        raise InvalidInput(f"the corpus has {ids.numel()} tokens, fewer than p={p}")
    device = next(model.parameters()).device
    out = model(input_ids=ids[:p].unsqueeze(0).to(device), use_cache=True)
    cache = out.past_key_values
    keys = [layer.keys[0] for layer in cache.layers]
    values = [layer.values[0] for layer in cache.layers]
    return Cartridge(keys, values, frozen)


def spread_tokens(ids: torch.Tensor, p: int, frozen: int = 1, spans: int = 8) -> torch.Tensor:
    """``p`` corpus tokens drawn from across the corpus: the first ``frozen`` (the attention
    sink), then ``spans`` equal runs starting at evenly spaced offsets (the paper's
    alternative to the first ``p`` tokens, for corpora whose start is not representative)."""
    n, rest = ids.numel(), p - frozen
    spans = max(1, min(spans, rest))
    sizes = [rest // spans + (i < rest % spans) for i in range(spans)]
    parts = [ids[:frozen]]
    for i, size in enumerate(sizes):
        start = frozen + (n - frozen - size) * i // max(1, spans - 1) if spans > 1 else frozen
        parts.append(ids[start:start + size])
    return torch.cat(parts)
