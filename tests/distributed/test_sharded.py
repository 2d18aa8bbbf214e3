"""Sharded corpora without Ray: routing by document, and the same answers as one index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.corpus import Corpora, DocumentInput
from indexer.distributed.sharded import ShardedIndex, shard_of
from indexer.errors import InvalidInput, Unavailable
from indexer.index import open_index
from indexer.index.plaid import PlaidIndex
from indexer.index.plaid.codec import n_centroids_for
from service.api.errors import status_of
from tests.conftest import free_port
from tests.helpers.ray_cluster import imports_ray
from tests.index.plaid_data import corpus, queries

DIM = 64


def build(tmp: Path, bags: list[np.ndarray], ids: np.ndarray, keys: list[str]):
    flat = PlaidIndex.create(tmp / "one", DIM)
    flat.commit(ids, bags, np.empty(0, np.int64))
    sharded = ShardedIndex.create(tmp / "three", DIM, shards=3)
    sharded.commit(ids, bags, np.empty(0, np.int64), doc_keys=keys)
    return flat, sharded


def test_three_shards_answer_as_one_index(tmp_path: Path) -> None:
    """Shards share the unsharded index's codec, so a passage scores the same in both; each
    shard keeps its own ``candidates`` best, so with budgets that cover the corpus the
    answers are identical, and with the default ones the shards find a superset."""
    bags = corpus(450, DIM, seed=3)
    ids = np.arange(10, 10 + len(bags), dtype=np.int64)
    keys = [f"doc-{i // 3}" for i in range(len(bags))]  # three passages a document
    flat, sharded = build(tmp_path, bags, ids, keys)
    reopened = open_index(tmp_path / "three")
    assert isinstance(reopened, ShardedIndex) and reopened.shards == 3
    qs = queries(bags, 60, seed=4)
    n_tokens = sum(len(b) for b in bags)
    full = {"nprobe": n_centroids_for(n_tokens), "candidates": len(bags), "decompress": len(bags)}
    expected = flat.search(qs, 10, **full)
    for index in (sharded, reopened):
        got = index.search(qs, 10, **full)
        assert [[h.passage_id for h in r] for r in got] == [[h.passage_id for h in r] for r in expected]
        np.testing.assert_allclose([[h.score for h in r] for r in got],
                                   [[h.score for h in r] for r in expected], rtol=0, atol=1e-5)
    scores = {}
    for one, three in zip(flat.search(qs, 10), sharded.search(qs, 10)):
        assert all(a.score <= b.score + 1e-5 for a, b in zip(one, three))  # never worse
        scores.update({h.passage_id: h.score for h in three})
        # what the unsharded search found above the sharded 10th is found, same score
        for h in one:
            if h.score > three[-1].score + 1e-5:
                assert abs(scores[h.passage_id] - h.score) < 1e-5
    # every document's passages sit in one shard, the one its key hashes to
    for i in range(3):
        held = set(PlaidIndex.open(tmp_path / "three" / f"shard-{i:03d}").passage_ids().tolist())
        assert held == {int(p) for p, k in zip(ids, keys) if shard_of(k, 3) == i}
    assert np.array_equal(reopened.passage_ids(), ids)


def test_updates_and_deletes_reach_the_right_shard(tmp_path: Path) -> None:
    bags = corpus(200, DIM, seed=5)
    ids = np.arange(len(bags), dtype=np.int64)
    keys = [f"d{i}" for i in range(len(bags))]
    flat, sharded = build(tmp_path, bags, ids, keys)
    new = corpus(20, DIM, seed=6)
    new_ids = np.arange(1000, 1020, dtype=np.int64)
    for index in (flat, sharded):
        kw = {"doc_keys": keys[:20]} if index is sharded else {}
        index.commit(new_ids, new, np.arange(0, 40, dtype=np.int64), **kw)  # docs 0-19 replaced
    assert np.array_equal(sharded.passage_ids(), flat.passage_ids())
    qs = queries(new + bags[40:], 30, seed=7)
    assert [[h.passage_id for h in r] for r in sharded.search(qs, 5)] == \
        [[h.passage_id for h in r] for r in flat.search(qs, 5)]
    with pytest.raises(InvalidInput, match="document of each added passage"):
        sharded.commit(new_ids, new, np.empty(0, np.int64))


def test_sharded_corpus_syncs_and_searches(tmp_path: Path, encoder) -> None:
    docs = [DocumentInput(f"notes/{i}.md", f"# Note {i}\n\nThe {w} of item {i} is kept here.\n")
            for i, w in enumerate(["colour", "weight", "price", "origin", "size", "owner"] * 4)]
    results = []
    for shards in (1, 3):
        corpora = Corpora(tmp_path / f"home{shards}", encoder=encoder, index_shards=shards)
        corpora.create("c")
        corpora.upsert_documents("c", docs)
        corpora.delete_documents("c", ["notes/0.md"])
        results.append(corpora.search(["c"], ["the price of an item"], k=10, mode="colbert")[0])
    assert [(h.document_id, round(h.score, 4)) for h in results[0]] == \
        [(h.document_id, round(h.score, 4)) for h in results[1]]
    assert isinstance(corpora.index("c"), ShardedIndex)


def test_a_plain_install_never_imports_ray(tmp_path: Path, sample_dir: Path) -> None:
    """Without a Ray address, opening, indexing and searching (through the same wiring as
    the CLI and the server) leave ``ray`` unimported."""
    script = (
        "import sys\n"
        "from service.runtime import open_corpora\n"
        "from service.settings import Settings\n"
        f"c = open_corpora(Settings(home={str(tmp_path / 'home')!r}))\n"
        f"c.create('t', {str(sample_dir)!r})\n"
        "c.sync('t')\n"
        "assert c.search(['t'], ['circle area'])[0]\n"
    )
    assert not imports_ray(script)


def test_unavailable_is_a_503() -> None:
    assert status_of(Unavailable("shard 1 of 3 is restarting", shard=1)) == 503


def test_index_ray_option_wires_an_encode_pool(tmp_path: Path, monkeypatch) -> None:
    """``memex index --ray ADDRESS`` gives the sync an encode pool for that cluster (connected
    at the first encode, so nothing is imported or contacted before)."""
    from indexer.distributed.encode_pool import RayEncodePool
    from service.cli.common import local_corpora
    from service.settings import get_settings

    monkeypatch.setenv("MEMEX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEMEX_RAY_ADDRESS", raising=False)
    get_settings.cache_clear()  # the CLI reads its settings once per process
    try:
        assert local_corpora().encode_pool is None
        pool = local_corpora(ray_address="10.0.0.1:6379").encode_pool
        assert isinstance(pool, RayEncodePool) and pool.address == "10.0.0.1:6379"
        monkeypatch.setenv("MEMEX_RAY_ADDRESS", "10.0.0.2:6379")
        get_settings.cache_clear()
        assert local_corpora().encode_pool.address == "10.0.0.2:6379"
    finally:
        get_settings.cache_clear()


def test_an_unreachable_cluster_is_a_quick_503() -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'memex[ray]')")
    from indexer.config import current
    from indexer.distributed.cluster import connect

    with pytest.raises(Unavailable, match="cannot reach the Ray cluster"):
        connect(f"127.0.0.1:{free_port()}", current())
