"""One pooled vector per passage, stored as 1-bit signs, for hybrid search's third term.

The encoder's backbone already computes the mean of its last hidden states over a
passage; for the bundled all-MiniLM-L6-v2 that *is* its sentence embedding, a retriever
in its own right (the single-vector baseline of ``bench/``). Its cosine with the query's
pooled vector ranks passages by what they are about, where MaxSim ranks them by the
tokens they share, and fusing the two beats either (``bench/RESULTS.md``, issue 17).

A passage's vector is kept as the signs of its 384 dimensions: 48 bytes, a 1% addition
to a passage's index bytes; the query's stays float32 and scores ``q . sign(d)``. Bare
signs lost 1-2% MRR@10 of the fused ranking against int8 vectors (8x the bytes); after the
encoder's seeded rotation (``ColBERTEncoder.rotate_pooled``), which spreads MiniLM's few
large dimensions over all of them, they lost about nothing. The signs live in
``passages.pooled`` beside the passage's text, written in the same transaction.
"""

from __future__ import annotations

import numpy as np


def pack(pooled: np.ndarray) -> list[bytes]:
    """[n, hidden] float vectors -> n sign-bit strings (bit set: dimension >= 0)."""
    bits = np.packbits(np.asarray(pooled) >= 0, axis=1)
    return [row.tobytes() for row in bits]


def scores(query: np.ndarray, packed: list[bytes]) -> np.ndarray:
    """``query . sign(d)`` for each packed passage ``d`` (float64 [n])."""
    if not packed:
        return np.zeros(0)
    bits = np.unpackbits(np.frombuffer(b"".join(packed), np.uint8).reshape(len(packed), -1),
                         axis=1)[:, :len(query)]
    return (bits.astype(np.float64) * 2.0 - 1.0) @ np.asarray(query, np.float64)
