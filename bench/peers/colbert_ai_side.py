"""The colbert-ai half of ``bench/bench_colbert_ai.py``; runs in colbert-ai's own venv.

    CUDA_VISIBLE_DEVICES="" python colbert_ai_side.py index  WORKDIR
    CUDA_VISIBLE_DEVICES="" python colbert_ai_side.py search WORKDIR

WORKDIR (written by the memex side) holds ``colbert-ckpt/`` (the exported
checkpoint), ``collection.tsv`` and ``queries.json``; this script writes
``colbert-index.json`` / ``colbert-search.json`` and ``colbert-vectors.npz`` there.
It imports only colbert-ai, torch and numpy.

One change to colbert-ai's behaviour, so both engines index the same token
vectors: [SEP] joins its punctuation skiplist for documents (memex keeps no
special token but [CLS] in a document). Nothing else is patched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from colbert import Indexer, Searcher
from colbert.infra import ColBERTConfig, Run, RunConfig
from colbert.modeling import colbert as colbert_model

INDEX_NAME = "stdlib-subset"
_init = colbert_model.ColBERT.__init__


def _init_without_sep(self, *args, **kwargs) -> None:
    _init(self, *args, **kwargs)
    self.skiplist[self.raw_tokenizer.sep_token_id] = True


colbert_model.ColBERT.__init__ = _init_without_sep


def config(work: Path) -> ColBERTConfig:
    meta = json.loads((work / "colbert-ckpt" / "artifact.metadata").read_text())
    return ColBERTConfig(nbits=2, checkpoint=str(work / "colbert-ckpt"), root=str(work / "colbert"),
                         doc_maxlen=meta["doc_maxlen"], query_maxlen=meta["query_maxlen"],
                         avoid_fork_if_possible=True)


def load_extensions() -> float:
    """Seconds to load (first time ever: compile) colbert-ai's four C++ extensions."""
    from colbert.indexing.codecs.residual import ResidualCodec
    from colbert.search.index_storage import IndexScorer

    t = time.perf_counter()
    ResidualCodec.try_load_torch_extensions(False)
    IndexScorer.try_load_torch_extensions(False)
    colbert_model.ColBERT.try_load_torch_extensions(False)
    return time.perf_counter() - t


def index(work: Path) -> dict:
    ext_s = load_extensions()
    with Run().context(RunConfig(nranks=1, experiment="bench", root=str(work / "colbert"))):
        t = time.perf_counter()
        indexer = Indexer(checkpoint=str(work / "colbert-ckpt"), config=config(work))
        indexer.index(name=INDEX_NAME, collection=str(work / "collection.tsv"), overwrite=True)
        seconds = time.perf_counter() - t
        path = Path(indexer.get_index())
    files = {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}
    plan = json.loads((path / "plan.json").read_text())
    meta = json.loads((path / "metadata.json").read_text())
    return {"extensions_s": ext_s, "index_s": seconds, "index_bytes": sum(files.values()),
            "files": files, "n_centroids": plan["num_partitions"],
            "n_embeddings": meta["num_embeddings"], "index_path": str(path)}


def search(work: Path) -> dict:
    queries = json.loads((work / "queries.json").read_text())
    ext_s = load_extensions()
    with Run().context(RunConfig(nranks=1, experiment="bench", root=str(work / "colbert"))):
        t = time.perf_counter()
        searcher = Searcher(index=INDEX_NAME, config=config(work), verbose=0)
        load_s = time.perf_counter() - t
        searcher.search(queries[0], k=10)  # warm-up, not timed
        encode_s, search_s, total_s, hits = [], [], [], []
        for text in queries:
            t0 = time.perf_counter()
            q = searcher.encode(text)
            t1 = time.perf_counter()
            pids, _, scores = searcher.dense_search(q, k=10)
            t2 = time.perf_counter()
            encode_s.append(t1 - t0)
            search_s.append(t2 - t1)
            hits.append([[int(p), float(s)] for p, s in zip(pids, scores)])
        for text in queries:  # the public one-call path, encoding included
            t0 = time.perf_counter()
            searcher.search(text, k=10)
            total_s.append(time.perf_counter() - t0)
        query_vectors = searcher.encode(queries).numpy()  # (n, query_maxlen, dim)
        sample = [line.split("\t", 1)[1] for line in
                  (work / "collection.tsv").read_text().splitlines()[:50]]
        docs, doclens = searcher.checkpoint.docFromText(sample, bsize=16, keep_dims="flatten")[:2]
    np.savez(work / "colbert-vectors.npz", queries=query_vectors, doc_lens=np.array(doclens),
             docs=docs.float().numpy())
    return {"extensions_s": ext_s, "searcher_load_s": load_s, "encode_s": encode_s,
            "search_s": search_s, "total_s": total_s, "hits": hits,
            "threads": torch.get_num_threads()}


def main() -> None:
    mode, work = sys.argv[1], Path(sys.argv[2])
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "", "run with CUDA_VISIBLE_DEVICES=''"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    result = {"index": index, "search": search}[mode](work)
    (work / f"colbert-{mode}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
