"""Power loss at every file-system call of every write path.

``kill -9`` (tests/test_crash.py) leaves the page cache intact, so it cannot
see a missing fsync. Here ``tests/helpers/power.py`` records every call of
``indexer/durable.py``, cuts the power at call ``i`` (for every ``i`` the write
makes), throws away what was not fsynced, and the data reopens: it must be the
last committed state or the new one, readable (no ``IndexCorrupt``) and
searchable, and the next write must succeed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.corpus import Corpora
from indexer.index.plaid import NoMerge, PlaidIndex
from tests.helpers.power import every_power_cut, first_and_last_file
from tests.index.plaid_data import corpus, queries
from tests.test_crash import AFTER, BEFORE, _check_consistent, _write

NONE = np.zeros(0, np.int64)


def test_the_power_cut_keeps_only_what_was_fsynced(tmp_path):
    """The double itself: what it must throw away, and what it must keep."""
    from indexer import durable
    from tests.helpers.power import power_cut

    root = tmp_path / "root"
    root.mkdir()
    (root / "old.txt").write_text("old")
    with power_cut(root) as cut:
        durable.write_text(root / "kept.txt", "kept")  # temp, fsync, rename, folder fsync
        durable.make_dirs(root / "a" / "b")
        (root / "a" / "b" / "raw.txt").write_text("written around durable")
        durable.fsync_dir(root / "a" / "b")
        with durable.disk.create(root / "unsynced.bin") as f:  # never fsynced
            f.write(b"x" * 100)
        durable.disk.rename(root / "old.txt", root / "moved.txt")  # folder not fsynced since
    cut.lose_unsynced()
    assert (root / "kept.txt").read_text() == "kept"
    assert len((root / "a" / "b" / "raw.txt").read_bytes()) < len("written around durable")  # torn
    assert not (root / "unsynced.bin").exists()
    assert (root / "old.txt").read_text() == "old" and not (root / "moved.txt").exists()


# -- corpus: sync, re-index, chunk DB --------------------------------------------------------

@pytest.fixture(scope="module")
def synced(tmp_path_factory, encoder) -> tuple[Path, Path]:
    """A data dir whose corpus "c" holds BEFORE; its directory now holds AFTER."""
    base = tmp_path_factory.mktemp("power")
    src, home = base / "src", base / "home"
    src.mkdir()
    _write(src, BEFORE)
    corpora = Corpora(home, encoder=encoder)
    corpora.create("c", str(src))
    corpora.sync("c")
    from indexer.retro.sync import reconcile

    reconcile(corpora, "c")  # a chunk DB of BEFORE
    corpora.engine.dispose()
    _write(src, AFTER)
    return home, src


def _reopen(home: Path, encoder) -> Corpora:
    corpora = Corpora(home, encoder=encoder)
    corpora.recover_all()  # what the server and `memex worker` do at start-up
    return corpora


def test_sync(synced, encoder, tmp_path):
    home, _ = synced

    def run(work: Path) -> None:
        corpora = Corpora(work, encoder=encoder)
        try:
            corpora.sync("c")
        finally:
            corpora.engine.dispose()

    def check(work: Path, i: int) -> None:
        corpora = _reopen(work, encoder)
        # The SQL commit (fsynced by SQLite) precedes every index write: recovery finishes it.
        assert _check_consistent(corpora, [BEFORE, AFTER]) == AFTER
        corpora.engine.dispose()

    assert every_power_cut(home, run, check, tmp_path, first_and_last_file) > 10


def test_reindex(synced, encoder, tmp_path):
    from indexer.reindex import reindex

    home, _ = synced
    golden = tmp_path / "golden"
    shutil.copytree(home, golden)
    corpora = _reopen(golden, encoder)
    corpora.sync("c")
    corpora.engine.dispose()
    dirs = set()

    def run(work: Path) -> None:
        corpora = Corpora(work, encoder=encoder)
        try:
            reindex(corpora, "c", "bundled:minilm")
        finally:
            corpora.engine.dispose()

    def check(work: Path, i: int) -> None:
        corpora = _reopen(work, encoder)
        with corpora.sessions() as s:
            dirs.add(corpora.row(s, "c").index_dir)
        _check_consistent(corpora, [AFTER])
        corpora.engine.dispose()

    every_power_cut(golden, run, check, tmp_path, first_and_last_file)
    assert "index" in dirs and len(dirs) > 1  # cut before and after the switch


def test_chunk_db_update(synced, encoder, tmp_path):
    from indexer.retro.chunkdb import ChunkDB
    from indexer.retro.sync import chunkdb_dir, reconcile

    home, _ = synced
    golden = tmp_path / "golden"
    shutil.copytree(home, golden)
    corpora = _reopen(golden, encoder)
    corpora.sync("c")  # the corpus moves to AFTER; its chunk DB (no listener) stays at BEFORE
    corpora.engine.dispose()
    states = {tuple(sorted(BEFORE)), tuple(sorted(AFTER))}

    def run(work: Path) -> None:
        corpora = Corpora(work, encoder=encoder)
        try:
            reconcile(corpora, "c")
        finally:
            corpora.engine.dispose()

    def check(work: Path, i: int) -> None:
        corpora = Corpora(work, encoder=encoder)
        db = ChunkDB.open(chunkdb_dir(corpora, "c"))
        assert tuple(sorted(d["id"] for d in db.docs)) in states
        found = db.neighbors(text="molten lava erupts from volcanoes", k=1)
        assert found and found[0].neighbors
        repaired = reconcile(corpora, "c")
        assert tuple(sorted(d["id"] for d in repaired.docs)) == tuple(sorted(AFTER))
        corpora.engine.dispose()

    every_power_cut(golden, run, check, tmp_path, first_and_last_file)


def test_encoder_checkpoint(tmp_path):
    """A trained encoder's checkpoint folder is whole or absent after a power loss."""
    from indexer.encoding.encoder import ColBERTEncoder
    from indexer.training.checkpoint import save_checkpoint
    from indexer.training.model import pca_head
    from tests.conftest import SAMPLE_FILES

    version = ColBERTEncoder.load("bundled:minilm", runtime="torch")  # headless: pca_head adds one
    version.projection = pca_head(version, list(SAMPLE_FILES.values()) * 4, 64)
    version.dim = 64
    expected = version.encode_queries(["area of a circle"])[0]
    golden = tmp_path / "golden"
    golden.mkdir()
    kept = []

    def run(work: Path) -> None:
        save_checkpoint(version, work / "v2")

    def check(work: Path, i: int) -> None:
        if (work / "v2").exists():
            loaded = ColBERTEncoder.load(str(work / "v2"), runtime="torch")
            assert np.allclose(loaded.encode_queries(["area of a circle"])[0], expected, atol=1e-5)
            kept.append(i)
        else:
            save_checkpoint(version, work / "v2")  # a leftover temp folder does not block a retry

    def around_the_rename(log):  # the first and last file's fsync, then the folder and the rename
        files = [i for i, (call, p) in enumerate(log) if call == "fsync" and p.parent.name.startswith(".v2.")]
        return [i for i in range(len(log)) if i not in files[1:-1]]

    every_power_cut(golden, run, check, tmp_path, around_the_rename)
    assert kept  # the cuts after the rename's fsync keep the checkpoint


