"""The benchmarks' shared measuring tools: the metrics every script reports and the oracle
the engines are compared with. A wrong oracle or MRR would make every bench number wrong."""

from __future__ import annotations

import doctest

import numpy as np

from bench import metrics, oracle
from bench.data import ROOT, shared_dir, windows
from indexer.index.exact import ExactIndex


def test_doctests() -> None:
    for module in (metrics, oracle):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_oracle_ranks_as_the_exact_engine(tmp_path) -> None:
    rng = np.random.default_rng(3)

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, 16)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    bags = [unit(int(rng.integers(1, 9))) for _ in range(60)]
    queries = [unit(4) for _ in range(5)]
    index = ExactIndex.create(tmp_path / "ix", 16)
    index.commit(np.arange(60), bags, np.array([], dtype=np.int64))
    stored = [b.astype(np.float16).astype(np.float32) for b in bags]  # what the engine keeps
    for got, want in zip(oracle.top_k(queries, stored, 10), index.search(queries, 10)):
        assert [h.passage_id for h in got] == [h.passage_id for h in want]
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-4)


def test_metrics_count_only_overlapping_spans_of_the_target_file() -> None:
    q = {"path": "a.py", "start_line": 31, "end_line": 40}
    ranked = [[("a.py", 1, 30), ("b.py", 31, 40), ("a.py", 16, 45)],  # first hit at rank 3
              [("a.py", 41, 70)] * 10 + [("a.py", 31, 40)]]  # the hit is 11th: not counted
    m = metrics.metrics(ranked, [q, q])
    assert m["MRR@10"] == 1 / 3 / 2 and m["R@10"] == 0.5
    assert np.isclose(m["nDCG@10"], 1 / np.log2(4) / 2)
    assert metrics.overlap([[1, 2, 3]], [[3, 4, 1]]) == 2 / 3


def test_windows_cover_every_line_once_aligned(tmp_path) -> None:
    (tmp_path / "f.py").write_text("\n".join(f"line {i}" for i in range(1, 47)))
    got = [(w["start"], w["end"]) for w in windows(tmp_path, "f.py")]
    assert got == [(1, 30), (16, 45), (31, 46)]
    assert windows(tmp_path, "f.py")[0]["text"].startswith("f.py\nline 1\n")


def test_shared_data_is_found_beside_the_checkout(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MEMEX_SHARED", str(tmp_path))
    assert shared_dir() == tmp_path
    monkeypatch.delenv("MEMEX_SHARED")
    found = shared_dir()
    assert found.name == "shared" and ROOT.is_relative_to(found.parent)
