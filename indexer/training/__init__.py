"""ColBERT training: config, data, model, loop, checkpoint formats.

``train(config, examples)`` fine-tunes a ``ColBERTEncoder`` and writes a
checkpoint directory that ``ColBERTEncoder.load(path)`` loads like any other
(see ``indexer/training/checkpoint.py`` and ``docs/retriever.md``).
"""

from indexer.training.config import TrainConfig
from indexer.training.data import Example, read_jsonl
from indexer.training.loop import train

__all__ = ["Example", "TrainConfig", "read_jsonl", "train"]