# -- PLAID: merge and codec refit, through the public API -------------------------------------

DIM = 64


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """An index of four segments with deletes: what a merge rewrites."""
    path = tmp_path_factory.mktemp("plaid") / "ix"
    bags = corpus(400, DIM, seed=3, spread=0.12, tokens=(6, 16))
    idx = PlaidIndex.create(path, DIM, merge_policy=NoMerge())
    for part in np.array_split(np.arange(400), 4):
        idx.commit(part, [bags[i] for i in part], NONE)
    idx.commit(NONE, [], np.arange(0, 400, 7))
    qs = queries(bags, 3, seed=4)
    return path, qs, idx.search(qs, 10), idx.passage_ids()


def test_merge(segmented, tmp_path):
    path, qs, before, ids = segmented

    def run(work: Path) -> None:
        PlaidIndex.open(work, merge_policy=NoMerge()).optimize()  # merge everything: the public API

    outcomes = [[[h.passage_id for h in r] for r in before]]  # and the merged index's, below

    def check(work: Path, i: int) -> None:
        idx = PlaidIndex.open(work, merge_policy=NoMerge())
        assert np.array_equal(idx.passage_ids(), ids)
        got = [[h.passage_id for h in r] for r in idx.search(qs, 10)]
        if len(outcomes) == 1:  # the run without a cut comes first: the merged state
            outcomes.append(got)
        assert got in outcomes
        idx.commit(np.array([10_000]), [np.ones((3, DIM), np.float32) / DIM ** 0.5], NONE)

    assert every_power_cut(path, run, check, tmp_path) > 10


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("refit") / "ix"
    old = corpus(300, DIM, seed=1, spread=0.12, tokens=(10, 20))
    idx = PlaidIndex.create(path, DIM, merge_policy=NoMerge())
    idx.commit(np.arange(300), old, NONE)
    shifted = corpus(350, DIM, seed=77, spread=0.12, tokens=(10, 20))  # new topics
    return path, idx.passage_ids(), shifted, queries(shifted, 3, seed=8)


def test_codec_refit(fitted, tmp_path):
    path, before_ids, shifted, qs = fitted
    new_ids = np.arange(2000, 2000 + len(shifted))
    after_ids = np.union1d(before_ids, new_ids)
    results = {}

    def run(work: Path) -> None:
        PlaidIndex.open(work, merge_policy=NoMerge()).commit(new_ids, shifted, NONE)

    def check(work: Path, i: int) -> None:
        idx = PlaidIndex.open(work, merge_policy=NoMerge())
        ids = idx.passage_ids()
        if np.array_equal(ids, after_ids):
            assert len(idx.snapshot.manifest.codecs) == 2  # the shifted data got its own codec
            top = [r[0].passage_id for r in idx.search(qs, 1)]
            assert results.setdefault("after", top) == top
            assert set(top) <= set(new_ids.tolist())
        else:
            assert np.array_equal(ids, before_ids)
            assert len(idx.snapshot.manifest.codecs) == 1
            idx.commit(new_ids, shifted, NONE)  # the write, again, succeeds

    every_power_cut(path, run, check, tmp_path, first_and_last_file)
