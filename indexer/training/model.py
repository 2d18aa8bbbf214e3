"""A ColBERTEncoder made trainable: differentiable encoding and MaxSim scoring.

It wraps the very encoder inference uses (same tokenizer calls, markers, masks),
so a saved checkpoint encodes exactly as it did at the end of training.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.encoding.encoder import (
    ColBERTEncoder,
    backbone_pass,
    head_input,
    pad_with_mask,
    unit,
    weigh_query_tokens,
)


class TrainableColBERT(torch.nn.Module):
    def __init__(self, encoder: ColBERTEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone = encoder.model
        if encoder.projection is None:
            raise ValueError("give the encoder a projection head first (see pca_head)")
        self.head = encoder.projection

        # The frozen lower part of the backbone (everything below the trained top layers)
        # gives the same output for a text at every step: it is computed once per text
        # and reused, so a step costs only the trained layers and the head. That is
        # what makes training affordable on a CPU.
        self.cache: dict[tuple, torch.Tensor] | None = None
        self.trained_layers = 0

    def cache_frozen_layers(self, trained_layers: int) -> None:
        """Cache what the top ``trained_layers`` layers do not change: their input (0: the
        backbone's output) and the lower hidden states a multi-layer head reads."""
        self.cache, self.trained_layers = {}, trained_layers

    def _hidden(self, batch: dict) -> torch.Tensor:
        """The head's input (B, T, features) for a tokenized batch."""
        batch = {k: v.to(self.encoder.device) for k, v in batch.items()}
        head_layers = self.encoder.config.head_layers
        if self.cache is None:
            return backbone_pass(self.backbone, batch, head_layers)[0]
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        keys = [tuple(ids[i][mask[i]].tolist()) for i in range(len(ids))]  # unpadded ids
        todo = [i for i, key in enumerate(keys) if key not in self.cache]
        layers = self.backbone.encoder.layer
        first_trained = len(layers) - self.trained_layers
        # hidden_states[n] is the input of layer n: the frozen ones are n <= first_trained
        frozen = sorted({first_trained} | {n for n in head_layers if n <= first_trained})
        if todo:
            with torch.no_grad():
                states = self.backbone(**{k: v[todo] for k, v in batch.items()},
                                       output_hidden_states=True).hidden_states
            for j, i in enumerate(todo):  # (tokens, len(frozen), H)
                self.cache[keys[i]] = torch.stack([states[n][j][mask[i]] for n in frozen], 1)
        cached = torch.zeros(*ids.shape, len(frozen), self.backbone.config.hidden_size,
                             device=ids.device)
        for i, key in enumerate(keys):
            cached[i, mask[i]] = self.cache[key]
        hidden_states = {n: cached[:, :, k] for k, n in enumerate(frozen)}
        hidden = hidden_states[first_trained]
        if self.trained_layers:
            from transformers.masking_utils import create_bidirectional_mask

            # the public helper BERT's own forward builds its mask with (its private
            # wrapper's signature changed between transformers 5.24 and 5.25)
            attention = create_bidirectional_mask(config=self.backbone.config, inputs_embeds=hidden,
                                                  attention_mask=batch["attention_mask"])
            for n, layer in enumerate(layers[first_trained:], first_trained + 1):
                hidden = hidden_states[n] = layer(hidden, attention_mask=attention)
        return head_input(hidden_states, head_layers) if head_layers else hidden

    def _forward(self, batch: dict) -> torch.Tensor:
        hidden = self._hidden(batch)
        return unit(self.head(hidden))  # (B, T, dim)

    def encode_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors (B, Lq, dim) and mask (B, Lq) as ``ColBERTEncoder.encode_queries``."""
        cfg = self.encoder.config
        batch = self.encoder.tokenize_batch(texts, cfg.query_max_tokens, cfg.query_marker)
        if cfg.query_augmentation:
            batch = pad_with_mask(batch, self.encoder.tokenizer, cfg.query_max_tokens)
        vectors, mask = self._forward(batch), batch["attention_mask"].bool().to(self.encoder.device)
        if self.encoder.query_weights is not None:
            vectors = weigh_query_tokens(vectors, batch["input_ids"], mask, self.encoder.query_weights)
        return vectors, mask

    def encode_documents(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors (N, Ld, dim) and the mask of kept tokens (N, Ld), as inference keeps them."""
        enc, cfg = self.encoder, self.encoder.config
        batch = enc.tokenize_batch(texts, cfg.doc_max_tokens, cfg.doc_marker)
        keep = batch["attention_mask"].bool()
        if cfg.skip_punctuation:
            keep &= ~torch.isin(batch["input_ids"], enc.punct_ids)
        special = enc.special_ids[enc.special_ids != enc.tokenizer.cls_token_id]
        keep &= ~torch.isin(batch["input_ids"], special)
        return self._forward(batch), keep.to(enc.device)


def maxsim(q: torch.Tensor, q_mask: torch.Tensor, d: torch.Tensor,
           d_mask: torch.Tensor) -> torch.Tensor:
    """Late-interaction scores of every query against every document.

    q (B, Lq, dim), q_mask (B, Lq), d (N, Ld, dim), d_mask (N, Ld) -> (B, N).
    """
    sims = torch.einsum("bqh,nth->bnqt", q, d)
    sims = sims.masked_fill(~d_mask[None, :, None, :], -1e4)
    best = sims.max(dim=-1).values  # (B, N, Lq)
    best = best.masked_fill(~q_mask[:, None, :], 0.0)
    return best.sum(dim=-1)


@torch.no_grad()
def pca_head(encoder: ColBERTEncoder, passages: list[str], dim: int) -> torch.nn.Linear:
    """A bias-free (dim, hidden) projection onto the top principal directions of the
    passages' (L2-normalised) raw token vectors, uncentred since the head has no bias.

    Returns the identity-like best rank-``dim`` linear map, so MaxSim at step 0 is
    close to MaxSim over the raw vectors.
    """
    if encoder.projection is not None:
        raise ValueError("the encoder already has a head")
    vectors = np.concatenate(encoder.encode_documents(passages))  # (n_tokens, hidden)
    second_moment = vectors.T.astype(np.float64) @ vectors / len(vectors)
    _, eigvecs = np.linalg.eigh(second_moment)  # ascending eigenvalues
    top = eigvecs[:, ::-1][:, :dim].T.copy()  # (dim, hidden)
    head = torch.nn.Linear(top.shape[1], dim, bias=False)
    head.weight.data = torch.from_numpy(top).float()
    return head.to(encoder.device)
