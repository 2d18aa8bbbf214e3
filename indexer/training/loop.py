"""The ColBERT training loop: short and linear, in the manner of nanoGPT.

Per step: ``batch_size`` examples, each a query with its positive and
``n_negatives`` hard negatives. Every query is scored against every passage of
the batch (in-batch negatives) and cross-entropy picks its own positive. When
the examples carry teacher scores, a KL term (teacher -> student) over each
query's own passages is added for the examples that have them (distillation).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from indexer.encoding.encoder import ColBERTEncoder, EncoderConfig
from indexer.errors import InvalidInput
from indexer.training.checkpoint import save_checkpoint
from indexer.training.config import TrainConfig
from indexer.training.data import Example
from indexer.training.idf import idf_weights
from indexer.training.model import TrainableColBERT, maxsim, pca_head

# (step, total steps, loss) after each step; returning True stops training early.
StepCallback = Callable[[int, int, float], bool | None]


def build_model(cfg: TrainConfig, pca_passages: list[str]) -> TrainableColBERT:
    """The encoder to train: ``cfg.base`` with ``cfg``'s settings and a (PCA) head; the
    first ``cfg.pca_passages`` of ``pca_passages`` feed the PCA, all of them the query
    token weights (``cfg.query_idf``)."""
    encoder = ColBERTEncoder.load(cfg.base, device=cfg.device, runtime="torch")
    skip = encoder.config.skip_punctuation if cfg.skip_punctuation is None else cfg.skip_punctuation
    encoder.config = replace(encoder.config, skip_punctuation=skip)
    if encoder.projection is None:
        encoder.config = EncoderConfig(
            query_max_tokens=cfg.query_max_tokens, doc_max_tokens=cfg.doc_max_tokens,
            markers=cfg.markers, query_augmentation=cfg.query_augmentation,
            skip_punctuation=skip)
        if cfg.head_layers and not cfg.dim:
            raise InvalidInput("head_layers need a head: set dim")
        if cfg.dim and cfg.pca_init:
            encoder.projection = pca_head(encoder, pca_passages[: cfg.pca_passages], cfg.dim)
        elif cfg.dim:
            encoder.projection = torch.nn.Linear(encoder.model.config.hidden_size, cfg.dim,
                                                 bias=False).to(cfg.device)
        if cfg.head_layers:
            encoder.projection = widen_head(encoder.projection, cfg.head_layers,
                                            encoder.model.config.num_hidden_layers)
            encoder.config = replace(encoder.config, head_layers=tuple(cfg.head_layers))
            encoder.check_head_layers()
        if not cfg.dim:  # keep raw vectors: an identity head keeps one code path
            hidden = encoder.model.config.hidden_size
            encoder.projection = torch.nn.Linear(hidden, hidden, bias=False).to(cfg.device)
            encoder.projection.weight.data = torch.eye(hidden)
        encoder.dim = encoder.projection.out_features
    if cfg.pooled_weight is not None:
        encoder.config = replace(encoder.config, pooled_weight=cfg.pooled_weight)
    if cfg.pooled_rotation and encoder.pooled_rotation is None:
        encoder.pooled_rotation = random_rotation(encoder.model.config.hidden_size, cfg.seed)
    if cfg.query_idf > 0 and encoder.query_weights is None:
        encoder.query_weights = idf_weights(encoder.tokenizer, pca_passages,
                                            encoder.config.doc_max_tokens, cfg.query_idf)
    return TrainableColBERT(encoder)


def widen_head(head: torch.nn.Linear, layers: tuple[int, ...], last: int) -> torch.nn.Linear:
    """A head over the concatenated ``layers`` that starts as ``head`` (which reads the last
    layer): ``head``'s weights in the last layer's block, zeros in the others, so step 0
    scores as the one-layer head does and training decides what the lower layers add."""
    if last not in layers:
        raise InvalidInput(f"head_layers {list(layers)} must include the last layer ({last})")
    hidden = head.in_features
    wide = torch.nn.Linear(hidden * len(layers), head.out_features, bias=False)
    wide.weight.data.zero_()
    block = layers.index(last)
    wide.weight.data[:, block * hidden:(block + 1) * hidden] = head.weight.data
    return wide.to(head.weight.device)


def random_rotation(n: int, seed: int) -> torch.Tensor:
    """A seeded random orthogonal (n, n) matrix (Q of a Gaussian matrix's QR, signs fixed
    by R's diagonal, so the same seed gives the same rotation)."""
    gaussian = np.random.default_rng(seed).standard_normal((n, n))
    q, r = np.linalg.qr(gaussian)
    return torch.from_numpy(q * np.sign(np.diag(r))).float()


def _trainable_params(model: TrainableColBERT, cfg: TrainConfig) -> list[dict]:
    layers = model.backbone.encoder.layer
    n = len(layers) if cfg.train_layers < 0 else min(cfg.train_layers, len(layers))
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    backbone = [p for layer in layers[len(layers) - n:] for p in layer.parameters()]
    if cfg.train_layers < 0:
        backbone = list(model.backbone.parameters())
    for p in backbone:
        p.requires_grad_(True)
    groups = [{"params": list(model.head.parameters()), "lr": cfg.head_lr, "weight_decay": 0.0}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr, "weight_decay": cfg.weight_decay})
    return groups


