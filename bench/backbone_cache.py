"""MiniLM's outputs for a benchmark set, encoded once and cached in ``bench/.cache/``.

    python -m bench.backbone_cache code|faq|stdlib [--subset N [--dense]]

Encoding is the expensive part of every retrieval benchmark on this CPU, and a
head-only trained encoder shares the untrained backbone: its vectors are
``normalize(W · v)`` of the backbone's token vectors ``v`` (normalising first changes
nothing, since ``W`` is linear). So one pass of the bare backbone gives, per passage
and query:

- the ColBERT tokens ``memex index`` keeps (untrained default, no markers: all of a
  query's tokens; a passage's minus special tokens but [CLS]), L2-normalised, float16,
  with a mask of the punctuation tokens the skiplist drops (``load(skip_punctuation=)``
  applies it or not): raw MaxSim of the untrained MiniLM, and any head's;
- the sentence-transformers embedding of all-MiniLM-L6-v2 (mean over all tokens,
  256 tokens at most, normalised): the single-vector baseline.

Passages are ``bench.bench_bm25.passages`` (as ``memex index`` cuts them, path line
first); ``--subset N`` takes ``bench_bm25.subset``'s whole files (seed 0), ``--dense``
``dense_subset``'s.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data import CACHE
from bench.metrics import Query

SINGLE_VECTOR_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


@dataclass
class Vectors:
    """Cached backbone outputs of one set's passages and queries (float32 in memory)."""

    docs: list[np.ndarray]  # per passage: [kept tokens, 384], unit rows
    doc_mean: np.ndarray  # [passages, 384], unit rows (single-vector)
    queries: list[np.ndarray]
    query_mean: np.ndarray


