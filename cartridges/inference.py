"""Use a cartridge file with your own Hugging Face model: what inference clients call.

Only ``torch``, ``transformers`` and ``safetensors`` are needed at run time::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from cartridges.inference import load_cartridge

    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    cart = load_cartridge("faq.cartridge.safetensors", model, tokenizer)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is Python?"}],
                                           add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(**cart.generate_inputs(ids), max_new_tokens=64)
    print(tokenizer.decode(out[0, cart.p + ids.shape[1]:], skip_special_tokens=True))

``generate`` needs ``input_ids`` to cover the cached positions too, so
``generate_inputs`` prepends ``p`` placeholder ids that are never read (their
keys and values come from the cartridge); slice them off the output as above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache

from cartridges.fileformat import CartridgeFile, check_compatible, read_cartridge
from cartridges.kv import prefix_cache


@dataclass
class LoadedCartridge:
    """A verified cartridge ready to be a model's cache prefix."""

    file: CartridgeFile
    model: torch.nn.Module

    @property
    def p(self) -> int:
        return self.file.p

    @property
    def header(self) -> dict:
        return self.file.header

    def cache(self, batch_size: int = 1) -> DynamicCache:
        """A fresh cache holding the cartridge (a cache is consumed by one generation)."""
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        layers = [(k.to(device, dtype), v.to(device, dtype)) for k, v in self.file.layers()]
        return prefix_cache(layers, batch_size, self.model.config)

    def generate_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict:
        """Keyword arguments for ``model.generate`` with the cartridge before ``input_ids`` ``[B, T]``."""
        b = input_ids.shape[0]
        device = input_ids.device
        placeholder = torch.zeros(b, self.p, dtype=input_ids.dtype, device=device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return {"input_ids": torch.cat([placeholder, input_ids], 1),
                "attention_mask": torch.cat([torch.ones_like(placeholder), attention_mask], 1),
                "past_key_values": self.cache(b)}


def load_cartridge(path: str | Path, model, tokenizer=None, check_weights: bool = True) -> LoadedCartridge:
    """Read ``path``, verify it, and check it was made for ``model`` (and ``tokenizer``).

    Raises ``NotFound`` for a missing file, ``CartridgeCorrupt`` for a truncated or
    modified one, ``CartridgeMismatch`` for one made for another model.
    ``check_weights=False`` skips hashing the model's weights (shapes and RoPE are
    still checked) for callers that trust the pairing and want to skip ~1 s per GB.
    """
    cart = read_cartridge(Path(path))
    check_compatible(cart.header, model, tokenizer, check_weights=check_weights)
    return LoadedCartridge(cart, model)
