"""The default encoder, ``bundled:memex-colbert``: MiniLM with a ColBERT head trained once.

memex never ships weights, so this encoder is rebuilt where it runs, by a fixed,
seeded recipe: ``memex models`` builds it (and the first use does, if that was
skipped) into the model cache as ``memex-colbert-v4/``. The backbone is the
bundled all-MiniLM-L6-v2, frozen; only a 64-d linear head trains, on docstring
pairs mined from the packages memex installs (``indexer/training/default_data.py``).
The head reads the last layer and layer 3 (``EncoderConfig.head_layers``): the lower
layer keeps more of each identifier's pieces, and costs nothing the backbone does not
compute anyway.
Documents keep their punctuation tokens (no skiplist): code structure MaxSim uses.
Query tokens are weighted by their IDF over the training passages (``idf.py``).
With a frozen backbone each text is encoded once, so the build costs one backbone
pass over the pairs (minutes on 2 cores) and a few hundred cheap head steps.
Recipe, data and figures: ``docs/retriever.md``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from indexer import durable
from indexer.training.config import TrainConfig
from indexer.training.data import Example

log = logging.getLogger(__name__)

NAME = "bundled:memex-colbert"
DIRECTORY = "memex-colbert-v4"  # bump with any change to the recipe or the data
# Earlier builds, newest first (v1: 128-d, skiplist; v2: no query weights, no pooled term;
# v3: the last layer only): corpora indexed with one keep searching with it until
# re-indexed (``earlier_build``).
EARLIER = ("memex-colbert-v3", "memex-colbert-v2", "memex-colbert-v1")
PER_PACKAGE = 100  # pairs at most per package: torch or sympy alone would swamp the rest
PER_FILE = 3  # pairs at most per file: more files, more kinds of code
RECIPE = TrainConfig(
    base="bundled:minilm", dim=64, head_layers=(3, 6), skip_punctuation=False, pca_init=True,
    pca_passages=256, train_layers=0, steps=300, batch_size=32, n_negatives=0, in_batch_negatives=True,
    head_lr=1e-3, warmup_steps=30, seed=0, log_every=0, query_idf=0.5, pooled_weight=0.5,
    pooled_rotation=True,
)


def examples(per_package: int = PER_PACKAGE, per_file: int = PER_FILE, seed: int = RECIPE.seed,
             packages: tuple[str, ...] | None = None) -> tuple[list[Example], dict]:
    """The training pairs and what identifies them (package versions, count, digest)."""
    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.training.default_data import PACKAGES, digest, mine, passage_chunker

    encoder = ColBERTEncoder.load(RECIPE.base, runtime="torch", precision="fp32")
    pairs, versions = mine(per_package, per_file, seed, passage_chunker(encoder),
                           packages or PACKAGES)
    data = {"pairs": len(pairs), "digest": digest(pairs), "per_package": per_package,
            "per_file": per_file, "packages": versions}
    return [Example(query=p.query, positive=p.positive) for p in pairs], data


def build(out_dir: Path, cfg: TrainConfig = RECIPE, per_package: int = PER_PACKAGE,
          packages: tuple[str, ...] | None = None, frozen_cache: dict | None = None,
          mined: tuple[list[Example], dict] | None = None) -> dict:
    """Mine the pairs, train the head, write a memex checkpoint to ``out_dir``.
    The defaults are the shipped recipe; tests build small ones. ``frozen_cache``:
    backbone outputs already computed for these texts (``train.fit``); ``mined``:
    what ``examples`` returned for these settings."""
    from indexer.training.loop import train

    train_examples, data = mined or examples(per_package, seed=cfg.seed, packages=packages)
    stats = train(cfg, train_examples, out_dir, extra={"data": data, "recipe": NAME},
                  frozen_cache=frozen_cache)
    return {"config": asdict(cfg), "stats": stats, "data": data}


def earlier_build(cache: Path, fingerprint: str):
    """The encoder of an earlier build still in ``cache`` whose fingerprint is
    ``fingerprint`` (what a corpus indexed before an upgrade recorded), or None. Only the
    matching build is loaded (a load may export and validate an ONNX graph)."""
    from indexer.encoding.encoder import ColBERTEncoder, fingerprint_of, read_config

    for name in EARLIER:
        path = cache / name
        if ((path / "colbert_linear.safetensors").exists()
                and fingerprint_of(path, read_config(path)) == fingerprint):
            return ColBERTEncoder.load(str(path))
    return None


def ensure(cache: Path) -> Path:
    """The built encoder's directory in ``cache``, built first if it is not there.
    A second process waits for the first one's build rather than starting its own."""
    target = cache / DIRECTORY
    if (target / "colbert_linear.safetensors").exists():
        return target
    with durable.exclusive_lock(cache / ".memex-colbert-build"):
        if not target.exists():
            log.warning("building the default encoder %s in %s (once, a few minutes)",
                        NAME, target)
            build(target)
    return target