def split_bags(a: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(a.astype(np.float32), np.cumsum(lengths)[:-1])


@torch.inference_mode()
def encode(texts: list[str], max_tokens: int, query: bool,
           batch_size: int = 32, backbone: str = "bundled:minilm",
           ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """(kept token vectors per text, mean-pooled vector per text, per text the mask of its
    kept tokens that are punctuation) with the bundled MiniLM or another backbone."""
    from indexer.encoding.encoder import PUNCTUATION, ColBERTEncoder

    enc = ColBERTEncoder.load(backbone, runtime="torch", precision="fp32")
    tok, model = enc.tokenizer, enc.model
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    punct = torch.tensor([i for i, t in enumerate(vocab) if t and all(c in PUNCTUATION for c in t)])
    special = torch.tensor([i for i in tok.all_special_ids if i != tok.cls_token_id])
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    tokens: list[np.ndarray | None] = [None] * len(texts)
    puncts: list[np.ndarray | None] = [None] * len(texts)
    means = np.zeros((len(texts), model.config.hidden_size), np.float32)
    t0 = time.perf_counter()
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        batch = tok([texts[i] for i in idx], padding=True, truncation=True,
                    max_length=max(max_tokens, SINGLE_VECTOR_TOKENS), return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        means[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        if max_tokens < SINGLE_VECTOR_TOKENS:  # queries: ColBERT sees only the first max_tokens
            batch = tok([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_tokens, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
        keep = batch["attention_mask"].bool()
        if not query:
            keep &= ~torch.isin(batch["input_ids"], special)
        is_punct = torch.isin(batch["input_ids"], punct)
        unit = torch.nn.functional.normalize(hidden, dim=-1)
        for row, i in enumerate(idx):
            tokens[i] = unit[row][keep[row]].numpy().astype(np.float16)
            puncts[i] = is_punct[row][keep[row]].numpy()
        if (b // batch_size) % 20 == 0:
            print(f"  {b + len(idx)}/{len(texts)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return tokens, means, puncts  # type: ignore[return-value]


def load(name: str, texts: list[str], queries: list[str],
         skip_punctuation: bool = True, backbone: str | None = None) -> Vectors:
    """The set's cached vectors, encoded on first use (``name`` keys the cache file);
    passages without their punctuation tokens unless ``skip_punctuation`` is False.
    ``backbone``: another model than the bundled MiniLM (a Hugging Face directory)."""
    from indexer.encoding.encoder import EncoderConfig

    tag = f"-{Path(backbone).name}" if backbone else ""
    cache = CACHE / f"backbone-{name}{tag}.npz"
    if not cache.exists():
        cfg = EncoderConfig()
        model = backbone or "bundled:minilm"
        t = time.perf_counter()
        docs, doc_mean, punct = encode(texts, cfg.doc_max_tokens, query=False, backbone=model)
        print(f"encoded {len(texts)} passages in {time.perf_counter() - t:.0f} s", flush=True)
        qs, q_mean, _ = encode(queries, cfg.query_max_tokens, query=True, backbone=model)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, doc=np.concatenate(docs), doc_len=[len(d) for d in docs], doc_mean=doc_mean,
                 doc_punct=np.concatenate(punct), query=np.concatenate(qs),
                 query_len=[len(q) for q in qs], query_mean=q_mean)
        tmp.rename(cache)
    z = np.load(cache)
    if len(z["doc_len"]) != len(texts) or len(z["query_len"]) != len(queries):
        raise SystemExit(f"{cache} holds another set: delete it")
    if "doc_punct" not in z:
        raise SystemExit(f"{cache} predates the punctuation mask: delete it")
    docs = split_bags(z["doc"], z["doc_len"])
    if skip_punctuation:
        punct = np.split(z["doc_punct"], np.cumsum(z["doc_len"])[:-1])
        docs = [d[~p] for d, p in zip(docs, punct)]
    return Vectors(docs, z["doc_mean"], split_bags(z["query"], z["query_len"]), z["query_mean"])


def dense_subset(ps: list[dict[str, Any]], queries: list[Query], n: int,
                 seed: int = 0) -> tuple[list[int], list[Query]]:
    """Like ``bench_bm25.subset`` (whole files, ~75% of ``n`` from target files), but the
    target files with the most queries per passage first: about 3x the queries per passage
    encoded, for a CPU that cannot encode the whole set."""
    import random

    from bench.bench_bm25 import files_of, pack_files

    by_file = files_of(ps)
    per_file: dict[str, int] = {}
    for q in queries:
        per_file[q["path"]] = per_file.get(q["path"], 0) + 1
    targets = sorted(per_file.keys() & by_file.keys(),
                     key=lambda f: (-per_file[f] / len(by_file[f]), f))
    others = sorted(by_file.keys() - per_file.keys())
    random.Random(seed).shuffle(others)
    return pack_files(ps, queries, by_file, targets, others, n)


def load_set(name: str, subset: int | None = None,
             dense: bool = False) -> tuple[list[dict[str, Any]], list[Query], str]:
    """Passages and queries of a set (optionally a subset: ``bench_bm25.subset`` or
    ``dense_subset``), and its cache key."""
    from bench import bench_bm25

    ps, queries = bench_bm25.load_set(name)
    if subset and dense:
        rows, queries = dense_subset(ps, queries, subset)
        return [ps[i] for i in rows], queries, f"{name}-dense-{subset}"
    if subset:
        rows, queries = bench_bm25.subset(ps, queries, subset)
        ps = [ps[i] for i in rows]
        return ps, queries, f"{name}-{subset}"
    return ps, queries, name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("set", choices=["stdlib", "code", "faq", "readme"])
    ap.add_argument("--subset", type=int, help="about N passages of whole files (seed 0)")
    ap.add_argument("--dense", action="store_true", help="the subset: query-dense files first")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ps, queries, key = load_set(args.set, args.subset, args.dense)
    v = load(key, [p["text"] for p in ps], [q["text"] for q in queries])
    print(f"{key}: {len(v.docs)} passages, {sum(len(d) for d in v.docs)} tokens, "
          f"{len(v.queries)} queries")


if __name__ == "__main__":
    main()
