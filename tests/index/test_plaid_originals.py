"""Originals kept as int8 (``keep_vectors="int8"``): half the bytes of float16, read back
close to what was committed, stable through merges, and checked when read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer.errors import IndexCorrupt, InvalidInput
from indexer.index.plaid import Codec, MergeAll, NoMerge, PlaidIndex
from indexer.index.plaid.originals import Int8Rows, quantize
from tests.index.plaid_data import corpus

NONE = np.empty(0, dtype=np.int64)


@pytest.fixture(scope="module")
def bags():
    return [b.astype(np.float16) for b in corpus(600, 128, seed=5, spread=0.12)]


def test_int8_originals_cost_dim_plus_2_bytes_a_token_and_read_back_close(tmp_path, bags):
    ids = np.arange(len(bags), dtype=np.int64)
    n_tok = sum(len(b) for b in bags)
    sizes = {}
    for keep in (False, True, "int8"):
        idx = PlaidIndex.create(tmp_path / str(keep), 128, keep_vectors=keep)
        idx.commit(ids, bags, NONE)
        sizes[keep] = idx.nbytes()
    assert abs(sizes[True] - sizes[False] - 2 * 128 * n_tok) < 1024
    assert abs(sizes["int8"] - sizes[False] - (128 + 2) * n_tok) < 1024
    seg = idx._snap.segments[0]
    assert isinstance(seg.vectors, Int8Rows) and seg.vectors.q.dtype == np.int8
    committed = np.concatenate(bags).astype(np.float32)  # one segment, ids in order
    back = seg.vectors[np.arange(n_tok)]
    cos = (back * committed).sum(1) / np.linalg.norm(back, axis=1) / np.linalg.norm(committed, axis=1)
    assert cos.min() > 0.9999


def test_quantize_is_exact_on_its_own_output():
    """A merge re-writes stored int8 originals through ``quantize``: the same bytes again."""
    rows = np.random.default_rng(0).standard_normal((500, 96)).astype(np.float32)
    rows[3] = 0.0  # an all-zero row keeps a zero scale
    q, s = quantize(rows)
    q2, s2 = quantize(Int8Rows(q, s)[:])
    assert np.array_equal(q, q2) and np.array_equal(s, s2)
    assert s[3] == 0 and not q[3].any()


def test_merges_copy_int8_originals_unchanged(tmp_path, bags):
    ids = np.arange(len(bags), dtype=np.int64)
    idx = PlaidIndex.create(tmp_path / "i", 128, keep_vectors="int8", merge_policy=NoMerge())
    for chunk in np.array_split(ids, 3):
        idx.commit(chunk, [bags[i] for i in chunk], NONE)
    before = np.concatenate([s.vectors[np.arange(len(s.vectors))] for s in idx._snap.segments])
    idx.merge(policy=MergeAll())
    (seg,) = idx._snap.segments
    assert np.array_equal(seg.vectors[np.arange(len(seg.vectors))], before)


def test_unknown_forms_are_refused(tmp_path, bags):
    with pytest.raises(InvalidInput):
        PlaidIndex.create(tmp_path / "bad", 128, keep_vectors="int4")
    idx = PlaidIndex.create(tmp_path / "i", 128, keep_vectors="int8")
    idx.commit(np.arange(10, dtype=np.int64), bags[:10], NONE)
    seg = next((tmp_path / "i" / "segments").iterdir())
    scales = np.load(seg / "vector_scales.npy")
    (seg / "vector_scales.npy").unlink()
    np.save(seg / "vector_scales.npy", scales[:-1])  # one scale short
    with pytest.raises(IndexCorrupt):
        PlaidIndex.open(tmp_path / "i")
    ok = PlaidIndex.create(tmp_path / "ok", 128, keep_vectors="int8")
    ok.commit(np.arange(10, dtype=np.int64), bags[:10], NONE)
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    for bad in ({"keep_vectors": "int4"}, {"keep_vectors_below": "many"}, {"keep_vectors_below": -1}):
        (tmp_path / "ok" / "manifest.json").write_text(json.dumps({**manifest, **bad}))
        with pytest.raises(IndexCorrupt):
            PlaidIndex.open(tmp_path / "ok")
    (tmp_path / "ok" / "manifest.json").write_text(json.dumps(manifest))
    assert PlaidIndex.open(tmp_path / "ok").passage_ids().tolist() == list(range(10))
    with pytest.raises(InvalidInput):
        PlaidIndex.create(tmp_path / "neg", 128, keep_vectors_below=-1)


def test_originals_are_kept_only_while_the_codec_is_young(tmp_path, bags):
    """``keep_vectors_below``: segments under a codec trained on fewer live tokens keep their
    originals, so the refit that outgrows it re-quantises them exactly; from then on the
    migrated and the new segments keep none (a large index holds codes and residuals only)."""
    ids = np.arange(len(bags), dtype=np.int64)
    first = ids[:100]
    young_tokens = sum(len(bags[i]) for i in first)
    idx = PlaidIndex.create(tmp_path / "i", 128, keep_vectors="int8", keep_vectors_below=4 * young_tokens,
                            merge_policy=NoMerge())
    idx.commit(first, [bags[i] for i in first], NONE)
    assert idx._snap.segments[0].vectors is not None
    kept = idx._snap.segments[0].vectors[np.arange(young_tokens)]
    idx.commit(ids[100:], [bags[i] for i in ids[100:]], NONE)  # 6x the tokens: a refit
    m = idx._snap.manifest
    assert len(m.codecs) == 2 and m.codec_tokens >= 4 * young_tokens
    assert idx._snap.segments[1].vectors is None
    size_before = idx.nbytes()
    idx.merge(policy=MergeAll())
    (seg,) = idx._snap.segments
    assert seg.vectors is None and idx.nbytes() < size_before
    # the old segment moved to the new codec from its originals, not from decoded vectors
    codec = Codec.load(tmp_path / "i" / "codecs" / m.codecs[-1])
    codes, residuals = codec.compress(kept)
    assert np.array_equal(seg.codes[:young_tokens].numpy(), codes)
    assert np.array_equal(seg.residuals[:young_tokens].numpy(), residuals)
    reopened = PlaidIndex.open(tmp_path / "i")
    assert reopened._snap.manifest.keep_vectors_below == 4 * young_tokens
    assert [h.passage_id for h in reopened.search([bags[7].astype(np.float32)], 1)[0]] == [7]
