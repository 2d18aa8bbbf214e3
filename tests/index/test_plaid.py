"""PlaidIndex against an exhaustive float MaxSim oracle, plus commits, merges and crashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import IndexCorrupt, InvalidInput
from indexer.index.plaid import Codec, MergeAll, NoMerge, PlaidIndex, TieredMerge
from indexer.index.plaid.codec import KMEANS_SCHEDULE, assign, pack, spherical_kmeans
from indexer.index.plaid.manifest import SegmentEntry
from indexer.index.plaid.segment import dequantize_norms
from tests.index.plaid_data import corpus, exact_topk, queries

NONE = np.empty(0, dtype=np.int64)


def ids_of(hits) -> list[int]:
    return [h.passage_id for h in hits]


def overlap(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / max(len(b), 1)


@pytest.fixture(scope="module")
def data128():
    bags = corpus(1500, 128, seed=0, spread=0.12)
    return np.arange(len(bags), dtype=np.int64) * 3 + 5, bags


def build(path: Path, ids, bags, **kw) -> PlaidIndex:
    idx = PlaidIndex.create(path, bags[0].shape[1], **kw)
    idx.commit(ids, bags, NONE)
    return idx


def test_pack_puts_first_dimension_in_high_bits():
    assert pack(np.array([[3, 0, 1, 2]], dtype=np.uint8), 2).tolist() == [[0b11000110]]
    assert pack(np.array([[1, 0, 0, 0, 0, 0, 0, 1]], dtype=np.uint8), 1).tolist() == [[0b10000001]]


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_codec_error_shrinks_with_bits(nbits, data128):
    flat = np.concatenate(data128[1])
    codec = Codec.train(flat, nbits, 256)
    import torch

    from indexer.index.plaid.codec import decompress

    codes, packed = codec.compress(flat)
    assert codec.bytes_per_vector == 2 + 128 * nbits // 8
    assert packed.shape == (len(flat), 128 * nbits // 8)
    rec = decompress(torch.from_numpy(codes), torch.from_numpy(packed), torch.from_numpy(codec.centroids),
                     torch.from_numpy(codec.decode_table())).numpy()
    cos = (rec * flat).sum(1).mean()
    centroid_only = (codec.centroids[codes.astype(np.int64)] * flat).sum(1).mean()
    assert cos > centroid_only  # residuals add information
    assert cos > {1: 0.9, 2: 0.95, 4: 0.99}[nbits]


def test_int8_assignment_matches_float_nearest_centroid(data128):
    import torch

    flat = torch.from_numpy(np.concatenate(data128[1]))
    centroids = torch.nn.functional.normalize(flat[torch.randperm(len(flat))[:512]], dim=1)
    exact = (flat @ centroids.T).argmax(1)
    fast = assign(centroids, flat.numpy().astype(np.float16), block=1000)  # blocks, float16 input
    assert (fast == exact).float().mean() > 0.95  # the misses are near-ties...
    mse = [float(((flat - centroids[c]) ** 2).sum(1).mean()) for c in (fast, exact)]
    assert mse[0] <= mse[1] * 1.005  # ...that cost (almost) nothing


def test_spherical_kmeans_matches_faiss(data128):
    import faiss
    import torch

    flat = np.concatenate(data128[1])
    centroids = spherical_kmeans(torch.from_numpy(flat), 256, KMEANS_SCHEDULE, seed=1)
    assert torch.allclose(centroids.norm(dim=1), torch.ones(256), atol=1e-5)
    km = faiss.Kmeans(128, 256, niter=12, seed=1, spherical=True, max_points_per_centroid=64)
    km.train(flat)  # the previous trainer, 12 iterations: ours must cover the data as well

    def mse(c: np.ndarray) -> float:
        return float(((flat - c[(flat @ c.T).argmax(1)]) ** 2).sum(1).mean())

    assert mse(centroids.numpy()) <= 1.02 * mse(km.centroids)


def test_centroid_interaction_prunes_before_decompression(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids, bags)
    qs = queries(bags, 20, seed=5)
    full = idx.search(qs, 10, candidates=256, decompress=256)
    pruned = idx.search(qs, 10, candidates=256, decompress=32)
    # scoring passages by their tokens' centroids keeps what full decompression ranks first
    assert np.mean([overlap(ids_of(p), ids_of(f)) for p, f in zip(pruned, full)]) >= 0.9
    assert all(p[0].passage_id == f[0].passage_id for p, f in zip(pruned, full))
    assert idx.search(qs, 10, candidates=256, decompress=10) != full  # the knob does prune
    assert len(idx.search(qs[:1], 50, candidates=128)[0]) == 50  # never fewer than k decompressed


def test_bytes_per_vector_at_2_bits_128_dims_beats_colbert(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids, bags, keep_vectors=False)
    n_tok = sum(len(b) for b in bags)
    seg = next((tmp_path / "i" / "segments").iterdir())
    per_token = sum((seg / f).stat().st_size for f in ("codes.npy", "residuals.npy", "norms.npy"))
    assert per_token / n_tok <= 36.1  # 2-byte code + 32 bytes of residual + 2-byte norm (+ npy headers)
    assert np.load(seg / "ivf.npy").dtype == np.uint16  # 1,500 passages: 2-byte list entries
    assert idx.nbytes() / n_tok < 48  # everything: ivf, lengths, ids, codec
    kept = build(tmp_path / "k", ids, bags)  # with int8 originals for refits (the default)
    assert abs(kept.nbytes() - idx.nbytes() - (128 + 2) * n_tok) < 1024


@pytest.mark.parametrize("dim", [128, 384])
def test_search_agrees_with_exact_oracle(tmp_path, dim):
    bags = corpus(1200, dim, seed=dim, spread=0.12)
    ids = np.arange(len(bags), dtype=np.int64) * 2 + 1
    qs = queries(bags, 25, seed=dim)
    idx = build(tmp_path / "i", ids, bags)
    hits = idx.search(qs, 10)
    oracle = [exact_topk(q, ids, bags, 10) for q in qs]
    # 2-bit residuals blur near-ties of this synthetic data (measured: 0.84 at 2 bits, 0.92 at 4)
    assert np.mean([overlap(ids_of(h), o) for h, o in zip(hits, oracle)]) >= 0.8
    assert all(h[0].passage_id == o[0] for h, o in zip(hits, oracle))  # the planted passage wins
    exhaustive = idx.search(qs, 10, exhaustive=True)
    # pruning loses nothing the decompressed exhaustive scan finds
    assert np.mean([overlap(ids_of(h), ids_of(e)) for h, e in zip(hits, exhaustive)]) >= 0.98
    assert all(a.score >= b.score for h in hits for a, b in zip(h, h[1:]))


def test_table_scores_equal_maxsim_over_decompressed_vectors(tmp_path, data128):
    from indexer.index.plaid.codec import decompress

    ids, bags = data128
    idx = build(tmp_path / "i", ids, bags)
    seg, codec = idx.snapshot.segments[0], idx.snapshot.codecs[idx.snapshot.segments[0].codec]
    vectors = decompress(seg.codes, seg.residuals, codec.centroids, codec.table, seg.norms).numpy()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3)  # float16 norms: unit within 1e-3
    offsets = seg.offsets.numpy()
    for q in queries(bags, 3, seed=9):
        sims = vectors @ q.T
        want = np.array([sims[a:b].max(0).sum() for a, b in zip(offsets, offsets[1:])])
        order = np.argsort(-want)[:10]
        got = idx.search([q], 10, exhaustive=True)[0]
        assert ids_of(got) == np.asarray(seg.pids)[order].tolist()
        assert np.allclose([h.score for h in got], want[order], atol=1e-4)


def test_format_1_segments_open_and_merge(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids[:1000], bags[:1000], merge_policy=NoMerge(), keep_vectors=False)
    qs = queries(bags, 10, seed=4)
    before = idx.search(qs, 10)
    stored = idx.snapshot.segments[0].norms.float()
    seg = next((tmp_path / "i" / "segments").iterdir())
    (seg / "norms.npy").unlink()  # what a version-1 writer left
    meta = json.loads((seg / "segment.json").read_text())
    (seg / "segment.json").write_text(json.dumps({**meta, "format": 1}))
    old = PlaidIndex.open(tmp_path / "i", merge_policy=NoMerge())
    computed = old.snapshot.segments[0].norms.float()
    # the stored byte is the computed norm within half a step (0.002 near 1, < 0.004 here)
    assert (computed - stored).abs().max() <= 2e-3
    after = old.search(qs, 10)
    assert np.mean([overlap(ids_of(a), ids_of(b)) for a, b in zip(after, before)]) >= 0.97
    assert np.allclose([h.score for h in after[0][:3]], [h.score for h in before[0][:3]], rtol=2e-3)
    old.commit(ids[1000:1100], bags[1000:1100], NONE)  # no refit: codes are copied
    old.optimize()  # rewrites the format-1 segment with its computed norms
    assert len(old.snapshot.segments) == 1 and all((s / "norms.npy").exists()
                                                for s in (tmp_path / "i" / "segments").iterdir())
    fresh = build(tmp_path / "fresh", ids[:1100], bags[:1100], codec_from=tmp_path / "i", keep_vectors=False)
    assert [ids_of(h) for h in old.search(qs, 10, exhaustive=True)] == \
        [ids_of(h) for h in fresh.search(qs, 10, exhaustive=True)]


def test_format_2_segments_open_and_a_wrong_norms_dtype_is_corrupt(tmp_path, data128):
    """Format 2 kept float16 norms; format 3 keeps one byte (``segment.quantize_norms``)."""
    ids, bags = data128
    idx = build(tmp_path / "i", ids[:300], bags[:300], merge_policy=NoMerge(), keep_vectors=False)
    qs = queries(bags, 10, seed=4)
    before = idx.search(qs, 10)
    seg = next((tmp_path / "i" / "segments").iterdir())
    steps = np.load(seg / "norms.npy")
    assert steps.dtype == np.uint8 and (seg / "norms.npy").stat().st_size < 200 + len(steps)
    (seg / "norms.npy").unlink()
    np.save(seg / "norms.npy", dequantize_norms(steps))  # what a format-2 writer stored
    meta = json.loads((seg / "segment.json").read_text())
    (seg / "segment.json").write_text(json.dumps({**meta, "format": 2}))
    assert PlaidIndex.open(tmp_path / "i").search(qs, 10) == before
    (seg / "segment.json").write_text(json.dumps(meta))  # format 3 with float16 norms
    with pytest.raises(IndexCorrupt):
        PlaidIndex.open(tmp_path / "i")


def test_search_params_per_call_trade_recall(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids, bags)
    qs = queries(bags, 20, seed=3)
    ex = idx.search(qs, 10, exhaustive=True)
    narrow = idx.search(qs, 10, nprobe=1, candidates=10)
    wide = idx.search(qs, 10, nprobe=16, candidates=2000, decompress=2000)
    o_narrow = np.mean([overlap(ids_of(h), ids_of(e)) for h, e in zip(narrow, ex)])
    o_wide = np.mean([overlap(ids_of(h), ids_of(e)) for h, e in zip(wide, ex)])
    assert o_wide == 1.0 and o_narrow < o_wide


def test_deletes_replacements_filters_and_reopen(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids, bags, merge_policy=NoMerge())
    q = queries(bags, 1, seed=9)[0]
    top = idx.search([q], 5)[0][0].passage_id
    # replace the top passage with an unrelated one, delete another: both gone from results
    other = corpus(1, 128, seed=99, spread=0.12)
    victim = int(ids[7])
    idx.commit(np.array([top]), other, np.array([victim, 10**9]))  # unknown ids are ignored
    assert len(idx.passage_ids()) == len(ids) - 1 and victim not in idx.passage_ids()
    res = ids_of(idx.search([q], 20)[0])
    assert top not in res and victim not in res
    assert ids_of(idx.search([other[0]], 1)[0]) == [top]  # the new vectors answer
    allowed = np.sort(ids[100:200])
    assert set(ids_of(idx.search([q], 10, allowed_ids=allowed)[0])) <= set(allowed.tolist())
    again = PlaidIndex.open(tmp_path / "i")
    assert again.search([q], 10) == idx.search([q], 10)
    assert np.array_equal(again.passage_ids(), idx.passage_ids())


def test_small_commits_and_merge_equal_fresh_build(tmp_path, data128):
    ids, bags = data128
    fresh = build(tmp_path / "fresh", ids, bags)
    inc = PlaidIndex.create(tmp_path / "inc", 128, codec_from=tmp_path / "fresh", merge_policy=NoMerge())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ids))
    junk = corpus(40, 128, seed=5, spread=0.12)
    for n, chunk in enumerate(np.array_split(order, 30)):
        # each sync adds a slice, plus a junk passage that a later sync deletes
        j = np.array([10**6 + n])
        prev = np.array([10**6 + n - 1]) if n else NONE
        inc.commit(np.concatenate([ids[chunk], j]), [bags[i] for i in chunk] + [junk[n]], prev)
        if n == 10:  # re-sending unchanged passages (a replace) must not duplicate them
            inc.commit(ids[chunk], [bags[i] for i in chunk], NONE)
    inc.commit(NONE, [], np.array([10**6 + 29]))
    assert len(json.loads((tmp_path / "inc" / "manifest.json").read_text())["segments"]) == 31
    qs = queries(bags, 30, seed=4)
    # one codec: the 31 segments are searched as one group, so the answers are the fresh build's
    assert inc.search(qs, 10) == fresh.search(qs, 10)
    inc.merge(policy=MergeAll())  # codes copied: no refit
    assert np.array_equal(inc.passage_ids(), fresh.passage_ids())
    assert inc.search(qs, 10) == fresh.search(qs, 10)
    seg_f = next((tmp_path / "fresh" / "segments").iterdir())
    seg_i = next((tmp_path / "inc" / "segments").iterdir())
    for f in ("codes.npy", "residuals.npy", "pids.npy", "ivf.npy", "ivf_offsets.npy"):
        assert (seg_f / f).read_bytes() == (seg_i / f).read_bytes(), f


@pytest.mark.parametrize("stage", ["tombstones_written", "segment_written", "manifest_temp_written"])
def test_failed_commit_leaves_previous_state(tmp_path, data128, stage):
    ids, bags = data128
    idx = build(tmp_path / "i", ids[:1000], bags[:1000], merge_policy=NoMerge())
    qs = queries(bags[:1000], 10, seed=2)
    before, manifest = idx.search(qs, 10), (tmp_path / "i" / "manifest.json").read_bytes()

    def crash(at: str) -> None:
        if at == stage:
            raise OSError(f"injected crash at {at}")

    idx.fault_hook = crash
    with pytest.raises(OSError, match="injected"):
        idx.commit(ids[1000:], bags[1000:], ids[:500])
    assert (tmp_path / "i" / "manifest.json").read_bytes() == manifest
    assert idx.search(qs, 10) == before  # the live object still serves the old snapshot
    reopened = PlaidIndex.open(tmp_path / "i")
    assert reopened.search(qs, 10) == before
    assert np.array_equal(reopened.passage_ids(), ids[:1000])
    reopened.commit(ids[1000:], bags[1000:], ids[:500])  # the next commit cleans up and succeeds
    assert np.array_equal(reopened.passage_ids(), ids[500:])
    live = {p.name for p in (tmp_path / "i" / "segments").iterdir()}
    assert live == {s["name"] for s in json.loads((tmp_path / "i" / "manifest.json").read_text())["segments"]}


def test_codec_reused_while_it_fits_and_retrained_when_not(tmp_path):
    a = corpus(900, 128, seed=1, spread=0.12)
    idx = build(tmp_path / "i", np.arange(600), a[:600], merge_policy=NoMerge())
    same = a[600:]  # new passages from the same clusters: reuse
    idx.commit(np.arange(1000, 1300), same, NONE)
    assert len(idx.snapshot.manifest.codecs) == 1
    shifted = corpus(600, 128, seed=77, spread=0.12)  # new topics: the codec no longer fits
    idx.commit(np.arange(2000, 2600), shifted, NONE)
    assert len(idx.snapshot.manifest.codecs) == 2
    q = queries(shifted, 5, seed=8)
    oracle = [exact_topk(x, np.arange(2000, 2600), shifted, 1)[0] for x in q]
    assert [h[0].passage_id for h in idx.search(q, 1)] == oracle


def test_tiered_merge_policy_tiers_across_codecs_and_migrates_old_ones():
    seg = lambda n, c="c0", tok=100, dead=0: SegmentEntry(n, c, 10, tok, None, dead)  # noqa: E731
    C0 = "c0"
    policy = TieredMerge(factor=3, floor_tokens=1)
    small = [seg(f"s{i}") for i in range(3)]
    assert policy.select(small, C0) == [["s0", "s1", "s2"]]
    # segments of a codec the current one does not extend migrate into it, together
    assert policy.select([seg("old1", "c0"), seg("old2", "c0"), seg("new", "c1")], "c1") == [["old1", "old2"]]
    assert policy.select([seg("big", tok=10_000), *small[:2]], C0) == []  # different tiers
    assert policy.select([seg("holey", dead=5)], C0) == [["holey"]]  # > 30% deleted: rewrite
    # below the floor every segment is one tier: small syncs merge as soon as there are 3
    floor = TieredMerge(factor=3, floor_tokens=1 << 14)
    assert floor.select([seg("a", tok=10), seg("b", tok=900), seg("c", tok=9000)], C0) == [["a", "b", "c"]]


@pytest.mark.parametrize("keep", [True, "int8"])
def test_grown_index_matches_a_fresh_build_and_optimizes_into_it(tmp_path, keep):
    """Growth by small adds: refits happen, older segments move to the new codec from their
    originals (float16, or int8: a fresh build reads them as stored too), the index stays a
    few segments of one codec and about as good as a fresh build; ``optimize`` then retrains
    on today's corpus and writes the fresh build's bytes."""
    bags = [b.astype(np.float16) for b in corpus(1600, 128, seed=3, topics=128, spread=0.12)]
    ids = np.arange(len(bags), dtype=np.int64)
    fresh = build(tmp_path / "fresh", ids, bags, keep_vectors=keep)
    idx = PlaidIndex.create(tmp_path / "i", 128, keep_vectors=keep)
    counts = []
    for n, chunk in enumerate(np.array_split(ids, 32)):
        idx.commit(ids[chunk], [bags[i] for i in chunk], NONE)
        if n % 4 == 3:  # an edit re-sends a few passages: replaced, tombstoned where they were
            again = chunk[:7]
            idx.commit(ids[again], [bags[i] for i in again], NONE)
        counts.append((len(idx.snapshot.manifest.segments), len(idx.snapshot.manifest.codecs)))
    assert {c for _, c in counts} == {1}  # a refit's old segments move at once
    assert int(idx.snapshot.manifest.codecs[-1][1:]) > 1  # ...and refits did happen
    assert max(s for s, _ in counts) <= 3 * 3  # (factor - 1) per tier, three tiers at most here
    assert np.array_equal(idx.passage_ids(), ids)
    qs = queries([b.astype(np.float32) for b in bags], 40, seed=6)
    oracle = [exact_topk(q, ids, [b.astype(np.float32) for b in bags], 10) for q in qs]
    quality = [np.mean([overlap(ids_of(h), o) for h, o in zip(x.search(qs, 10), oracle)])
               for x in (idx, fresh)]
    assert quality[0] >= quality[1] - 0.03
    assert idx.optimize() == 1
    assert idx.search(qs, 10) == fresh.search(qs, 10)
    seg_f = next((tmp_path / "fresh" / "segments").iterdir())
    seg_i = tmp_path / "i" / "segments" / idx.snapshot.manifest.segments[0].name
    stored = ("vectors.npy", "vector_scales.npy") if keep == "int8" else ("vectors.npy",)
    for f in ("codes.npy", "residuals.npy", "pids.npy", "ivf.npy", *stored):
        assert (seg_f / f).read_bytes() == (seg_i / f).read_bytes(), f
    assert idx.optimize() == 0  # trained on today's corpus already: nothing to do
    assert fresh.optimize() == 0  # likewise a fresh build


def test_merge_keeps_deletes_that_land_while_it_runs(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids[:600], bags[:600], merge_policy=NoMerge())
    idx.commit(ids[600:900], bags[600:900], NONE)
    landed = []

    def commit_meanwhile(stage: str) -> None:  # the merge has written its segment, unpublished
        if stage == "merged_segment_written" and not landed:
            landed.append(True)
            idx.commit(ids[900:1000], bags[900:1000], np.concatenate([ids[:50], ids[700:720]]))

    class Once(MergeAll):  # one round: the result shows what the merge carried over
        def select(self, segments, current):
            return [] if landed else super().select(segments, current)

    idx.fault_hook = commit_meanwhile
    assert idx.merge(policy=Once()) == 1
    idx.fault_hook = None
    expected = np.setdiff1d(ids[:1000], np.concatenate([ids[:50], ids[700:720]]))
    assert np.array_equal(idx.passage_ids(), expected)
    segs = idx.snapshot.manifest.segments
    merged = [s for s in segs if "m" in s.name]
    assert len(segs) == 2 and merged[0].n_deleted == 70  # the merged one carries the late deletes
    hits = idx.search(queries(bags[:50], 20, seed=3), 10)
    assert not {h.passage_id for r in hits for h in r} & set(ids[:50].tolist())
    assert {p.name for p in (tmp_path / "i" / "segments").iterdir()} == {s.name for s in segs}


def test_garbage_collection_spares_a_merge_in_progress(tmp_path, data128):
    from indexer.index.plaid.manifest import Manifest, collect_garbage, merge_guard

    ids, bags = data128
    idx = build(tmp_path / "i", ids[:300], bags[:300])
    segments = tmp_path / "i" / "segments"
    guard = merge_guard(segments, "s999999mbusy")
    (segments / "s999999mbusy").mkdir()
    (segments / "s999999mdead").mkdir()  # a merge that crashed: no live guard
    (segments / "s999999mdead.building").touch()
    collect_garbage(tmp_path / "i", Manifest.read(tmp_path / "i"))
    names = {p.name for p in segments.iterdir()}
    assert "s999999mbusy" in names and "s999999mbusy.building" in names
    assert not {"s999999mdead", "s999999mdead.building"} & names
    guard.release()
    collect_garbage(tmp_path / "i", Manifest.read(tmp_path / "i"))
    assert {p.name for p in segments.iterdir()} == {s.name for s in idx.snapshot.manifest.segments}


def test_tiered_default_bounds_segment_count(tmp_path, data128):
    ids, bags = data128
    idx = PlaidIndex.create(tmp_path / "i", 128, merge_policy=TieredMerge(factor=4))
    idx.commit(ids[:500], bags[:500], NONE)
    for chunk in np.array_split(np.arange(500, 1500), 40):
        idx.commit(ids[chunk], [bags[i] for i in chunk], NONE)
    assert len(idx.snapshot.manifest.segments) <= 8
    assert np.array_equal(idx.passage_ids(), ids)


def test_bad_input_and_corrupt_files(tmp_path, data128):
    ids, bags = data128
    idx = build(tmp_path / "i", ids[:50], bags[:50])
    with pytest.raises(InvalidInput):
        idx.commit(ids[:2], bags[:1], NONE)
    with pytest.raises(InvalidInput):
        idx.commit(np.array([1]), [np.ones((3, 64), np.float32)], NONE)
    with pytest.raises(InvalidInput):
        idx.search([np.ones((3, 64), np.float32)], 5)
    with pytest.raises(InvalidInput):
        PlaidIndex.create(tmp_path / "j", 100, nbits=1)  # 100 bits do not fill whole bytes
    (tmp_path / "i" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorrupt):
        PlaidIndex.open(tmp_path / "i")


def test_fast_product_matches_plain_product():
    import torch

    from indexer.index.plaid.search import dot_t

    a, b = torch.randn(700, 128), torch.randn(32, 128)
    assert torch.allclose(dot_t(a, b), a @ b.T, atol=1e-5)
    assert dot_t(a.double(), b.double()).dtype == torch.float64  # other dtypes: the plain product


@pytest.mark.parametrize("bound", [50, 100_000])  # presence-mask path, then the sort path
def test_distinct_matches_torch_unique(bound):
    import torch

    from indexer.index.plaid.search import distinct

    items = torch.randint(0, min(bound, 40), (200,)) * (bound // 40 or 1)
    uniq, inv = distinct(items, bound)
    ref_uniq, ref_inv = torch.unique(items, return_inverse=True)
    assert torch.equal(uniq, ref_uniq) and torch.equal(inv, ref_inv)


# plain topk; blocks and a tail (32 columns); blocks over a 13-column slice
@pytest.mark.parametrize("n_centroids", [1000, 8200, 16384])
@pytest.mark.parametrize("nprobe", [1, 4])
def test_probe_finds_each_query_tokens_best_centroids(n_centroids, nprobe):
    import torch

    from indexer.index.plaid.search import probe_centroids

    scores = torch.randn(n_centroids, 32, generator=torch.Generator().manual_seed(n_centroids))
    scores[-3, 5] = 9.0  # a winner in the tail rows that fill no whole block
    for cols in (scores, scores[:, :13]):  # a query's own columns of padded tables
        want = cols.topk(nprobe, dim=0).indices.flatten().unique()
        assert torch.equal(probe_centroids(cols, nprobe), want)
    assert n_centroids - 3 in probe_centroids(scores, nprobe)


def test_codec_stores_float16_centroids_losslessly(tmp_path, data128):
    flat = np.concatenate(data128[1])[:5000]
    codec = Codec.train(flat, 2, 64)
    codec.save(tmp_path / "c")
    assert np.load(tmp_path / "c" / "centroids.npy").dtype == np.float16
    back = Codec.load(tmp_path / "c")
    assert back.centroids.dtype == np.float32 and np.array_equal(back.centroids, codec.centroids)
    old = Codec(codec.centroids + np.float32(1e-6), codec.cutoffs, codec.weights, 2, codec.train_mse)
    old.save(tmp_path / "old")  # centroids float16 cannot hold: kept float32, unchanged
    assert np.array_equal(Codec.load(tmp_path / "old").centroids, old.centroids)


def test_stacked_rows_read_like_the_joined_array():
    from indexer.index.plaid.merge import StackedRows

    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 8)).astype(np.float16) for n in rng.integers(1, 50, 300)]
    flat, rows = np.concatenate(parts), StackedRows(parts)
    assert rows.shape == flat.shape and len(rows) == len(flat)
    for a, b in [(0, 10), (5, 5), (17, 1000), (0, len(flat)), (len(flat) - 3, len(flat) + 10)]:
        assert np.array_equal(rows[a:b], flat[a:b])
    picked = np.sort(rng.choice(len(flat), 500, replace=False))
    assert np.array_equal(rows[picked], flat[picked])
    assert rows[picked[:0]].shape == (0, 8)

