"""Post-training a corpus's retriever with no labels.

1. queries: the bundled LM (SmolLM2-135M-Instruct) writes a search query for
   each of a sample of passages, and the corpus's own docstrings give more
   (``indexer/mined_queries.py``: free, and far more numerous than what the LM
   writes in the same time on a CPU);
2. (the LM's positives are their passages; a docstring's is its code's passage
   with the docstring cut out);
3. hard negatives: the current retriever's top passages for that query that
   come from other documents (windows of the same file overlap the positive);
4. a teacher scores the LM queries' positive and negatives: the LM's mean
   log-likelihood of the query given each passage (query likelihood); training
   distils it (KL) next to the contrastive loss;
5. train (``indexer/training``), save a new encoder version under
   ``<home>/encoders/``, re-index the corpus with it and switch atomically
   (``indexer/reindex.py``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sqlalchemy import select

from indexer.bm25 import FUSION_DEPTH, fuse
from indexer.corpus import Corpora
from indexer.corpus.search import pooled_scores
from indexer.database import Document, Passage
from indexer.errors import InvalidInput
from indexer.mined_queries import PassageSpan, docstring_queries
from indexer.progress import Cancelled, Progress
from indexer.reindex import reindex
from indexer.training import Example, TrainConfig, train

# Asked for "a search query", the 135M model mostly writes generic questions ("How do I
# write a Python function ..."); asked to summarise, it names what the code touches,
# which is what a search for that code contains. The reply is primed with "It ".
PROMPT = "```\n# {path}\n{passage}\n```\nSummarize what this code does in one short sentence."
REPLY_PREFIX = "It "
MIN_WORDS = 3
HOLDOUT_EVERY = 4  # every 4th LM query calibrates hybrid search instead of training
MIN_HELD_OUT = 8
FUSION_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass
class PostTrainConfig:
    passages: int = 64  # sampled passages, one LM-written query each
    mined: int = 2000  # docstring queries mined from the corpus, at most (0: none)
    passage_chars: int = 600  # passage text shown to the LM (prefill dominates its cost)
    max_query_tokens: int = 20
    lm_batch: int = 8
    mine_depth: int = 20  # negatives come from the current top-k
    teacher: bool = True  # LM query likelihood scores for distillation (LM queries)
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=300, batch_size=8, n_negatives=3, train_layers=2, head_lr=1e-3))


class QueryWriter:
    """The bundled causal LM as query generator and query-likelihood teacher."""

    def __init__(self, device: str = "cpu") -> None:
        from indexer.models import DEFAULT_LM, load_lm

        self.model, self.tok = load_lm(DEFAULT_LM, device)  # shared with cartridges

    def _prompt(self, path: str, passage: str, chars: int) -> str:
        msg = PROMPT.format(path=path, passage=passage[:chars])
        return self.tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                            add_generation_prompt=True) + REPLY_PREFIX

    @torch.inference_mode()
    def write(self, items: list[tuple[str, str]], chars: int, max_tokens: int) -> list[str]:
        """A query per (path, passage), greedy; "" where the reply is too short to use."""
        prompts = [self._prompt(p, t, chars) for p, t in items]
        batch = self.tok(prompts, return_tensors="pt", padding=True,
                         padding_side="left").to(self.model.device)
        out = self.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False,
                                  repetition_penalty=1.2,
                                  pad_token_id=self.tok.pad_token_id)
        texts = self.tok.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                      skip_special_tokens=True)
        first = [t.strip().splitlines()[0].strip(' "`') if t.strip() else "" for t in texts]
        return [t if len(t.split()) >= MIN_WORDS else "" for t in first]

    @torch.inference_mode()
    def likelihood(self, query: str, passages: list[tuple[str, str]], chars: int) -> list[float]:
        """Mean log p(query tokens | prompt with passage), one per (path, passage)."""
        prompts = [self._prompt(p, t, chars) for p, t in passages]
        q_ids = self.tok(query, add_special_tokens=False)["input_ids"]
        batch = self.tok([pr + query for pr in prompts], return_tensors="pt", padding=True,
                         padding_side="right")
        lengths = batch["attention_mask"].sum(1)
        logp = torch.log_softmax(self.model(**batch.to(self.model.device)).logits.float(), -1)
        scores = []
        for i, n in enumerate(lengths.tolist()):
            targets = batch["input_ids"][i, n - len(q_ids):n]
            pred = logp[i, n - len(q_ids) - 1:n - 1]
            scores.append(pred.gather(1, targets[:, None]).mean().item())
        return scores


def split_path(text: str) -> tuple[str, str]:
    """Passage texts start with their path line (``indexer.corpus.passage_text``)."""
    path, _, body = text.partition("\n")
    return path, body


def mined_queries(corpora: Corpora, name: str, limit: int,
                  seed: int) -> list[tuple[str, int, str]]:
    """(query, passage id, positive text with its path line) from the corpus's docstrings."""
    with corpora.sessions() as s:
        row = corpora.row(s, name)
        spans: dict[int, list[PassageSpan]] = {}
        for pid, doc, start, end in s.execute(
                select(Passage.id, Passage.document_id, Passage.start_line, Passage.end_line)
                .where(Passage.corpus_id == row.id)):
            spans.setdefault(doc, []).append(PassageSpan(pid, start, end))
        docs = s.execute(select(Document.id, Document.path, Document.doc_id, Document.text)
                         .where(Document.corpus_id == row.id,
                                Document.path.like("%.py"))).all()
    found = [(m.query, m.passage_id, f"{path or doc_id}\n{m.positive}")
             for key, path, doc_id, text in docs
             for m in docstring_queries(text, spans.get(key, []))]
    random.Random(seed).shuffle(found)
    return found[:limit]


