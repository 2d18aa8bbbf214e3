"""Constants shared by the cartridge tests (imported by conftest and tests)."""

from bench.data import shared_dir
from cartridges.config import CartridgeConfig

CORPUS = shared_dir() / "data" / "faq-general" / "corpus.md"
TEXT = (CORPUS.read_text() if CORPUS.exists() else "")[:2500] or (
    "Python is an interpreted, interactive, object-oriented programming language. " * 40)

# the smallest run that still exercises every stage; CPU-only and shared, so keep it tiny
TINY = CartridgeConfig(p=8, num_samples=5, holdout=2, chunk_tokens=40, question_tokens=10,
                       answer_tokens=14, steps=3, batch_size=2, checkpoint_every=1)
