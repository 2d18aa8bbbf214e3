"""Token vectors of a stdlib-codesearch subset, encoded once and cached.

Encoding all 21k windows takes ~30 min on the shared 2-core machine, so the
PLAID benchmark uses a seeded subset: whole target files of a sample of the
queries plus a sample of other files. Passages are the data README's windows
(30 lines, stride 15, file path prepended); vectors are all-MiniLM-L6-v2's raw
L2-normalised 384-d token vectors (queries <= 32 tokens, passages <= 256), as
the README's reference rows. Cache layout under ``bench/.cache/stdlib-vecs/``:
``passages.jsonl`` (id, path, start, end), ``doc.f16`` [n_tokens, 384],
``doc_offsets.npy`` [n + 1], ``queries.jsonl``, ``query.f16``, ``query_offsets.npy``.

    python -m bench.stdlib_vectors --passages 6000
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

from bench import data
from bench.data import CACHE, stdlib, stdlib_queries

OUT = CACHE / "stdlib-vecs"


def windows(path: str) -> list[dict]:
    """The data README's windows of one file of the stdlib tree."""
    return data.windows(stdlib() / "tree", path)


def choose_subset(n_passages: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Target files of sampled queries (~75% of passages) plus other files."""
    rng = random.Random(seed)
    queries = stdlib_queries()
    targets = sorted({q["path"] for q in queries})
    tree = stdlib() / "tree"
    others = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.py"))
    others = [p for p in others if p not in set(targets)]
    rng.shuffle(targets)
    rng.shuffle(others)
    passages: list[dict] = []
    chosen: set[str] = set()
    for pool, budget in ((targets, int(n_passages * 0.75)), (others, n_passages)):
        for path in pool:
            w = windows(path)
            if len(passages) + len(w) > budget:
                continue
            passages += w
            chosen.add(path)
    kept = [q for q in queries if q["path"] in chosen]
    for i, p in enumerate(passages):
        p["id"] = i
    return passages, kept


def encode(texts: list[str], max_len: int, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Raw token vectors of ``texts``: float16 [total_tokens, 384] and offsets [len + 1]."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from indexer.models import resolve_model_path

    path = resolve_model_path("bundled:minilm")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    order = np.argsort([-len(t) for t in texts])  # length-sorted batches pad less
    bags: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    t0 = time.time()
    with torch.inference_mode():
        for b in range(0, len(texts), batch):
            idx = order[b : b + batch]
            enc = tok([texts[i] for i in idx], truncation=True, max_length=max_len,
                      padding=True, return_tensors="pt")
            h = model(**enc).last_hidden_state
            h = torch.nn.functional.normalize(h, dim=-1)
            for row, i in enumerate(idx):
                n = int(enc["attention_mask"][row].sum())
                bags[i] = h[row, :n].numpy().astype(np.float16)
            if b // batch % 20 == 0:
                print(f"  {b + len(idx)}/{len(texts)} in {time.time() - t0:.0f}s", flush=True)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in bags])
    return np.concatenate(bags), offsets


def load() -> dict:
    """The cached subset: passages, queries, and their token bags as float32 arrays."""
    def bags(name: str) -> list[np.ndarray]:
        flat = np.fromfile(OUT / f"{name}.f16", dtype=np.float16).reshape(-1, 384)
        off = np.load(OUT / f"{name}_offsets.npy")
        return [flat[off[i] : off[i + 1]].astype(np.float32) for i in range(len(off) - 1)]

    passages = [json.loads(line) for line in (OUT / "passages.jsonl").open()]
    queries = [json.loads(line) for line in (OUT / "queries.jsonl").open()]
    return {"passages": passages, "queries": queries, "doc": bags("doc"), "query": bags("query")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=6000)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    passages, queries = choose_subset(args.passages)
    print(f"{len(passages)} passages, {len(queries)} queries")
    qv, qo = encode([q["text"] for q in queries], max_len=32)
    qv.tofile(OUT / "query.f16")
    np.save(OUT / "query_offsets.npy", qo)
    with (OUT / "queries.jsonl").open("w") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
    dv, do = encode([p["text"] for p in passages], max_len=256)
    dv.tofile(OUT / "doc.f16")
    np.save(OUT / "doc_offsets.npy", do)
    with (OUT / "passages.jsonl").open("w") as f:  # written last: marks the cache complete
        for p in passages:
            f.write(json.dumps({k: p[k] for k in ("id", "path", "start", "end")}) + "\n")


if __name__ == "__main__":
    main()
