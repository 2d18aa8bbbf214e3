"""Re-indexing with a new encoder switches atomically: searches never see a mix."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from indexer.bm25 import DEFAULT_BM25_WEIGHT
from indexer.corpus import Corpora
from indexer.encoding.encoder import ColBERTEncoder
from indexer.errors import InvalidInput
from indexer.posttrain import FUSION_GRID, MIN_HELD_OUT, calibrate_fusion
from indexer.reindex import reindex
from indexer.training.checkpoint import save_checkpoint
from indexer.training.model import pca_head
from tests.conftest import SAMPLE_FILES

QUERIES = ["area of a circle", "send an HTTP request over a socket", "bake bread"]


def _new_version(encoder: ColBERTEncoder, out: Path) -> str:
    """A second encoder version: the backbone with a 64-d PCA head."""
    version = ColBERTEncoder.load("bundled:minilm", runtime="torch")  # the raw backbone
    version.projection = pca_head(version, list(SAMPLE_FILES.values()) * 4, 64)
    version.dim = 64
    return str(save_checkpoint(version, out))


def _snapshot(corpora: Corpora) -> tuple:
    return tuple(tuple((h.passage_id, round(h.score, 3)) for h in hits)
                 for hits in corpora.search(["c"], QUERIES, 5, mode="colbert"))


def test_search_during_reindex_never_mixes_versions(corpora: Corpora, sample_dir: Path,
                                                    encoder: ColBERTEncoder,
                                                    tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEMEX_ENCODER_RUNTIME", "torch")  # no ONNX export of the new version
    corpora.create("c", str(sample_dir))
    corpora.sync("c")
    checkpoint = _new_version(encoder, tmp_path / "v2")
    old = _snapshot(corpora)
    # What the new version answers, computed on a separate copy of the corpus.
    other = Corpora(tmp_path / "other", encoder=encoder)
    other.create("c", str(sample_dir))
    other.sync("c")
    reindex(other, "c", checkpoint)
    new = _snapshot(other)
    assert old != new

    seen, during, errors = [], [], []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                seen.append(_snapshot(corpora))
            except Exception as exc:
                errors.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        result = reindex(corpora, "c", checkpoint,
                         progress=lambda *_: during.append(_snapshot(corpora)))
    finally:
        stop.set()
        thread.join()
    seen.append(_snapshot(corpora))
    assert not errors
    assert during and all(s == old for s in during)  # mid re-index: still the old version
    assert all(s in (old, new) for s in seen)
    assert seen[-1] == new
    info = corpora.info("c")
    assert info.encoder == checkpoint and info.encoder_fingerprint == result["fingerprint"]
    # a sync after the switch encodes with the corpus's new encoder
    (sample_dir / "extra.py").write_text("def volume_of_sphere(r):\n    return 4 / 3 * 3.14 * r ** 3\n")
    assert corpora.sync("c").passages_added == 1
    assert corpora.search(["c"], ["sphere volume"], 1, mode="colbert")[0][0].path == "extra.py"


def test_modes(corpora: Corpora, sample_dir: Path) -> None:
    corpora.create("c", str(sample_dir))
    corpora.sync("c")
    for mode in ("colbert", "bm25", "hybrid"):
        hits = corpora.search(["c"], ["knead the dough"], 2, mode=mode)[0]
        assert hits[0].path == "docs/cooking.md", mode
    bm25 = corpora.search(["c"], ["zzzz unknownword"], 3, mode="bm25")[0]
    assert bm25 == []


def test_hybrid_weight_spans_colbert_to_bm25_and_is_calibrated(corpora: Corpora,
                                                                sample_dir: Path,
                                                                tmp_path: Path) -> None:
    # BM25's weight alone spans ColBERT to BM25 for an encoder without a pooled term
    plain = Corpora(tmp_path / "plain", encoder=ColBERTEncoder.load("bundled:minilm"))
    plain.create("c", str(sample_dir))
    plain.sync("c")
    assert plain.info("c").bm25_weight == DEFAULT_BM25_WEIGHT
    queries = ["knead the dough", "area of a circle", "http request"]

    def order(mode: str) -> list[list[int]]:
        return [[h.passage_id for h in hits] for hits in plain.search(["c"], queries, 3,
                                                                         mode=mode)]
    plain.set_bm25_weight("c", 0.0)
    assert order("hybrid") == order("colbert")
    plain.set_bm25_weight("c", 1.0)
    assert [r[:len(b)] for r, b in zip(order("hybrid"), order("bm25"))] == order("bm25")
    with pytest.raises(InvalidInput):
        plain.set_bm25_weight("c", 1.5)

    # calibration, with the default encoder's pooled term in every fused ranking
    corpora.create("c", str(sample_dir))
    corpora.sync("c")
    ids, texts, _ = corpora.passages("c")
    held_out = [(text.splitlines()[1], pid) for pid, text in zip(ids, texts)
                if len(text.splitlines()) > 1][:MIN_HELD_OUT]
    result = calibrate_fusion(corpora, "c", held_out * (MIN_HELD_OUT // len(held_out) + 1))
    assert set(result["mrr_by_weight"]) == set(FUSION_GRID) | {DEFAULT_BM25_WEIGHT}
    assert corpora.info("c").bm25_weight == result["chosen"]
    mrr = result["mrr_by_weight"]
    assert mrr[result["best"]] == max(mrr.values())
    # the prior is kept unless the best weight is significantly better
    assert result["chosen"] == (result["best"] if result["significant"] else DEFAULT_BM25_WEIGHT)


def test_retriever_route_needs_a_corpus(live_server: httpx.Client) -> None:
    r = live_server.post("/v1/corpora/missing/retriever", json={})
    assert r.status_code == 404
    live_server.post("/v1/corpora", json={"name": "x", "documents": [{"id": "a", "text": "b"}]})
    r = live_server.post("/v1/corpora/x/retriever", json={"passages": 0, "mined": 0})
    assert r.status_code == 422 and "both be 0" in r.text
    assert live_server.post("/v1/corpora/x/search",
                            json={"query": "a", "mode": "nope"}).status_code == 422
