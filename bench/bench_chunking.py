"""Chunking cost of a sync on the stdlib tree: the previous per-window counting against today's.

    python -m bench.bench_chunking [--tree bench/.cache/stdlib/tree]

Walks the tree as ``memex index`` does, chunks every file with the encoder's token
budget both ways (``tests/test_chunk_counts.reference_chunks`` is the previous code),
checks the passages are identical, and prints both times and the ratio. Also times
the encoder-side tokenization of all passages (``ColBERTEncoder.tokenize_batch`` in
batches of 128) for scale: it is part of ``encode_documents``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.data import CACHE
from indexer.corpus import DocumentInput, chunk_document, passage_text
from indexer.encoding.encoder import ColBERTEncoder
from indexer.sources import walk_directory
from tests.test_chunk_counts import reference_chunks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", type=Path, default=CACHE / "stdlib/tree")
    args = ap.parse_args()
    encoder = ColBERTEncoder.load(runtime="torch", precision="fp32")
    docs = [DocumentInput(f.rel_path, f.text, path=f.rel_path) for f in walk_directory(args.tree).files]

    t = time.perf_counter()
    old = []
    for d in docs:
        header = encoder.tokenizer([d.path], add_special_tokens=False, verbose=False)["input_ids"][0]
        budget = max(16, encoder.config.doc_max_tokens - len(header) - 3)
        old.append(reference_chunks(d.text, budget, encoder.tokenizer))
    t_old = time.perf_counter() - t

    t = time.perf_counter()
    headers = encoder.count_tokens([d.path for d in docs])
    new = [chunk_document(d, encoder, n) for d, n in zip(docs, headers)]
    t_new = time.perf_counter() - t
    n = sum(len(p) for p in new)
    print(f"{len(docs)} files, {n} passages, identical: {old == new}")
    print(f"chunking: previous {t_old:.2f} s, now {t_new:.2f} s ({t_old / t_new:.1f}x)")

    texts = [passage_text(d, p.text) for d, ps in zip(docs, new) for p in ps]
    t = time.perf_counter()
    for s in range(0, len(texts), 128):
        encoder.tokenize_batch(texts[s : s + 128], encoder.config.doc_max_tokens, encoder.config.doc_marker)
    print(f"encoder-side tokenization of the passages: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