def make_examples(corpora: Corpora, name: str, cfg: PostTrainConfig,
                  progress: Progress | None = None,
                  should_stop: Callable[[], bool] = lambda: False
                  ) -> tuple[list[Example], list[tuple[str, int]], dict]:
    """Training examples; held-out LM queries with their passage id (to calibrate hybrid
    search); how many examples came from each source, with a few of each."""
    ids, texts, _ = corpora.passages(name)
    if len(ids) < 4:
        raise InvalidInput(f"corpus {name!r} has too few passages to post-train on")
    rng = random.Random(cfg.seed)
    sample = rng.sample(range(len(ids)), min(cfg.passages, len(ids)))
    by_id = dict(zip(ids, texts))
    if progress:
        progress("docstring queries", 0, 1)
    # (query, positive passage id, positive text, from the LM)
    pairs = [(q, pid, text, False) for q, pid, text in
             mined_queries(corpora, name, cfg.mined, cfg.seed)] if cfg.mined else []
    if progress:
        progress("docstring queries", 1, 1)
        progress("write queries", 0, len(sample))  # the LM loads first: tens of seconds on CPU
    writer = QueryWriter() if sample else None
    for start in range(0, len(sample), cfg.lm_batch):
        if should_stop():
            raise Cancelled("stopped")
        chunk = sample[start:start + cfg.lm_batch]
        written = writer.write([split_path(texts[i]) for i in chunk], cfg.passage_chars,
                               cfg.max_query_tokens)
        pairs += [(q, ids[i], texts[i], True) for q, i in zip(written, chunk) if q]
        if progress:
            progress("write queries", start + len(chunk), len(sample))
    # Every HOLDOUT_EVERY-th LM query is kept out of training to calibrate hybrid search:
    # docstring queries cannot serve, their passages still hold the docstring verbatim.
    lm = [p for p in pairs if p[3]]
    held_out = [(q, pid) for q, pid, _, _ in lm[::HOLDOUT_EVERY]]
    pairs = [p for p in pairs if not p[3]] + [p for i, p in enumerate(lm) if i % HOLDOUT_EVERY]
    examples, sources = [], {"lm": [], "docstrings": []}
    if progress:
        progress("mine and score", 0, len(pairs))
    for start in range(0, len(pairs), 32):
        if should_stop():
            raise Cancelled("stopped")
        batch = pairs[start:start + 32]
        found = corpora.search([name], [q for q, *_ in batch], cfg.mine_depth, mode="colbert")
        for (query, pid, positive, from_lm), hits in zip(batch, found):
            path = by_id[pid].partition("\n")[0]  # windows of the same file overlap it
            negs = [by_id[h.passage_id] for h in hits if h.passage_id in by_id
                    and by_id[h.passage_id].partition("\n")[0] != path][: cfg.train.n_negatives]
            if not negs:
                continue
            scores = None
            if cfg.teacher and from_lm:
                scores = writer.likelihood(query, [split_path(t) for t in [positive] + negs],
                                           cfg.passage_chars)
            examples.append(Example(query, positive, negs, scores))
            sources["lm" if from_lm else "docstrings"].append(query)
        if progress:
            progress("mine and score", start + len(batch), len(pairs))
    if len(examples) < 2:
        raise InvalidInput(f"corpus {name!r} gave too few training queries "
                           f"({len(examples)}); sample more passages")
    return examples, held_out, {k: {"count": len(v), "examples": v[:5]}
                                for k, v in sources.items()}


