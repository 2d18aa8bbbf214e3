"""The summary initialisation: a cartridge starts from the KV cache of an LM-written summary
of the corpus instead of its first ``p`` tokens (one of the paper's initialisation ablations).

The first ``p`` tokens describe the start of a corpus only; a summary of every part in
``p`` tokens covers all of it, at the price of one greedy generation per chunk before
training. The summary is the model's own text, so the cache it yields is what the model
would hold after reading it; the attention-sink token(s) stay the corpus's own.
"""

from __future__ import annotations

import math

import torch

from cartridges.synthesis import chat_ids, excerpt_message

CHUNK_TOKENS = 1536  # corpus tokens summarised at once: fits the bundled LM's window with room
PROMPT = ("Summarize the excerpt above in a few dense sentences. Keep names, numbers, commands "
          "and definitions.")


@torch.no_grad()
def summary_ids(model, tokenizer, ids: torch.Tensor, p: int, frozen: int = 1,
                chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """``p`` token ids: the corpus's first ``frozen`` tokens, then a greedy summary of each
    chunk of the corpus in order, each given an equal share of the rest. A summary shorter
    than its share (the model ended its turn) leaves room filled with the corpus's first
    tokens after the frozen ones, so the result always has ``p`` ids."""
    body = ids[frozen:]
    chunks = max(1, math.ceil(body.numel() / chunk_tokens))
    share = math.ceil((p - frozen) / chunks)
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    pieces = [ids[:frozen]]
    for c in range(chunks):
        text = tokenizer.decode(body[c * chunk_tokens:(c + 1) * chunk_tokens])
        prompt = chat_ids(tokenizer, [excerpt_message(text), {"role": "user", "content": PROMPT}])
        out = model.generate(torch.tensor([prompt], device=device), max_new_tokens=share, do_sample=False,
                             no_repeat_ngram_size=4, pad_token_id=pad,  # a 135M model loops without it
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=device))
        new = out[0, len(prompt):].cpu()
        pieces.append(new[new != eos])
    result = torch.cat(pieces)[:p]
    missing = p - result.numel()
    return torch.cat([result, ids[frozen:frozen + missing]]) if missing > 0 else result