def batch_loss(model: TrainableColBERT, batch: list[Example], cfg: TrainConfig) -> torch.Tensor:
    """Contrastive cross-entropy (+ distillation KL for the examples that carry scores)."""
    group = 1 + cfg.n_negatives if all(e.negatives for e in batch) else 1
    if group == 1 and not cfg.in_batch_negatives:
        raise InvalidInput("no negatives: give hard negatives or enable in_batch_negatives")
    passages = []
    for e in batch:  # [positive, neg_1..neg_n] per example; negatives cycled when too few
        passages += [e.positive] + [e.negatives[i % len(e.negatives)] for i in range(group - 1)]
    q, q_mask = model.encode_queries([e.query for e in batch])
    d, d_mask = model.encode_documents(passages)
    scores = maxsim(q, q_mask, d, d_mask)  # (B, B * group)
    rows = torch.arange(len(batch), device=scores.device)
    own = scores.gather(1, rows[:, None] * group + torch.arange(group, device=scores.device))
    if cfg.in_batch_negatives:
        loss = torch.nn.functional.cross_entropy(scores, rows * group)
    else:
        loss = torch.nn.functional.cross_entropy(own, torch.zeros_like(rows))
    scored = [i for i, e in enumerate(batch) if e.scores]
    if cfg.distill_weight > 0 and group > 1 and scored:
        # teacher scores follow [positive] + negatives, cycled like the negatives; the
        # KL covers the examples that carry them (a batch may mix scored and unscored)
        rows_t = [[e.scores[0]] + [e.scores[1 + j % len(e.negatives)] for j in range(group - 1)]
                  for e in (batch[i] for i in scored)]
        teacher = torch.tensor(rows_t, device=scores.device)
        target = torch.log_softmax(teacher / cfg.teacher_temperature, dim=-1)
        loss = loss + cfg.distill_weight * torch.nn.functional.kl_div(
            torch.log_softmax(own[scored], dim=-1), target, log_target=True,
            reduction="batchmean")
    return loss


def train(cfg: TrainConfig, examples: list[Example], out_dir: Path,
          pca_passages: list[str] | None = None,
          on_step: StepCallback | None = None, extra: dict | None = None,
          frozen_cache: dict | None = None) -> dict:
    """Train on ``examples`` and write a checkpoint to ``out_dir``; returns the stats.
    ``extra`` is recorded in ``training_config.json`` beside the config and stats."""
    model, stats = fit(cfg, examples, pca_passages, on_step, frozen_cache)
    save_checkpoint(model.encoder, Path(out_dir),
                    {"config": asdict(cfg), "stats": stats, **(extra or {})})
    return stats


def warm_cache(model: TrainableColBERT, examples: list[Example], batch_size: int = 32) -> None:
    """Fill the frozen-layer cache with every text of ``examples`` in length-sorted batches
    (random batches pad every text to the longest one of its batch)."""
    queries = sorted({e.query for e in examples}, key=len)
    passages = sorted({p for e in examples for p in (e.positive, *e.negatives)}, key=len)
    with torch.no_grad():
        for texts, encode in ((queries, model.encode_queries), (passages, model.encode_documents)):
            for i in range(0, len(texts), batch_size):
                encode(texts[i:i + batch_size])


def fit(cfg: TrainConfig, examples: list[Example], pca_passages: list[str] | None = None,
        on_step: StepCallback | None = None,
        frozen_cache: dict | None = None) -> tuple[TrainableColBERT, dict]:
    """The training loop; returns the trained model (eval mode) and its stats.

    ``frozen_cache``: a dict to keep the frozen layers' outputs in (filled in place), so
    runs over the same texts and ``train_layers`` encode them once."""
    if len(examples) < 2:
        raise InvalidInput("training needs at least 2 examples")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    pca_passages = pca_passages or [e.positive for e in examples]
    model = build_model(cfg, pca_passages)
    opt = torch.optim.AdamW(_trainable_params(model, cfg))
    if 0 <= cfg.train_layers < len(model.backbone.encoder.layer):
        model.cache_frozen_layers(cfg.train_layers)
        if frozen_cache is not None:
            model.cache = frozen_cache
        warm_cache(model, examples)
    base_lrs = [g["lr"] for g in opt.param_groups]
    order: list[int] = []
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))  # linear warmup, cosine decay
        decay = 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * warm * decay
        if len(order) < cfg.batch_size:  # epochs of shuffled examples
            order += random.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(min(cfg.batch_size, len(examples)))]
        loss = batch_loss(model, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                       cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            recent = losses[-cfg.log_every:]
            print(f"step {step + 1}/{cfg.steps} loss {sum(recent) / len(recent):.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
        if on_step and on_step(step + 1, cfg.steps, losses[-1]):
            break
    model.eval()
    stats = {"steps": len(losses), "seconds": round(time.perf_counter() - t0, 1),
             "first_loss": losses[0], "last_loss": losses[-1],
             "examples": len(examples), "device": cfg.device}
    model.cache = None
    return model, stats

