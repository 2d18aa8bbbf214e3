import json

import numpy as np
import pytest

from indexer.errors import IndexCorrupt
from indexer.index import exact
from indexer.index.exact import ExactIndex

DIM = 16


def bags(rng, n, dim=DIM):
    out = []
    for _ in range(n):
        v = rng.standard_normal((rng.integers(1, 12), dim)).astype(np.float32)
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


def brute_force(live: dict, query, k):
    scores = {pid: float((query @ v.astype(np.float16).astype(np.float32).T).max(1).sum())
              for pid, v in live.items()}
    return sorted(scores, key=lambda p: -scores[p])[:k]


def test_search_equals_brute_force_across_commits_and_deletes(tmp_path):
    rng = np.random.default_rng(0)
    index = ExactIndex.create(tmp_path / "ix", DIM)
    live = {}
    for round_ in range(4):
        ids = np.arange(round_ * 50, round_ * 50 + 50)
        vecs = bags(rng, 50)
        gone = np.array(sorted(rng.choice(list(live), 10, replace=False))) if live else np.array([])
        index.commit(ids, vecs, gone)
        live.update(zip(ids.tolist(), vecs))
        for g in gone.tolist():
            live.pop(g)
    index = ExactIndex.open(tmp_path / "ix")
    assert index.passage_ids().tolist() == sorted(live)
    for q in bags(rng, 5):
        got = [h.passage_id for h in index.search([q], 10)[0]]
        assert got == brute_force(live, q, 10)


def test_replacing_an_id_keeps_one_copy(tmp_path):
    rng = np.random.default_rng(1)
    index = ExactIndex.create(tmp_path / "ix", DIM)
    a, b = bags(rng, 2)
    index.commit(np.array([7]), [a], np.array([]))
    index.commit(np.array([7]), [b], np.array([]))
    assert index.passage_ids().tolist() == [7]
    assert np.allclose(index.vectors_of(7), b, atol=1e-3)


def test_allowed_ids_restrict_results(tmp_path):
    rng = np.random.default_rng(2)
    index = ExactIndex.create(tmp_path / "ix", DIM)
    index.commit(np.arange(20), bags(rng, 20), np.array([]))
    hits = index.search(bags(rng, 1), 10, allowed_ids=np.array([3, 5]))[0]
    assert sorted(h.passage_id for h in hits) == [3, 5]


def test_failed_commit_leaves_previous_state(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    index = ExactIndex.create(tmp_path / "ix", DIM)
    index.commit(np.arange(10), bags(rng, 10), np.array([]))
    q = bags(rng, 1)[0]
    before = index.search([q], 5)[0]

    def crash(path, obj, **kw):
        raise OSError("disk died during the manifest swap")

    monkeypatch.setattr(exact.durable, "write_json", crash)
    with pytest.raises(OSError):
        index.commit(np.arange(10, 20), bags(rng, 10), np.arange(5))
    reopened = ExactIndex.open(tmp_path / "ix")
    assert reopened.passage_ids().tolist() == list(range(10))
    assert reopened.search([q], 5)[0] == before


def test_corrupt_files_are_reported(tmp_path):
    rng = np.random.default_rng(4)
    index = ExactIndex.create(tmp_path / "ix", DIM)
    index.commit(np.arange(3), bags(rng, 3), np.array([]))
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    seg = manifest["segments"][0]["name"]
    (tmp_path / "ix" / f"{seg}.offsets.npy").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt):
        ExactIndex.open(tmp_path / "ix")
    (tmp_path / "ix" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorrupt):
        ExactIndex.open(tmp_path / "ix")
