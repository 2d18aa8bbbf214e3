"""The codec build's fast paths against the implementations they replaced (bit for bit), and
every assignment kernel against the exact float nearest centroid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indexer.index.plaid import Codec
from indexer.index.plaid.codec import ASSIGN_KERNELS, assign, faiss_kmeans, pack, spherical_kmeans
from tests.index.plaid_data import corpus


def reference_assign(centroids: torch.Tensor, vectors: np.ndarray) -> torch.Tensor:
    """The previous ``assign``: int8 scores of 16k-row blocks, argmax per row."""
    c = centroids.float()
    c8 = (c * (127 / c.abs().max())).round_().to(torch.int8).T.contiguous()
    out = torch.empty(len(vectors), dtype=torch.long)
    for s in range(0, len(vectors), 1 << 14):
        v = torch.from_numpy(np.asarray(vectors[s : s + (1 << 14)], dtype=np.float32))
        v8 = (v * (127 / v.abs().amax(1, keepdim=True))).round_().to(torch.int8)
        out[s : s + len(v)] = torch._int_mm(v8, c8).max(1).indices
    return out


def reference_compress(codec: Codec, vectors: np.ndarray,
                       kernel: str = "int8") -> tuple[np.ndarray, np.ndarray]:
    """The previous ``Codec.compress``: float32 residuals, comparisons, numpy bit-or reduce;
    codes by ``reference_assign`` (int8) or by ``kernel``'s ``assign`` on the whole input."""
    c = torch.from_numpy(codec.centroids)
    codes = reference_assign(c, vectors) if kernel == "int8" else assign(c, vectors, len(vectors), kernel)
    residual = torch.from_numpy(np.asarray(vectors, dtype=np.float32)) - c[codes]
    buckets = np.searchsorted(codec.cutoffs, residual.numpy(), side="left").astype(np.uint8)
    per = 8 // codec.nbits
    b = buckets.reshape(len(vectors), -1, per)
    shift = (8 - codec.nbits * (np.arange(per) + 1)).astype(np.uint8)
    return codes.numpy().astype(codec.code_dtype), np.bitwise_or.reduce(b << shift, axis=2)


@pytest.fixture(scope="module")
def flat():
    # 5,000+ rows: several compression blocks and a ragged last one
    return np.concatenate(corpus(260, 64, seed=3, spread=0.3))


@pytest.mark.parametrize("kernel", ASSIGN_KERNELS)
@pytest.mark.parametrize("nbits", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_compress_is_bit_identical_to_the_previous_implementation(flat, nbits, dtype, kernel, monkeypatch):
    codec = Codec.train(flat, nbits, 128, seed=2)
    vectors = flat.astype(dtype)
    before = vectors.copy()
    monkeypatch.setenv("MEMEX_FORCE_KERNEL", f"assign={kernel}")
    codes, packed = codec.compress(vectors)
    ref_codes, ref_packed = reference_compress(codec, vectors, kernel)
    assert len(flat) > 2 * 2048
    assert codes.dtype == ref_codes.dtype and packed.dtype == np.uint8
    assert np.array_equal(codes, ref_codes)
    assert np.array_equal(packed, ref_packed)
    assert np.array_equal(vectors, before)  # the caller's array is not used as scratch


@pytest.mark.parametrize("kernel", ASSIGN_KERNELS)
def test_assign_blocks_do_not_change_codes(flat, kernel):
    rng = np.random.default_rng(0)
    centroids = torch.from_numpy(flat[rng.choice(len(flat), 3000, replace=False)])
    ref = reference_assign(centroids, flat) if kernel == "int8" else \
        assign(centroids, flat, len(flat), kernel)
    for block in (100, 2048, len(flat)):
        assert torch.equal(assign(centroids, flat, block=block, kernel=kernel), ref)


@pytest.mark.parametrize("kernel", ASSIGN_KERNELS)
def test_every_assignment_kernel_finds_the_nearest_centroid(flat, kernel):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(flat)
    centroids = torch.nn.functional.normalize(x[rng.choice(len(flat), 512, replace=False)] + 0.05, dim=1)
    exact = (x.double() @ centroids.double().T).argmax(1)
    codes = assign(centroids, flat, kernel=kernel)
    agree = float((codes == exact).float().mean())
    assert agree >= (0.95 if kernel == "int8" else 0.999)  # int8 misses only near-ties...
    mse = [float(((x - centroids[c]) ** 2).sum(1).mean()) for c in (codes, exact)]
    assert mse[0] <= mse[1] * 1.005  # ...that cost (almost) nothing


def test_assignment_kernel_can_be_forced_and_a_bad_name_is_refused(flat, monkeypatch):
    from indexer.index.plaid.codec import Nearest, assign_kernel

    centroids = torch.from_numpy(flat[:64])
    monkeypatch.setenv("MEMEX_FORCE_KERNEL", "assign=faiss")
    assert assign_kernel() == "faiss" and Nearest(centroids).kernel == "faiss"
    monkeypatch.setenv("MEMEX_FORCE_KERNEL", "assign=avx9000")
    with pytest.raises(ValueError, match="avx9000"):
        assign_kernel()


def test_faiss_kmeans_covers_the_data_as_well_as_ours(flat):
    x = torch.from_numpy(flat)
    schedule = ((2, 4), (1, 3))
    ours = spherical_kmeans(x, 128, schedule, seed=3)
    theirs = faiss_kmeans(x, 128, schedule, seed=3)
    assert theirs.shape == (128, flat.shape[1])
    assert torch.allclose(theirs.norm(dim=1), torch.ones(128), atol=1e-5)

    def mse(c: torch.Tensor) -> float:
        return float(((x - c[(x @ c.T).argmax(1)]) ** 2).sum(1).mean())

    assert mse(theirs) <= 1.02 * mse(ours)
    assert mse(theirs) < 0.9 * mse(x[torch.randperm(len(x))[:128]])  # and it did train


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_pack_matches_numpy_reduce_on_random_buckets(nbits):
    rng = np.random.default_rng(nbits)
    buckets = rng.integers(0, 2**nbits, (333, 96)).astype(np.uint8)
    per = 8 // nbits
    shift = (8 - nbits * (np.arange(per) + 1)).astype(np.uint8)
    expected = np.bitwise_or.reduce(buckets.reshape(333, -1, per) << shift, axis=2)
    assert np.array_equal(pack(buckets, nbits), expected)
