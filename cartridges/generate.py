"""Chat generation with zero, one or several cartridges as the prefix; plain or streamed.

Several cartridges compose by concatenation along the token axis (each keeps the
positions it was trained at; new tokens start after the total length), which is
how the Cartridges paper composes them without retraining.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import DynamicCache

from cartridges.fileformat import check_compatible, read_cartridge
from cartridges.kv import context_window, prefix_cache
from cartridges.synthesis import chat_ids
from indexer.errors import InvalidInput
from indexer.models import DEFAULT_LM, load_lm


def stream_tokens(model, tokenizer, layers, prompt: list[int], max_tokens: int, temperature: float = 0.0,
                  seed: int | None = None) -> Iterator[int]:
    """Yield new token ids for ``prompt`` placed after the prefix ``layers``; stops at EOS.

    ``layers``: per layer ``(keys, values)``, each ``[kv_heads, p, head_dim]`` (may be empty).
    Checks the lengths before returning, so a bad request fails before any streaming starts.
    """
    p = layers[0][0].shape[1] if layers else 0
    if p + len(prompt) + max_tokens > context_window(model):
        raise InvalidInput(f"{p} cartridge tokens + {len(prompt)} prompt tokens + max_tokens {max_tokens} "
                           f"exceed the model's context window ({context_window(model)})")
    return _tokens(model, tokenizer, layers, prompt, max_tokens, temperature, seed, p)


@torch.no_grad()
def _tokens(model, tokenizer, layers, prompt, max_tokens, temperature, seed, p) -> Iterator[int]:
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    dtype = next(model.parameters()).dtype
    cache = (prefix_cache([(k.to(device, dtype), v.to(device, dtype)) for k, v in layers], 1, model.config)
             if layers else DynamicCache(config=model.config))
    ids = torch.tensor([prompt], device=device)
    pos = p
    for _ in range(max_tokens):
        n = ids.shape[1]
        out = model(input_ids=ids, attention_mask=torch.ones(1, pos + n, dtype=torch.long, device=device),
                    position_ids=torch.arange(pos, pos + n, device=device)[None], past_key_values=cache,
                    use_cache=True)
        pos += n
        logits = out.logits[0, -1].float().cpu()
        if temperature > 0:
            token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen))
        else:
            token = int(logits.argmax())
        if token == tokenizer.eos_token_id:
            return
        yield token
        ids = torch.tensor([[token]], device=device)


def decode(model, tokenizer, layers, prompt: list[int], max_tokens: int, temperature: float = 0.0,
           seed: int | None = None) -> list[int]:
    return list(stream_tokens(model, tokenizer, layers, prompt, max_tokens, temperature, seed))


def stream_text(tokenizer, tokens: Iterator[int]) -> Iterator[str]:
    """Turn a token stream into text pieces, holding back incomplete UTF-8 characters."""
    done, text = [], ""
    for token in tokens:
        done.append(token)
        full = tokenizer.decode(done, skip_special_tokens=True)
        if full.endswith("\ufffd"):
            continue
        yield full[len(text):]
        text = full


@functools.lru_cache(maxsize=16)
def _checked_layers(path: str, mtime_ns: int, model_name: str):
    """A cartridge's layers, verified against the model once per file version."""
    model, tokenizer = load_lm(model_name)
    cart = read_cartridge(Path(path))
    check_compatible(cart.header, model, tokenizer)
    return cart.layers()


def load_layers(paths: Sequence[Path],
                model_name: str = DEFAULT_LM) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Concatenated layers of the cartridge files at ``paths`` (empty list for none)."""
    parts = [_checked_layers(str(p), os.stat(p).st_mtime_ns if Path(p).exists() else 0, model_name)
             for p in paths]
    if not parts:
        return []
    return [(torch.cat([part[i][0] for part in parts], 1), torch.cat([part[i][1] for part in parts], 1))
            for i in range(len(parts[0]))]


class ChatRun:
    """One chat completion in progress: text pieces plus the counts an API reports."""

    def __init__(self, tokenizer, prompt: list[int], tokens: Iterator[int], max_tokens: int) -> None:
        self.prompt_tokens = len(prompt)
        self.completion_tokens = 0
        self.max_tokens = max_tokens
        self._tokenizer, self._tokens = tokenizer, tokens

    def _counted(self) -> Iterator[int]:
        for token in self._tokens:
            self.completion_tokens += 1
            yield token

    def pieces(self) -> Iterator[str]:
        return stream_text(self._tokenizer, self._counted())

    @property
    def finish_reason(self) -> str:
        return "length" if self.completion_tokens >= self.max_tokens else "stop"


def start_chat(messages: list[dict], cartridge_paths: Sequence[Path] = (), max_tokens: int = 256,
               temperature: float = 0.0, model: str = DEFAULT_LM, seed: int | None = None) -> ChatRun:
    """Validate a chat request and set up its generation (nothing is generated yet)."""
    if not messages or any(not isinstance(m, dict) or "role" not in m or "content" not in m
                           for m in messages):
        raise InvalidInput("messages must be a non-empty list of {role, content}")
    if max_tokens <= 0:
        raise InvalidInput(f"max_tokens must be positive, got {max_tokens}")
    lm, tokenizer = load_lm(model)
    layers = load_layers(cartridge_paths, model)
    prompt = chat_ids(tokenizer, messages)
    tokens = stream_tokens(lm, tokenizer, layers, prompt, max_tokens, temperature, seed)
    return ChatRun(tokenizer, prompt, tokens, max_tokens)


def generate_chat(messages: list[dict], cartridge_paths: Sequence[Path] = (), max_tokens: int = 256,
                  temperature: float = 0.0, stream: bool = False, model: str = DEFAULT_LM,
                  seed: int | None = None) -> str | Iterator[str]:
    """Answer a chat (``[{"role", "content"}, ...]``) with the given cartridges as context.

    Returns the reply text, or an iterator of text pieces when ``stream``.
    """
    run = start_chat(messages, cartridge_paths, max_tokens, temperature, model, seed)
    return run.pieces() if stream else "".join(run.pieces())
