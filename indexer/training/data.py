"""Training examples and their JSONL format.

One JSON object per line::

    {"query": "read a config file",
     "positive": "def read_config(path): ...",
     "negatives": ["def write_config(...", "..."],      # optional, hard negatives
     "scores": [4.1, 0.3, -2.0]}                         # optional, teacher scores

``scores`` (optional) has one teacher score per passage in the order
``[positive] + negatives``; higher is more relevant. With scores, training adds
a KL term that pulls the student's distribution over these passages towards
the teacher's (distillation); without, it is contrastive only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer.errors import InvalidInput


@dataclass
class Example:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    scores: list[float] | None = None

    def __post_init__(self) -> None:
        if not self.query.strip() or not self.positive.strip():
            raise InvalidInput("an example needs a non-empty query and positive")
        if self.scores is not None and len(self.scores) != 1 + len(self.negatives):
            raise InvalidInput("scores must have one entry per passage: positive + negatives")


def read_jsonl(path: Path) -> list[Example]:
    examples = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                examples.append(Example(row["query"], row["positive"], row.get("negatives", []),
                                        row.get("scores")))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InvalidInput(f"{path}:{n}: not a training example ({exc})") from exc
    return examples


def write_jsonl(path: Path, examples: list[Example]) -> None:
    with open(path, "w") as f:
        for e in examples:
            row = {k: v for k, v in asdict(e).items() if v is not None}
            f.write(json.dumps(row) + "\n")
