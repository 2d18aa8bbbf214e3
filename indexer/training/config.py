"""The training configuration, saved as ``training_config.json`` in each checkpoint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    # -- model ------------------------------------------------------------
    base: str = "bundled:minilm"  # encoder to start from: a bundled name or a checkpoint dir
    dim: int = 128  # output dim of the linear head; 0 keeps the backbone's raw vectors
    pca_init: bool = True  # initialise a new head by PCA of corpus token vectors (step 0 works)
    pca_passages: int = 256  # passages whose token vectors feed the PCA
    train_layers: int = 2  # top transformer layers trained (-1: all, 0: head only); CPU-friendly
    query_max_tokens: int = 32
    doc_max_tokens: int = 256
    markers: bool = False  # ColBERT's [Q]/[D] markers; off keeps step 0 equal to the base
    query_augmentation: bool = False  # [MASK] padding of queries
    skip_punctuation: bool | None = None  # drop punctuation document tokens; None: as the base
    head_layers: tuple[int, ...] = ()  # hidden states a new head reads, concatenated
    #                                    (EncoderConfig.head_layers); empty: the last one
    query_idf: float = 0.0  # > 0: weigh query tokens by idf ** query_idf over the training
    #                         passages (indexer/training/idf.py), if the base has no weights
    pooled_weight: float | None = None  # the pooled cosine's share in hybrid search; None: the base's
    pooled_rotation: bool = False  # give the encoder a seeded random rotation of its pooled
    #                                vectors (indexer/encoding/encoder.py), if the base has none
    # -- optimisation -----------------------------------------------------
    steps: int = 200
    batch_size: int = 8  # queries per step; each brings 1 positive + n_negatives passages
    n_negatives: int = 3  # hard negatives per query (from the example, cycled if fewer)
    in_batch_negatives: bool = True  # score each query against every passage of the batch
    lr: float = 2e-5  # backbone layers
    head_lr: float = 1e-4  # the linear head
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # -- distillation -----------------------------------------------------
    distill_weight: float = 1.0  # weight of KL(teacher || student) when examples carry scores
    teacher_temperature: float = 1.0  # teacher scores are divided by it before the softmax
    # -- bookkeeping ------------------------------------------------------
    seed: int = 0
    log_every: int = 10
    device: str = "cpu"
