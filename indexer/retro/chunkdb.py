"""A persistent per-corpus RETRO chunk DB: chunk tokens, keys, a key index, and updates.

Layout and dtypes: ``indexer/retro/FORMAT.md``. Choices: ``docs/retro.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from indexer import durable
from indexer.device import pick_device
from indexer.errors import IndexCorrupt, InvalidInput, NotFound
from indexer.retro import keyindex, versioned_dir
from indexer.retro.records import (
    MAX_NEIGHBORS_K,
    ChunkDBConfig,
    ChunkNeighbors,
    Neighbor,
    cached_encoder,
    cached_tokenizer,
)
from indexer.retro.token_chunks import (
    check_token_ids,
    split_chunks,
    with_continuation,
)

FORMAT_VERSION = 1
MAX_QUERY_ROWS = 4096  # input chunks x k of one call: bounds its work and its answer (~3 MB)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ChunkDB:
    """One committed version of a chunk DB, plus ``update`` to write the next one."""

    def __init__(self, root: Path, device: str | None = None) -> None:
        self.root = Path(root)
        self.device = pick_device(device)
        vdir = versioned_dir.current_version(self.root)
        try:
            meta = json.loads((vdir / "meta.json").read_text())
            docs = json.loads((vdir / "documents.json").read_text())
            self.tokens = np.load(vdir / "tokens.npy", mmap_mode="r")  # int32 [N, C]
            self.keys = np.load(vdir / "keys.npy", mmap_mode="r")  # float16 [N, D]
            self.lengths = np.load(vdir / "lengths.npy")  # int32 [N]
            self.chunk_ids = np.load(vdir / "chunk_ids.npy")  # int64 [N], ascending
            self.doc_rows = np.load(vdir / "doc_rows.npy")  # int32 [N] -> documents.json
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"chunk DB {vdir} is unreadable: {exc}") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise IndexCorrupt(f"chunk DB {vdir} has format {meta.get('format_version')}")
        self.meta = meta
        known = ChunkDBConfig.__dataclass_fields__
        self.config = ChunkDBConfig(**{k: v for k, v in meta["config"].items() if k in known})
        self.docs: list[dict] = docs
        counts = np.array([d["num_chunks"] for d in docs], dtype=np.int64)
        self.doc_start = np.concatenate([[0], np.cumsum(counts)])[:-1]
        self.doc_index = {d["id"]: i for i, d in enumerate(docs)}
        if counts.sum() != len(self.tokens):
            raise IndexCorrupt(f"chunk DB {vdir}: documents.json disagrees with tokens.npy")
        self.index = None
        if (vdir / "index.faiss").exists():
            import faiss

            self.index = keyindex.to_device(faiss.read_index(str(vdir / "index.faiss")), self.device)
            keyindex.set_search_params(self.index, self.config.nprobe, self.config.rerank)
        self._exact_keys = None

    # ---- creation and updates -------------------------------------------------------

    @classmethod
    def create(cls, root: Path, config: ChunkDBConfig = ChunkDBConfig(), device=None) -> ChunkDB:
        """An empty chunk DB at ``root`` (which must not hold one)."""
        root = Path(root)
        if (root / "CURRENT").exists():
            raise InvalidInput(f"a chunk DB already exists at {root}")
        if not 8 <= config.chunk_tokens <= 1024:
            raise InvalidInput("chunk_tokens must be between 8 and 1024")
        tok = cached_tokenizer(config.tokenizer)
        dim = cached_encoder(config.encoder, pick_device(device)).dim
        meta = {
            "format_version": FORMAT_VERSION,
            "version": 0,
            "config": asdict(config),
            "pad_id": tok.pad_id,
            "vocab_size": tok.vocab_size,
            "dim": dim,
            "next_chunk_id": 0,
            "index": None,
        }
        c = config.chunk_tokens
        empty = {
            "tokens": np.zeros((0, c), np.int32), "keys": np.zeros((0, dim), np.float16),
            "lengths": np.zeros(0, np.int32), "chunk_ids": np.zeros(0, np.int64),
            "doc_rows": np.zeros(0, np.int32),
        }
        versioned_dir.commit_version(root, 0, lambda d: _write(d, meta, [], empty, None))
        return cls(root, device)

    @classmethod
    def open(cls, root: Path, device: str | None = None) -> ChunkDB:
        return cls(root, device)

    def update(
        self, upserts: Iterable[tuple[str, str | None, str]] = (), deletes: Iterable[str] = (),
        progress=None,
    ) -> ChunkDB:
        """Commit a new version: ``upserts`` are ``(doc_id, path, text)``, ``deletes`` doc ids.

        Only documents whose text changed are tokenized and embedded; a changed
        path alone is a metadata edit. Unknown ids in ``deletes`` are ignored.
        Returns the new version, opened.
        """
        ups = {}
        for doc_id, path, text in upserts:
            if doc_id in ups:
                raise InvalidInput(f"document {doc_id!r} is upserted twice")
            ups[doc_id] = (path, text, _sha(text))
        deletes = set(deletes)
        if both := deletes & ups.keys():
            raise InvalidInput(f"documents both upserted and deleted: {sorted(both)[:5]}")
        docs = [dict(d) for d in self.docs]
        changed = []
        for doc_id, (path, _text, sha) in ups.items():
            i = self.doc_index.get(doc_id)
            if i is not None and docs[i]["sha256"] == sha:
                docs[i]["path"] = path
            else:
                changed.append(doc_id)
        gone = {d for d in deletes | set(changed) if d in self.doc_index}
        keep_doc = np.array([d["id"] not in gone for d in docs], dtype=bool)
        keep = keep_doc[self.doc_rows] if len(self.doc_rows) else np.zeros(0, bool)
        new_docs = [d for d in docs if d["id"] not in gone]
        new_doc_of_old = np.cumsum(keep_doc) - 1  # old doc index -> new one

        tok = cached_tokenizer(self.config.tokenizer)
        next_id = self.meta["next_chunk_id"]
        parts = {"tokens": [], "lengths": [], "doc_rows": [], "chunk_ids": []}
        texts = []
        for doc_id in changed:
            path, text, sha = ups[doc_id]
            t, n = split_chunks(tok.encode(text), self.config.chunk_tokens, tok.pad_id)
            new_docs.append({"id": doc_id, "path": path, "sha256": sha, "num_chunks": len(t)})
            parts["tokens"].append(t)
            parts["lengths"].append(n)
            parts["doc_rows"].append(np.full(len(t), len(new_docs) - 1, np.int32))
            parts["chunk_ids"].append(np.arange(next_id, next_id + len(t), dtype=np.int64))
            texts += [tok.decode(row[:m]) for row, m in zip(t, n)]
            next_id += len(t)
        new_keys = (
            cached_encoder(self.config.encoder, self.device).encode(texts, progress).astype(np.float16)
            if texts else np.zeros((0, self.meta["dim"]), np.float16)
        )
        arrays = {
            "tokens": np.concatenate([self.tokens[keep], *parts["tokens"]]).astype(np.int32),
            "lengths": np.concatenate([self.lengths[keep], *parts["lengths"]]).astype(np.int32),
            "chunk_ids": np.concatenate([self.chunk_ids[keep], *parts["chunk_ids"]]),
            "doc_rows": np.concatenate(
                [new_doc_of_old[self.doc_rows[keep]], *parts["doc_rows"]]
            ).astype(np.int32),
            "keys": np.concatenate([self.keys[keep], new_keys]),
        }
        removed_ids = self.chunk_ids[~keep]
        added_ids = arrays["chunk_ids"][len(arrays["chunk_ids"]) - len(new_keys) :]
        index, index_meta = self._next_index(arrays, removed_ids, added_ids, new_keys)
        meta = dict(self.meta, version=self.meta["version"] + 1, next_chunk_id=next_id)
        meta["index"] = index_meta
        versioned_dir.commit_version(
            self.root, meta["version"], lambda d: _write(d, meta, new_docs, arrays, index)
        )
        return ChunkDB(self.root, self.device)

    def reindex(self, factory: str | None = None, nprobe: int | None = None,
                rerank: int | None = None) -> ChunkDB:
        """Commit the same chunks and keys under another index (no re-embedding).

        ``factory`` None picks by size; ``nprobe``/``rerank`` None keep the current values.
        """
        config = replace(self.config, factory=factory, nprobe=nprobe or self.config.nprobe,
                         rerank=rerank or self.config.rerank)
        arrays = {name: np.asarray(getattr(self, name))
                  for name in ("tokens", "lengths", "chunk_ids", "doc_rows", "keys")}
        n, dim = arrays["keys"].shape
        want = factory or keyindex.default_factory(n, dim)
        index = None if want == "Flat" else keyindex.build_faiss(want, arrays["keys"],
                                                                 arrays["chunk_ids"])
        meta = dict(self.meta, version=self.meta["version"] + 1, config=asdict(config),
                    index=None if index is None else {"factory": want, "trained_on": n})
        versioned_dir.commit_version(
            self.root, meta["version"], lambda d: _write(d, meta, self.docs, arrays, index)
        )
        return ChunkDB(self.root, self.device)

    def _next_index(self, arrays, removed_ids, added_ids, new_keys):
        """Update the faiss index in place when its type still fits, else rebuild it."""
        n, dim = arrays["keys"].shape
        explicit = self.config.factory
        want = explicit or keyindex.default_factory(n, dim)
        cur = self.meta["index"]
        if want == "Flat":
            return None, None
        reuse = cur is not None and (
            cur["factory"] == want
            or (not explicit and cur["trained_on"] / 4 <= n <= cur["trained_on"] * 4)
        )
        if reuse and self.index is not None:
            import faiss

            index = faiss.clone_index(keyindex.to_cpu(self.index))
            if keyindex.remove_keys(index, removed_ids):
                keyindex.add_keys(index, new_keys, added_ids)
                return index, cur
        index = keyindex.build_faiss(want, arrays["keys"], arrays["chunk_ids"])
        return index, {"factory": want, "trained_on": n}

    # ---- queries ---------------------------------------------------------------------

    @property
    def num_chunks(self) -> int:
        return len(self.tokens)

    def _bans(self, doc_ids: Iterable[str]) -> list[tuple[int, int]]:
        out = []
        for d in doc_ids:
            i = self.doc_index.get(d)
            if i is not None:
                start = int(self.doc_start[i])
                out.append((start, start + int(self.docs[i]["num_chunks"])))
        return out

    def _row_of_id(self, ids: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.chunk_ids, ids).clip(max=max(len(self.chunk_ids) - 1, 0))
        return np.where((ids >= 0) & (self.chunk_ids[rows] == ids), rows, -1)

    def search_keys(self, queries: np.ndarray, k: int, bans: keyindex.Bans):
        """Rows [q, k] (-1: none) and distances of the nearest chunks to unit ``queries``."""
        if self.num_chunks == 0:
            return np.full((len(queries), k), -1), np.full((len(queries), k), np.inf, np.float32)
        if self.index is None:
            if self._exact_keys is None:
                self._exact_keys = np.asarray(self.keys, dtype=np.float32)
            return keyindex.exact_search(queries, self._exact_keys, k, bans, self.device)
        return keyindex.approx_search(
            self.index, self._row_of_id, queries, self.keys, k, bans, self.num_chunks,
            rerank=self.config.rerank, device=self.device,
        )

    def neighbors(
        self,
        text: str | None = None,
        token_ids: list[int] | None = None,
        k: int = 2,
        continuation: bool = True,
        exclude_document_ids: Iterable[str] = (),
        exclude_same_document: str | None = None,
        chunk_tokens: int | None = None,
    ) -> list[ChunkNeighbors]:
        """The ``k`` nearest DB chunks of every ``chunk_tokens`` chunk of the input.

        ``exclude_same_document`` is the id of the document the input was taken
        from: its chunks are never returned (RETRO's training filter).
        """
        if not 1 <= k <= MAX_NEIGHBORS_K:
            raise InvalidInput(f"k must be between 1 and {MAX_NEIGHBORS_K}, got {k}")
        c = self.config.chunk_tokens
        if chunk_tokens is not None and chunk_tokens != c:
            raise InvalidInput(f"this chunk DB has chunk_tokens={c}, not {chunk_tokens}")
        tok = cached_tokenizer(self.config.tokenizer)
        if (text is None) == (token_ids is None):
            raise InvalidInput("give exactly one of text or token_ids")
        if text is not None:
            if not text.strip():
                raise InvalidInput("text is empty")
            ids = tok.encode(text)
        else:
            ids = check_token_ids(token_ids, tok.vocab_size)
        q_tokens, q_lengths = split_chunks(ids, c, tok.pad_id)
        if len(q_tokens) * k > MAX_QUERY_ROWS:
            raise InvalidInput(f"{len(q_tokens)} input chunks x k={k} exceed {MAX_QUERY_ROWS} "
                               "neighbour rows per call; send less text or ask for a smaller k")
        texts = [tok.decode(row[:m]) for row, m in zip(q_tokens, q_lengths)]
        queries = cached_encoder(self.config.encoder, self.device).encode(texts)
        excluded = list(exclude_document_ids)
        if exclude_same_document is not None:
            excluded.append(exclude_same_document)
        bans = self._bans(excluded)
        rows, dist = self.search_keys(queries, k, [bans] * len(queries))
        return [
            ChunkNeighbors(
                tokens=[int(t) for t in q_tokens[i, : q_lengths[i]]],
                neighbors=self._describe(rows[i], dist[i], continuation, tok),
            )
            for i in range(len(queries))
        ]

    def _describe(self, rows, dist, continuation: bool, tok) -> list[Neighbor]:
        rows_ok = rows[rows >= 0]
        ids, mask = with_continuation(rows_ok, self.tokens, self.lengths, self.doc_rows, tok.pad_id)
        if not continuation:
            c = self.config.chunk_tokens
            ids, mask = ids[:, :c], mask[:, :c]
        out = []
        for j, r in enumerate(rows_ok):
            doc = self.docs[self.doc_rows[r]]
            out.append(Neighbor(
                chunk_id=int(self.chunk_ids[r]), document_id=doc["id"], path=doc["path"],
                distance=float(dist[j]), tokens=ids[j].tolist(), mask=mask[j].tolist(),
                text=tok.decode(ids[j][mask[j]]),
            ))
        return out

    def precompute(self, out_dir: Path, k: int = 2, batch: int = 1024) -> Path:
        """Every chunk's ``k`` neighbours from other documents, for building training sets.

        Writes ``neighbors.npy`` (int32 [N, k], rows of ``tokens.npy``; -1 where
        fewer than k chunks of other documents exist) and its companions (FORMAT.md).
        """
        if not 1 <= k <= MAX_NEIGHBORS_K:
            raise InvalidInput(f"k must be between 1 and {MAX_NEIGHBORS_K}, got {k}")
        if self.num_chunks == 0:
            raise NotFound(f"chunk DB {self.root} has no chunks to precompute")
        n = self.num_chunks
        neighbors = np.full((n, k), -1, np.int32)
        distances = np.full((n, k), np.inf, np.float32)
        for s in range(0, n, batch):
            rows = np.arange(s, min(s + batch, n))
            bans = [self._bans([self.docs[self.doc_rows[r]]["id"]]) for r in rows]
            queries = np.asarray(self.keys[rows], dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)  # fp16 storage rounding
            r, d = self.search_keys(queries, k, bans)
            neighbors[rows], distances[rows] = r, d
        out_dir = Path(out_dir)
        durable.make_dirs(out_dir)
        files = {
            "neighbors.npy": neighbors, "distances.npy": distances,
            "tokens.npy": np.asarray(self.tokens), "lengths.npy": self.lengths,
            "doc_rows.npy": self.doc_rows, "chunk_ids.npy": self.chunk_ids,
        }
        for name, arr in files.items():
            durable.write_npy(out_dir / name, arr)
        info = {
            "format_version": FORMAT_VERSION, "k": k, "num_chunks": n,
            "chunk_tokens": self.config.chunk_tokens, "pad_id": self.meta["pad_id"],
            "tokenizer": self.config.tokenizer, "encoder": self.config.encoder,
            "chunk_db_version": self.meta["version"],
            "documents": [{"id": d["id"], "path": d["path"]} for d in self.docs],
        }
        durable.write_json(out_dir / "meta.json", info)
        return out_dir

    def nbytes(self) -> int:
        """Bytes on disk of the committed version."""
        vdir = versioned_dir.current_version(self.root)
        return durable.tree_bytes(vdir)


def _write(vdir: Path, meta: dict, docs: list[dict], arrays: dict, index) -> None:
    for name, arr in arrays.items():
        durable.write_npy(vdir / f"{name}.npy", arr, fresh=True)
    durable.write_json(vdir / "documents.json", docs, fresh=True)
    if index is not None:
        keyindex.save(index, vdir / "index.faiss")
    durable.write_json(vdir / "meta.json", meta, fresh=True)
