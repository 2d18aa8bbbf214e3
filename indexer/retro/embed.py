"""Chunk keys: a frozen BERT-like encoder, mean-pooled over each chunk's text, L2-normalised.

RETRO keys chunks with frozen BERT embeddings so the retrieval DB never needs
re-encoding when the LM changes. Chunks are sorted by length before batching
so each batch pads to a similar length (the encoder is the slow part of a sync).
"""

from __future__ import annotations

import numpy as np

from indexer.device import pick_device
from indexer.errors import ModelError

DEFAULT_KEY_ENCODER = "bundled:minilm"  # RETRO keys: mean-pooled sentence vectors, not the ColBERT default


class ChunkEncoder:
    """Mean-pooled, normalised sentence keys from a Hugging Face encoder.

    Parameters
    ----------
    name : "bundled:minilm" (default) or a local HF model directory
    batch_size : texts per forward pass
    max_length : encoder tokens kept per text (a 64-token LM chunk is ~60-120 BERT tokens)
    device : "cpu", "cuda", ...; default CUDA when available
    """

    def __init__(
        self,
        name: str = DEFAULT_KEY_ENCODER,
        batch_size: int = 64,
        max_length: int = 256,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from indexer.models import resolve_model_path

        path = str(resolve_model_path(name))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load encoder {name!r}: {exc}") from exc
        self.device = pick_device(device)
        self.model.to(self.device)
        if self.device.startswith("cuda"):
            self.model.half()
        self.name = name
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = batch_size
        self.max_length = max_length
        self._torch = torch

    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        """Keys of ``texts``, float32 [len(texts), dim], unit L2 norm; ``progress(done,
        total)`` after each batch (a job's report, which may raise to cancel it)."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()  # (B, T, dim)
                mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, dim)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.cpu().numpy()
                if progress:
                    progress(min(start + self.batch_size, len(texts)), len(texts))
        return out
