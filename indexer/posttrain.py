"""Post-training a corpus's retriever with no labels.

1. sample passages of the corpus;
2. the bundled LM (SmolLM2-135M-Instruct) writes a search query for each;
3. hard negatives: the current retriever's top passages for that query that
   come from other documents (windows of the same file overlap the positive);
4. a teacher scores positive and negatives: the LM's mean log-likelihood of the
   query given each passage (query likelihood); training distils it (KL);
5. train (``indexer/training``), save a new encoder version under
   ``<home>/encoders/``, re-index the corpus with it and switch atomically
   (``indexer/reindex.py``).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from indexer.corpus import Corpora
from indexer.errors import InvalidInput
from indexer.reindex import reindex
from indexer.training import Example, TrainConfig, train

Progress = Callable[[str, int, int], None]

PROMPT = ("Here is a passage from the file {path}:\n\n{passage}\n\n"
          "Write one short search query, a single line describing what this code or text "
          "does, that a developer would type to find it. Reply with the query only, "
          "in under 12 words.")


@dataclass
class PostTrainConfig:
    passages: int = 64  # sampled passages, one synthetic query each
    passage_chars: int = 800  # passage text shown to the LM (keeps generation fast)
    max_query_tokens: int = 20
    lm_batch: int = 8
    mine_depth: int = 20  # negatives come from the current top-k
    teacher: bool = True  # LM query likelihood scores for distillation
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=150, batch_size=8, n_negatives=3, train_layers=0, head_lr=1e-3))


class QueryWriter:
    """The bundled causal LM as query generator and query-likelihood teacher."""

    def __init__(self, device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from indexer.models import causal_lm_dir

        path = causal_lm_dir()
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
        self.device = device

    def _prompt(self, path: str, passage: str, chars: int) -> str:
        msg = PROMPT.format(path=path, passage=passage[:chars])
        return self.tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                            add_generation_prompt=True) + "Query: "

    @torch.inference_mode()
    def write(self, items: list[tuple[str, str]], chars: int, max_tokens: int) -> list[str]:
        """A query per (path, passage), greedy."""
        prompts = [self._prompt(p, t, chars) for p, t in items]
        batch = self.tok(prompts, return_tensors="pt", padding=True).to(self.device)
        out = self.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False,
                                  pad_token_id=self.tok.pad_token_id)
        texts = self.tok.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                      skip_special_tokens=True)
        return [t.strip().splitlines()[0].strip(' "`') if t.strip() else "" for t in texts]

    @torch.inference_mode()
    def likelihood(self, query: str, passages: list[tuple[str, str]], chars: int) -> list[float]:
        """Mean log p(query tokens | prompt with passage), one per (path, passage)."""
        prompts = [self._prompt(p, t, chars) for p, t in passages]
        q_ids = self.tok(query, add_special_tokens=False)["input_ids"]
        self.tok.padding_side = "right"
        batch = self.tok([pr + query for pr in prompts], return_tensors="pt", padding=True)
        self.tok.padding_side = "left"
        lengths = batch["attention_mask"].sum(1)
        logp = torch.log_softmax(self.model(**batch.to(self.device)).logits.float(), -1)
        scores = []
        for i, n in enumerate(lengths.tolist()):
            targets = batch["input_ids"][i, n - len(q_ids):n]
            pred = logp[i, n - len(q_ids) - 1:n - 1]
            scores.append(pred.gather(1, targets[:, None]).mean().item())
        return scores


def _split_path(text: str) -> tuple[str, str]:
    """Passage texts start with their path line (``Corpora._passage_text``)."""
    path, _, body = text.partition("\n")
    return path, body


def make_examples(corpora: Corpora, name: str, cfg: PostTrainConfig,
                  progress: Progress | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> list[Example]:
    ids, texts, _ = corpora.passages(name)
    if len(ids) < 4:
        raise InvalidInput(f"corpus {name!r} has too few passages to post-train on")
    rng = random.Random(cfg.seed)
    sample = rng.sample(range(len(ids)), min(cfg.passages, len(ids)))
    writer = QueryWriter()
    queries: list[str] = []
    for start in range(0, len(sample), cfg.lm_batch):
        if should_stop():
            raise InterruptedError("stopped")
        chunk = [_split_path(texts[i]) for i in sample[start:start + cfg.lm_batch]]
        queries += writer.write(chunk, cfg.passage_chars, cfg.max_query_tokens)
        if progress:
            progress("write queries", len(queries), len(sample))
    by_id = dict(zip(ids, texts))
    examples = []
    for n, (i, query) in enumerate(zip(sample, queries)):
        if not query:
            continue
        hits = corpora.search([name], [query], cfg.mine_depth, mode="colbert")[0]
        doc = next((h.document_id for h in hits if h.passage_id == ids[i]), None)
        negs = [by_id[h.passage_id] for h in hits if h.passage_id != ids[i]
                and h.document_id != doc][: cfg.train.n_negatives]
        if not negs:
            continue
        scores = None
        if cfg.teacher:
            scores = writer.likelihood(query, [_split_path(t) for t in [texts[i]] + negs],
                                       cfg.passage_chars)
        examples.append(Example(query, texts[i], negs, scores))
        if progress:
            progress("mine and score", n + 1, len(sample))
    return examples


def post_train(corpora: Corpora, name: str, cfg: PostTrainConfig | None = None,
               progress: Progress | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Generate, mine, score, train, re-index, switch; returns what was done."""
    cfg = cfg or PostTrainConfig()
    t0 = time.perf_counter()
    with corpora.sessions() as s:
        base = corpora._row(s, name).encoder
    examples = make_examples(corpora, name, cfg, progress, should_stop)
    t_data = time.perf_counter() - t0
    cfg.train.base = base
    passages = corpora.passages(name)[1]
    out = corpora.home / "encoders" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

    def on_step(step: int, total: int, loss: float) -> bool:
        if progress:
            progress("train", step, total)
        return should_stop()

    stats = train(cfg.train, examples, out,
                  random.Random(cfg.seed).sample(passages, min(len(passages),
                                                               cfg.train.pca_passages)),
                  on_step)
    if should_stop():
        raise InterruptedError("stopped before the re-index")
    switched = reindex(corpora, name, str(out), progress)
    return {"encoder": str(out), "examples": len(examples), "data_seconds": round(t_data, 1),
            "training": stats, "reindex": switched, "config": asdict(cfg),
            "sample_queries": [e.query for e in examples[:5]]}
