"""Settings of a cartridge run: one dataclass, saved with every checkpoint and cartridge.

Defaults follow Eyuboglu et al. (2025) where the paper gives them (top-k 20, Adam at
2e-2 on the cache, a frozen attention-sink token, init from the corpus's first p tokens)
and are scaled down elsewhere so a run finishes on a laptop CPU with the bundled
135M model; raise ``num_samples`` and ``steps`` on a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from indexer.errors import InvalidInput
from indexer.models import DEFAULT_LM

INITS = ("first", "spread", "summary")
MAX_AUTO_P = 256  # the longest cartridge sized from the corpus
COMPRESSION = 12  # a sized cartridge holds at most 1/COMPRESSION of the corpus's tokens


def auto_p(corpus_tokens: int) -> int:
    """Cartridge length for a corpus when none is given: 256 tokens, or fewer for a short
    corpus so the cartridge stays >= ``COMPRESSION`` times smaller than the corpus's KV cache
    (multiples of 16, at least 16, never more than the corpus).

    >>> [auto_p(n) for n in (12_000, 3_712, 2_224, 300, 10)]
    [256, 256, 176, 16, 10]
    """
    return min(corpus_tokens, max(16, min(MAX_AUTO_P, corpus_tokens // COMPRESSION // 16 * 16)))


@dataclass(frozen=True)
class CartridgeConfig:
    model: str = DEFAULT_LM  # bundled alias or local Hugging Face directory
    p: int | None = None  # cartridge length in tokens (per layer: [kv_heads, p, head_dim]); None: auto_p
    frozen_tokens: int = 1  # leading tokens kept fixed: the attention sink
    init: str = "first"  # initial KV: the corpus's first p tokens, p "spread" over it, or an LM "summary"
    # self-study (synthesis)
    num_samples: int = 96  # synthesized conversations, held-out ones included
    holdout: int = 8  # conversations kept out of training to measure the loss
    chunk_tokens: int = 512  # corpus chunk the teacher sees
    questions_per_chunk: int = 4  # conversations sharing one chunk (its KV cache is computed once)
    recall_share: float = 1.0  # share of conversations that recall the chunk's own text (synthesis.py)
    question_tokens: int = 48  # max new tokens for the generated question
    answer_tokens: int = 96  # max new tokens for the generated answer
    top_k: int = 20  # teacher log-probabilities kept per answer token
    temperature: float = 0.7  # sampling temperature for questions and answers
    # context distillation (training)
    steps: int = 60
    batch_size: int = 4
    lr: float = 2e-2
    checkpoint_every: int = 10  # steps between resumable checkpoints
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present
    # wall-clock budget of a whole run; when set, num_samples and steps are planned from a
    # measured probe (cartridges/budget.py) and training stops in time
    budget_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.p is not None and self.p <= 0:
            raise InvalidInput(f"p must be positive, got {self.p}")
        if self.frozen_tokens < 0 or (self.p is not None and self.frozen_tokens >= self.p):
            raise InvalidInput(f"frozen_tokens must be in [0, p), got {self.frozen_tokens}")
        for name in ("num_samples", "chunk_tokens", "question_tokens", "answer_tokens",
                     "top_k", "steps", "batch_size", "checkpoint_every", "questions_per_chunk"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.holdout < self.num_samples:
            raise InvalidInput(f"holdout must be in [0, num_samples), got {self.holdout}")
        if self.init not in INITS:
            raise InvalidInput(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.budget_seconds is not None and self.budget_seconds <= 0:
            raise InvalidInput(f"budget_seconds must be positive, got {self.budget_seconds}")
        if not 0.0 <= self.recall_share <= 1.0:
            raise InvalidInput(f"recall_share must be in [0, 1], got {self.recall_share}")
        if self.lr <= 0 or self.temperature < 0:
            raise InvalidInput("lr must be positive and temperature non-negative")

    def sized(self, corpus_tokens: int) -> CartridgeConfig:
        """This config with ``p`` decided (``auto_p`` of the corpus when it was left open)."""
        return self if self.p is not None else replace(self, p=auto_p(corpus_tokens))

    @property
    def length(self) -> int:
        """``p`` of a sized config (``sized`` first: an open ``p`` is a caller's mistake)."""
        if self.p is None:
            raise ValueError("p is decided by sized(corpus_tokens) first")
        return self.p

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CartridgeConfig:
        """Build from a dict, ignoring unknown keys (files written by later versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
