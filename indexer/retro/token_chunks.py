"""Cut documents into fixed-size token chunks and build RETRO neighbours [chunk ; continuation].

A chunk DB stores every chunk as a row of ``chunk_tokens`` ids, padded with the
tokenizer's pad id after the document's end, plus its real length. A document's
chunks are consecutive rows, so the continuation of row ``i`` is row ``i + 1``
exactly when both rows belong to the same document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import InvalidInput, ModelError

DEFAULT_TOKENIZER = "bundled:smollm2"


@dataclass(frozen=True)
class Tokenizer:
    """A Hugging Face tokenizer with the two numbers chunking needs."""

    name: str  # what the user asked for: "bundled:smollm2" or a path
    hf: object  # transformers PreTrainedTokenizer(Fast)
    pad_id: int  # pad token, else EOS: fills chunks past a document's end
    vocab_size: int  # ids must lie in [0, vocab_size)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` without special tokens, int32 [n]."""
        return np.asarray(self.hf(text, add_special_tokens=False)["input_ids"], dtype=np.int32)

    def decode(self, ids: np.ndarray) -> str:
        return self.hf.decode([int(i) for i in ids])


def load_tokenizer(name: str = DEFAULT_TOKENIZER) -> Tokenizer:
    """Load ``name``: the bundled SmolLM2 tokenizer (default) or any local HF tokenizer dir."""
    from transformers import AutoTokenizer

    from indexer.models import causal_lm_dir, resolve_model_path

    path = causal_lm_dir() if name == DEFAULT_TOKENIZER else resolve_model_path(name)
    try:
        hf = AutoTokenizer.from_pretrained(str(Path(path)))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {name!r}: {exc}") from exc
    pad = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
    if pad is None:
        raise ModelError(f"tokenizer {name!r} has neither a pad nor an EOS token")
    return Tokenizer(name=name, hf=hf, pad_id=int(pad), vocab_size=len(hf))


def split_chunks(ids: np.ndarray, chunk_tokens: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive chunks of one token sequence; the last one padded.

    Parameters
    ----------
    ids : int array [n]
    chunk_tokens : int
    pad_id : int

    Returns
    -------
    tokens : int32 [ceil(n / chunk_tokens), chunk_tokens]
    lengths : int32 [ceil(n / chunk_tokens)], real tokens per chunk

    Examples
    --------
    >>> t, n = split_chunks(np.arange(5), 2, pad_id=-1)
    >>> t.tolist(), n.tolist()
    ([[0, 1], [2, 3], [4, -1]], [2, 2, 1])
    """
    n = len(ids)
    num = -(-n // chunk_tokens)
    tokens = np.full((num, chunk_tokens), pad_id, dtype=np.int32)
    tokens.reshape(-1)[:n] = ids
    lengths = np.full(num, chunk_tokens, dtype=np.int32)
    if num and n % chunk_tokens:
        lengths[-1] = n % chunk_tokens
    return tokens, lengths


def with_continuation(
    rows: np.ndarray,
    tokens: np.ndarray,
    lengths: np.ndarray,
    doc_rows: np.ndarray,
    pad_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """RETRO neighbours: each chunk followed by the next chunk of the same document.

    Parameters
    ----------
    rows : int [m], rows of the chunk table
    tokens : int32 [N, C]; lengths : int [N]; doc_rows : int [N] (document of each row)
    pad_id : int, fills the continuation past the document's end

    Returns
    -------
    ids : int32 [m, 2C]
    mask : bool [m, 2C], True on real tokens

    Examples
    --------
    >>> tok = np.array([[1, 2], [3, 0], [7, 8]]); lens = np.array([2, 1, 2])
    >>> ids, mask = with_continuation(np.array([0, 1, 2]), tok, lens, np.array([0, 0, 1]), 0)
    >>> ids.tolist(), mask.sum(1).tolist()
    ([[1, 2, 3, 0], [3, 0, 0, 0], [7, 8, 0, 0]], [3, 1, 2])
    """
    rows = np.asarray(rows, dtype=np.int64)
    c = tokens.shape[1]
    nxt = rows + 1
    has_next = nxt < len(tokens)
    has_next[has_next] = doc_rows[nxt[has_next]] == doc_rows[rows[has_next]]
    ids = np.full((len(rows), 2 * c), pad_id, dtype=np.int32)
    ids[:, :c] = tokens[rows]
    ids[has_next, c:] = tokens[nxt[has_next]]
    pos = np.arange(c)
    mask = np.zeros((len(rows), 2 * c), dtype=bool)
    mask[:, :c] = pos[None, :] < lengths[rows][:, None]
    next_len = np.where(has_next, lengths[np.minimum(nxt, len(tokens) - 1)], 0)
    mask[:, c:] = pos[None, :] < next_len[:, None]
    ids[~mask] = pad_id
    return ids, mask


def check_token_ids(ids: np.ndarray | list[int], vocab_size: int) -> np.ndarray:
    """Validate caller-given ids: non-empty, integral, inside the vocabulary."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInput("token_ids must be a non-empty flat list of integers")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput("token_ids must be integers")
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        raise InvalidInput(
            f"token id {int(arr[bad][0])} is outside the tokenizer's vocabulary [0, {vocab_size})",
            vocab_size=vocab_size,
        )
    return arr.astype(np.int32)
