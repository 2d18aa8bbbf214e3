"""On a real local Ray cluster (a head and a worker, separate processes): a distributed sync
equals a local one, a 3-shard corpus served by actors equals the unsharded corpus, and a
shard actor killed mid-query gives a 503-mapped ``Unavailable``, then recovers.

One cluster for the module (starting one costs ~20 s on this box); each node has 1 CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.config import current
from indexer.corpus import Corpora
from indexer.distributed.cluster import connect, disconnect
from indexer.distributed.sharded import ShardedIndex
from indexer.errors import Unavailable

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'memex[ray]')")

from indexer.distributed.encode_pool import RayEncodePool  # noqa: E402 - after the skip
from tests.helpers.ray_cluster import LocalRayCluster  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    saved = {k: os.environ.get(k)
             for k in ("MEMEX_RAY_ADDRESS", "MEMEX_RAY_SHARD_CPUS", "MEMEX_RAY_TIMEOUT_S")}
    with LocalRayCluster(workers=1, cpus_per_node=1) as c:
        os.environ["MEMEX_RAY_ADDRESS"] = c.address
        os.environ["MEMEX_RAY_SHARD_CPUS"] = "0"  # the 2 CPUs go to the 2 encoder actors
        os.environ["MEMEX_RAY_TIMEOUT_S"] = "300"  # slow shared cores: only a death fails a search
        try:
            yield c
        finally:
            disconnect()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for doc in sorted(DOCS.glob("*.md")):
        shutil.copy(doc, root / doc.name)
    return root


@pytest.fixture(scope="module")
def pool(cluster: LocalRayCluster) -> RayEncodePool:
    connect(cluster.address, current())
    cluster.wait_for_nodes()  # before the pool counts the cluster's CPUs
    return RayEncodePool(cluster.address, current())


def synced(home: Path, tree: Path, encoder, pool=None, shards: int = 1) -> Corpora:
    corpora = Corpora(home, encoder=encoder, encode_pool=pool, index_shards=shards)
    corpora.create("docs", str(tree))
    corpora.sync("docs")
    return corpora


@pytest.fixture(scope="module")
def local(tmp_path_factory, tree: Path, encoder) -> Corpora:
    return synced(tmp_path_factory.mktemp("local"), tree, encoder)


@pytest.fixture(scope="module")
def queries(local: Corpora) -> list[str]:
    _, texts, _ = local.passages("docs")
    picked = texts[:: max(1, len(texts) // 100)][:100]
    return [" ".join(t.split()[3:9]) or "index" for t in picked]


def top10(corpora: Corpora, queries: list[str]) -> list[list[tuple[str, int, float]]]:
    return [[(h.document_id, h.passage_id, h.score) for h in hits]
            for hits in corpora.search(["docs"], queries, k=10, mode="colbert")]


def same(a: list[list[tuple[str, int, float]]], b: list[list[tuple[str, int, float]]]) -> None:
    assert [[h[:2] for h in r] for r in a] == [[h[:2] for h in r] for r in b]
    np.testing.assert_allclose([[h[2] for h in r] for r in a], [[h[2] for h in r] for r in b],
                               rtol=0, atol=1e-4)


def test_distributed_sync_equals_a_local_sync(tmp_path: Path, tree: Path, encoder, pool,
                                              local: Corpora, queries: list[str],
                                              cluster: LocalRayCluster) -> None:
    remote = synced(tmp_path / "home", tree, encoder, pool)
    assert len(pool._pools[encoder.fingerprint]) == 2  # one actor per node's CPU
    pids = {ray.get(a.__ray_call__.remote(lambda self: os.getpid()))
            for a in pool._pools[encoder.fingerprint]}
    assert len(pids) == 2 and os.getpid() not in pids
    assert remote.info("docs").passages == local.info("docs").passages >= 129  # > one chunk
    same(top10(remote, queries), top10(local, queries))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, tree: Path, encoder, pool) -> Corpora:
    return synced(tmp_path_factory.mktemp("sharded"), tree, encoder, pool, shards=3)


def test_three_shard_actors_answer_as_the_unsharded_corpus(sharded: Corpora, local: Corpora,
                                                           queries: list[str]) -> None:
    index = sharded.index("docs")
    assert isinstance(index, ShardedIndex) and index.remote is not None
    assert len(queries) == 100
    same(top10(sharded, queries), top10(local, queries))


def test_a_killed_shard_actor_fails_the_query_then_recovers(sharded: Corpora, queries: list[str],
                                                            encoder) -> None:
    index = sharded.index("docs")
    vectors = encoder.encode_queries(queries)
    before = index.search(vectors, 10)
    victim = index.remote.actors[1]
    pid = ray.get(victim.pid.remote())
    outcome: list[object] = []

    def long_search() -> None:  # thousands of queries: the shards work for seconds
        try:
            outcome.append(index.search(vectors * 10, 10))
        except Unavailable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=long_search)
    thread.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    thread.join()
    assert isinstance(outcome[0], Unavailable), "the search did not see the shard die"
    assert outcome[0].details["reason"] in ("ActorDiedError", "ActorUnavailableError")
    assert outcome[0].details["shard"] == 1 and outcome[0].details["retry_after_s"] > 0
    deadline = time.monotonic() + 120
    while True:  # Ray restarts the actor, which reloads its shard from storage
        try:
            after = index.search(vectors, 10)
            break
        except Unavailable:
            assert time.monotonic() < deadline, "the shard actor did not come back"
            time.sleep(1)
    assert ray.get(victim.pid.remote()) != pid
    assert after == before
