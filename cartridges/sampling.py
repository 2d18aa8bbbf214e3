"""Batched sampling where many rows share a few long prefixes (prefix caching).

Self-study asks several questions about one corpus chunk, then answers them with
the same chunk in context. Prefilling the chunk once and reusing its KV cache for
every row of both turns is what makes synthesis cheap: the chunk (hundreds of
tokens) is encoded once per chunk instead of twice per conversation. Only the
teacher's top-k log-probabilities are kept per generated token, never the full
vocabulary, and generation stops as soon as every row has ended its turn.

Layout of one forward: ``[prefix slots | row suffix]``. Prefixes are left-padded
to a common width ``P``; a row may use only the first ``L`` tokens of its prefix
(its prompt diverges after them) -- the KV of a causal model's first ``L``
tokens does not depend on what follows, so the slots after ``L`` are masked out
and the rest of the row's prompt goes in its suffix. Position ids count only
unmasked tokens, so every row sees exactly the positions an unbatched run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class Generated:
    """One row's new tokens (through the end-of-turn token when it came) and, per token,
    the teacher's top-k token ids ``[n, k]`` and log-probabilities ``[n, k]``."""

    tokens: list[int]
    topk_ids: torch.Tensor
    topk_logprobs: torch.Tensor


@dataclass
class SharedPrefixes:
    """KV caches of left-padded prefixes: per layer ``(keys, values)`` ``[U, kv_heads, P, head_dim]``."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    ids: list[list[int]]  # each prefix's token ids (unpadded)
    width: int  # P

    def start(self, u: int) -> int:
        """Slot of prefix ``u``'s first token (left padding comes before it)."""
        return self.width - len(self.ids[u])


@torch.no_grad()
def prefill(model, prefixes: list[list[int]], pad: int) -> SharedPrefixes:
    """Encode each prefix once (batched, left-padded)."""
    device = next(model.parameters()).device
    width = max(map(len, prefixes))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in prefixes], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in prefixes], device=device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    # the decoder alone: a prefix needs its KV cache, not its logits (the LM head is ~1/5 of the model)
    out = model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    return SharedPrefixes(layers, [list(r) for r in prefixes], width)


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Layout:
    """One forward's inputs for rows continuing shared prefixes (see the module docstring)."""

    ids: torch.Tensor  # [B, S] each row's suffix, left-padded
    mask: torch.Tensor  # [B, P + S]
    positions: torch.Tensor  # [B, S]
    cache: DynamicCache


def _layout(model, shared: SharedPrefixes, rows: list[tuple[int, list[int]]], pad: int,
            own: list[int]) -> _Layout:
    """``own[r]``: the last tokens of row ``r`` that go in its suffix even when its prefix
    holds them (the forward must see them to give their logits)."""
    device = next(model.parameters()).device
    b, width = len(rows), shared.width
    used = [min(_common(shared.ids[u], prompt), len(prompt) - n) for (u, prompt), n in zip(rows, own)]
    suffixes = [prompt[n:] for (_, prompt), n in zip(rows, used)]
    s = max(map(len, suffixes))
    prefix_mask = torch.zeros(b, width, dtype=torch.long)
    for r, ((u, _), n) in enumerate(zip(rows, used)):
        prefix_mask[r, shared.start(u): shared.start(u) + n] = 1
    suffix_mask = torch.tensor([[0] * (s - len(x)) + [1] * len(x) for x in suffixes])
    ids = torch.tensor([[pad] * (s - len(x)) + x for x in suffixes], device=device)
    mask = torch.cat([prefix_mask, suffix_mask], 1).to(device)
    positions = torch.tensor(used).unsqueeze(1) + (suffix_mask.cumsum(1) - 1).clamp(min=0)
    index = torch.tensor([u for u, _ in rows], device=device)
    cache = DynamicCache(ddp_cache_data=[(k.index_select(0, index), v.index_select(0, index))
                                         for k, v in shared.layers], config=model.config)
    return _Layout(ids, mask, positions.to(device), cache)


@torch.no_grad()
def score_rows(model, shared: SharedPrefixes, rows: list[tuple[int, list[int]]], targets: list[int],
               pad: int, top_k: int) -> list[Generated]:
    """Teacher-forced: the top-k log-probabilities of each row's last ``targets[r]`` tokens
    (given everything before them), in one forward instead of a token-by-token loop."""
    at = _layout(model, shared, rows, pad, [n + 1 for n in targets])
    hidden = model.get_decoder()(input_ids=at.ids, attention_mask=at.mask, position_ids=at.positions,
                                 past_key_values=at.cache, use_cache=True).last_hidden_state
    width = at.ids.shape[1]  # rows are left-padded: every row ends at the last column
    out = []
    for r, ((_, prompt), n) in enumerate(zip(rows, targets)):
        logits = model.get_output_embeddings()(hidden[r, width - n - 1: width - 1]).float()
        top = torch.log_softmax(logits, -1).topk(top_k, -1)
        out.append(Generated(prompt[len(prompt) - n:], top.indices.cpu(), top.values.cpu()))
    return out


@torch.no_grad()
def sample_rows(model, shared: SharedPrefixes, rows: list[tuple[int, list[int]]], max_new: int,
                temperature: float, eos: int, pad: int, top_k: int,
                generator: torch.Generator | None = None) -> list[Generated]:
    """Continue each row ``(prefix index, full prompt ids)``; the prompt should start with
    that prefix's ids (any shared leading part is reused, the rest is encoded here)."""
    device = next(model.parameters()).device
    b = len(rows)
    at = _layout(model, shared, rows, pad, [1] * b)
    ids, mask, positions, cache = at.ids, at.mask, at.positions, at.cache
    next_pos = positions[:, -1] + 1
    tokens: list[list[int]] = [[] for _ in range(b)]
    top_ids: list[list[torch.Tensor]] = [[] for _ in range(b)]
    top_lp: list[list[torch.Tensor]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for _ in range(max_new):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1].float()
        logprobs = torch.log_softmax(logits, -1)
        if temperature > 0:
            probs = torch.softmax(logits / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, pad), token)
        top = logprobs.topk(top_k, -1)
        live = (~done).nonzero().flatten().tolist()
        token_list = token.tolist()
        top_i, top_v = top.indices.cpu(), top.values.cpu()
        for r in live:
            tokens[r].append(token_list[r])
            top_ids[r].append(top_i[r])
            top_lp[r].append(top_v[r])
        done |= token == eos
        if bool(done.all()):
            break
        ids = token.unsqueeze(1)
        mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=device)], 1)
        positions = next_pos.unsqueeze(1)
        next_pos = next_pos + 1
    return [Generated(t, torch.stack(i) if i else torch.zeros(0, top_k, dtype=torch.long),
                      torch.stack(v) if v else torch.zeros(0, top_k))
            for t, i, v in zip(tokens, top_ids, top_lp)]
