"""A BM25 rebuild of one corpus does not hold up hybrid searches of another."""

from __future__ import annotations

import threading

from indexer.bm25 import BM25Index
from indexer.corpus import DocumentInput


def test_search_of_b_completes_while_the_bm25_rebuild_of_a_is_blocked(corpora, monkeypatch):
    corpora.create("a")
    corpora.create("b")
    corpora.upsert_documents("a", [DocumentInput("a1", "apples grow on trees in orchards")])
    corpora.upsert_documents("b", [DocumentInput("b1", "volcanoes erupt lava and ash")])
    corpora.search(["b"], ["lava"])  # b's BM25 is built and cached at b's version

    # Corpus a's next rebuild stalls until released: a big corpus's rebuild, slowed down.
    building, release = threading.Event(), threading.Event()
    real_build = BM25Index.build.__func__

    def slow_build(cls, ids, texts):
        if any("orchards" in t for t in texts):
            building.set()
            assert release.wait(60)
        return real_build(cls, ids, texts)

    monkeypatch.setattr(BM25Index, "build", classmethod(slow_build))
    corpora.upsert_documents("a", [DocumentInput("a2", "pears also grow in orchards")])
    results: dict[str, list] = {}
    a_search = threading.Thread(target=lambda: results.update(a=corpora.search(["a"], ["pears"])))
    a_search.start()
    try:
        assert building.wait(30)
        b_search = threading.Thread(target=lambda: results.update(b=corpora.search(["b"], ["lava"])))
        b_search.start()
        b_search.join(20)
        assert not b_search.is_alive(), "a search of b waited for a's BM25 rebuild"
        assert results["b"][0][0].document_id == "b1"
        assert "a" not in results  # a's own search waits for its rebuild
    finally:
        release.set()
        a_search.join(60)
    assert results["a"][0][0].document_id == "a2"
