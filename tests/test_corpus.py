"""Corpora end to end with the real encoder on a small directory."""

import pytest

from indexer.corpus import Corpora, DocumentInput
from indexer.errors import Conflict, InvalidInput, NotFound
from indexer.index.plaid import PlaidIndex
from indexer.index.plaid.manifest import Manifest


def top_path(corpora, name, query, **kw):
    return corpora.search([name], [query], k=3, **kw)[0][0].path


def test_search_finds_the_file_that_answers(corpora, sample_dir):
    corpora.create("src", str(sample_dir))
    report = corpora.sync("src")
    assert sorted(report.added) == ["docs/cooking.md", "math/geometry.py", "net/http_client.py"]
    assert top_path(corpora, "src", "compute the area of a circle") == "math/geometry.py"
    assert top_path(corpora, "src", "send an HTTP request over a socket") == "net/http_client.py"
    assert top_path(corpora, "src", "how long to bake bread") == "docs/cooking.md"


def test_resync_processes_only_what_changed(corpora, sample_dir):
    corpora.create("src", str(sample_dir))
    corpora.sync("src")
    again = corpora.sync("src")
    assert (again.passages_added, again.unchanged, again.version) == (0, 3, 1)

    (sample_dir / "math/geometry.py").write_text("def square_area(side):\n    return side * side\n")
    (sample_dir / "docs/cooking.md").unlink()
    (sample_dir / "new.txt").write_text("Tides are caused by the moon's gravity.\n")
    report = corpora.sync("src")
    assert report.updated == ["math/geometry.py"] and report.deleted == ["docs/cooking.md"]
    assert report.added == ["new.txt"] and report.unchanged == 1
    assert report.passages_added == 2 and report.version == 2
    hits = corpora.search(["src"], ["bake bread"], k=10)[0]
    assert "docs/cooking.md" not in {h.path for h in hits}
    assert top_path(corpora, "src", "what causes ocean tides") == "new.txt"
    assert corpora.info("src").documents == 3


def test_hits_carry_exact_line_spans(corpora, sample_dir):
    lines = [f"value_{i} = {i}\n" for i in range(100)]
    lines[70] = "def parse_config_file(path): return open(path).read()\n"
    (sample_dir / "long.py").write_text("".join(lines))
    corpora.create("src", str(sample_dir))
    corpora.sync("src")
    hit = corpora.search(["src"], ["parse a config file"], k=1)[0][0]
    assert hit.path == "long.py" and hit.start_line <= 71 <= hit.end_line
    assert hit.text.splitlines()[71 - hit.start_line].startswith("def parse_config_file")


def test_path_glob_and_several_corpora(corpora, sample_dir):
    corpora.create("src", str(sample_dir))
    corpora.sync("src")
    corpora.create("notes")
    corpora.upsert_documents("notes", [DocumentInput("n1", "Circles have an area of pi r squared.")])
    hits = corpora.search(["src"], ["area of a circle"], k=5, path_glob="docs/*")[0]
    assert {h.path for h in hits} == {"docs/cooking.md"}
    both = corpora.search(["src", "notes"], ["area of a circle"], k=10)[0]
    assert {h.corpus for h in both} == {"src", "notes"}
    assert [h.score for h in both] == sorted((h.score for h in both), reverse=True)


def test_documents_api_replaces_and_deletes(corpora):
    corpora.create("d")
    corpora.upsert_documents("d", [DocumentInput("a", "the cat sat on the mat"),
                                   DocumentInput("b", "stock markets fell sharply today")])
    r = corpora.upsert_documents("d", [DocumentInput("a", "volcanoes erupt molten lava")])
    assert r.updated == ["a"] and r.passages_deleted == 1
    assert corpora.search(["d"], ["lava from a volcano"], k=1)[0][0].document_id == "a"
    corpora.delete_documents("d", ["b"])
    assert {h.document_id for h in corpora.search(["d"], ["stock market"], k=5)[0]} == {"a"}
    with pytest.raises(NotFound):
        corpora.delete_documents("d", ["nope"])


def test_bad_input_is_refused(corpora, tmp_path):
    with pytest.raises(InvalidInput):
        corpora.create("bad name!")
    with pytest.raises(InvalidInput):
        corpora.create("x", str(tmp_path / "missing"))
    corpora.create("d")
    with pytest.raises(Conflict):
        corpora.create("d")
    with pytest.raises(NotFound):
        corpora.search(["nope"], ["q"])
    with pytest.raises(InvalidInput):
        corpora.search(["d"], ["  "])
    with pytest.raises(InvalidInput):
        corpora.search(["d"], ["q"], k=0)
    with pytest.raises(InvalidInput):
        corpora.upsert_documents("d", [DocumentInput("e", "   ")])


def test_allowed_roots_confine_directories(tmp_path, encoder, sample_dir):
    confined = Corpora(tmp_path / "h2", encoder=encoder, allowed_roots=[sample_dir / "math"])
    with pytest.raises(InvalidInput, match="outside the allowed roots"):
        confined.create("all", str(sample_dir))
    with pytest.raises(InvalidInput, match="outside the allowed roots"):
        confined.create("up", str(sample_dir / "math" / ".."))
    confined.create("math", str(sample_dir / "math"))


def test_crash_between_rows_and_index_is_finished_on_reopen(tmp_path, encoder, sample_dir,
                                                            monkeypatch):
    home = tmp_path / "home"
    corpora = Corpora(home, encoder=encoder)
    corpora.create("src", str(sample_dir))
    corpora.sync("src")
    (sample_dir / "new.txt").write_text("Tides are caused by the moon's gravity.\n")

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed after the rows committed")

    monkeypatch.setattr(PlaidIndex, "commit", crash)
    with pytest.raises(KeyboardInterrupt):
        corpora.sync("src")
    monkeypatch.undo()
    reopened = Corpora(home, encoder=encoder)
    assert reopened.recover_all() == ["src"]
    assert top_path(reopened, "src", "what causes ocean tides") == "new.txt"
    assert reopened.sync("src").passages_added == 0


def test_sync_reports_every_stage_until_it_is_done(corpora, sample_dir):
    corpora.create("src", str(sample_dir))
    seen = []
    report = corpora.sync("src", progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = list(dict.fromkeys(s for s, _, _ in seen))
    # the PLAID commit's k-means and compression show as their own stages, not as "encode"
    assert stages == ["walk", "chunk", "encode", "commit", "codec", "compress", "bm25"]
    last = {s: (d, t) for s, d, t in seen}
    assert last["walk"] == (3, 3) and last["chunk"] == (3, 3)
    assert last["codec"][0] == last["codec"][1] > 0  # every k-means iteration counted
    n_tokens = sum(e.n_tokens for e in Manifest.read(corpora.index("src").path).segments)
    assert last["compress"] == (n_tokens, n_tokens)  # every token vector compressed
    assert seen[-1] == ("bm25", 1, 1) and ("commit", 1, 1) in seen
    assert [s for s, _, _ in seen].index("commit") < [s for s, _, _ in seen].index("codec")
    assert report.passages_added > 0