def calibrate_fusion(corpora: Corpora, name: str, held_out: list[tuple[str, int]]) -> dict:
    """BM25's weight in hybrid search, from held-out queries with their own passages.

    The corpus keeps its current weight unless another weight of ``FUSION_GRID`` ranks
    the held-out queries' passages better by more than two standard errors of the
    per-query difference in reciprocal rank: a few dozen noisy LM queries are weak
    evidence, and a weight fitted to their noise would be worse than the prior.
    """
    current = corpora.info(name).bm25_weight
    if len(held_out) < MIN_HELD_OUT:
        return {"queries": len(held_out), "chosen": current}
    texts = [q for q, _ in held_out]
    dense, sparse = [], []
    for start in range(0, len(texts), 32):
        batch = texts[start:start + 32]
        dense += [[(h.passage_id, h.score) for h in r] for r in
                  corpora.search([name], batch, FUSION_DEPTH, mode="colbert")]
        sparse += [[(h.passage_id, h.score) for h in r] for r in
                   corpora.search([name], batch, FUSION_DEPTH, mode="bm25")]

    with corpora.sessions() as s:  # hybrid's pooled term, as search adds it
        row = corpora.row(s, name)
        encoder = corpora.encoder_for(row.encoder, row.encoder_fingerprint)
    pooled_weight = encoder.config.pooled_weight
    pooled = pooled_scores(corpora, encoder.encode_queries_and_pooled(texts)[1], dense, sparse) \
        if pooled_weight > 0 else [None] * len(texts)

    def reciprocal_ranks(w: float) -> np.ndarray:
        ranks = [[p for p, _ in fuse(d, s, w, 10, pool, pooled_weight)]
                 for d, s, pool in zip(dense, sparse, pooled)]
        return np.array([1 / (r.index(pid) + 1) if pid in r else 0.0
                         for r, (_, pid) in zip(ranks, held_out)])

    rr = {w: reciprocal_ranks(w) for w in sorted({*FUSION_GRID, current})}
    best = max(rr, key=lambda w: (rr[w].mean(), -w))
    gain = rr[best] - rr[current]
    significant = gain.mean() > 2 * gain.std(ddof=1) / np.sqrt(len(gain)) if best != current \
        else False
    chosen = best if significant else current
    corpora.set_bm25_weight(name, chosen)
    return {"queries": len(held_out), "mrr_by_weight": {w: float(v.mean()) for w, v in rr.items()},
            "best": best, "significant": bool(significant), "chosen": chosen}


def post_train(corpora: Corpora, name: str, cfg: PostTrainConfig | None = None,
               progress: Progress | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Generate, mine, score, train, re-index, switch; returns what was done."""
    cfg = cfg or PostTrainConfig()
    t0 = time.perf_counter()
    with corpora.sessions() as s:
        base = corpora.row(s, name).encoder
    examples, held_out, sources = make_examples(corpora, name, cfg, progress, should_stop)
    t_data = time.perf_counter() - t0
    cfg.train.base = base
    passages = corpora.passages(name)[1]
    out = corpora.home / "encoders" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

    def on_step(step: int, total: int, loss: float) -> bool:
        if progress:
            progress("train", step, total)
        return should_stop()

    if progress:
        progress("train", 0, cfg.train.steps)
    stats = train(cfg.train, examples, out,
                  random.Random(cfg.seed).sample(passages, min(len(passages),
                                                               cfg.train.pca_passages)),
                  on_step)
    if should_stop():
        raise Cancelled("stopped before the re-index")
    switched = reindex(corpora, name, str(out), progress)
    if progress:
        progress("calibrate fusion", 0, 1)
    fusion = calibrate_fusion(corpora, name, held_out)
    if progress:
        progress("calibrate fusion", 1, 1)
    return {"encoder": str(out), "examples": len(examples), "data_seconds": round(t_data, 1),
            "training": stats, "reindex": switched, "config": asdict(cfg),
            "queries": sources, "fusion": fusion}
