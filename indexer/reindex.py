"""Re-index a corpus with another encoder, then switch to it atomically.

The new index is built in a new directory beside the one being served
(``index-<stamp>``) while searches and syncs go on. Then, under the corpus's
write lock, changes committed meanwhile are caught up (passage ids are never
reused and a passage's text never changes, so the delta is two id-set
differences), and one SQL transaction points the corpus row at the new
encoder, its fingerprint and the new index directory. A search reads those
three from the row together (``Corpora.search``), so it uses either the old
encoder with the old index or the new with the new, never a mix. The old
directory is kept until the next switch so searches that read the row just
before the switch still find it. A failure or interrupt removes the new
directory only while the row does not point at it: once the switch committed,
it is the live index.
"""

from __future__ import annotations

import time

import numpy as np

from indexer import durable
from indexer.corpus import Corpora
from indexer.encoding.encoder import ColBERTEncoder
from indexer.index import create_index
from indexer.pooled import pack
from indexer.progress import Progress


def reindex(corpora: Corpora, name: str, encoder_name: str,
            progress: Progress | None = None) -> dict:
    """Build ``name``'s index with ``encoder_name`` and switch the corpus to it."""
    t0 = time.perf_counter()
    encoder: ColBERTEncoder = ColBERTEncoder.load(encoder_name)
    with corpora.sessions() as s:
        old_dir = corpora.row(s, name).index_dir
    new_dir = f"index-{time.time_ns()}"
    index = create_index(corpora.corpus_dir(name) / new_dir, encoder.dim,
                         corpora.index_engine, corpora.index_nbits)
    try:
        ids, texts, _ = corpora.passages(name)
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            if progress:
                progress("re-encode", done[0], len(texts))

        vectors, pooled = encoder.encode_documents_and_pooled(texts, progress=step)
        packed = dict(zip(ids, pack(pooled)))
        index.progress = progress  # a PLAID index reports its codec / compress stages
        index.commit(np.array(ids, np.int64), vectors, np.zeros(0, np.int64))
        index.progress = None
        with corpora.write_lock(name):
            corpora.recover(name)  # finish a change of the old index first
            now_ids, now_texts, _ = corpora.passages(name)
            known = set(ids)
            added = [(i, t) for i, t in zip(now_ids, now_texts) if i not in known]
            gone = sorted(known - set(now_ids))
            if added or gone:
                added_vectors, added_pooled = encoder.encode_documents_and_pooled(
                    [t for _, t in added])
                index.commit(np.array([i for i, _ in added], np.int64), added_vectors,
                             np.array(gone, np.int64))
                packed.update(zip((i for i, _ in added), pack(added_pooled)))
            for i in gone:
                packed.pop(i, None)
            corpora.switch_index(name, encoder_name, encoder.fingerprint, new_dir, packed)
            for path in corpora.corpus_dir(name).glob("index*"):
                if path.name not in (new_dir, old_dir):
                    durable.remove(path)
    except BaseException:
        if not _serving(corpora, name, new_dir):
            durable.remove(corpora.corpus_dir(name) / new_dir)
        raise
    return {"encoder": encoder_name, "fingerprint": encoder.fingerprint, "index_dir": new_dir,
            "passages": len(now_ids), "caught_up": {"added": len(added), "deleted": len(gone)},
            "index_bytes": index.nbytes(), "seconds": round(time.perf_counter() - t0, 1)}


def _serving(corpora: Corpora, name: str, index_dir: str) -> bool:
    """Whether ``name``'s row points at ``index_dir``; True when that cannot be read
    (a leftover folder costs disk, a removed live index loses the corpus)."""
    try:
        with corpora.sessions() as s:
            return corpora.row(s, name).index_dir == index_dir
    except Exception:
        return True
