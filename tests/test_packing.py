"""Packing search hits into a token budget: merged spans, exact lines, budget kept."""

from __future__ import annotations

from indexer.corpus import DocumentInput, SearchHit
from indexer.line_windows import chunk_lines
from indexer.packing import merge, pack

DOC = "".join(f"line {i}: value_{i} = compute({i})\n" for i in range(1, 131))


def hits_of(text: str, picks: dict[int, float], doc: str = "d", corpus: str = "c",
            first_id: int = 100):
    """Hits on the real passages (30-line windows every 15 lines) of ``text``."""
    passages = chunk_lines(text)
    return [SearchHit(corpus, first_id + i, doc, f"{doc}.py", passages[i].start_line,
                      passages[i].end_line, score, passages[i].text)
            for i, score in picks.items()]


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def test_overlapping_and_adjacent_windows_become_one_exact_span():
    hits = hits_of(DOC, {0: 0.9, 1: 0.8, 5: 0.7})  # lines 1-30, 16-45, 76-105
    groups = merge(hits)
    assert [(a, b) for _, a, b, _ in groups] == [(1, 45), (76, 105)]
    lines = DOC.splitlines(keepends=True)
    assert groups[0][3] == "".join(lines[0:45])  # no line twice, none missing
    assert groups[1][3] == "".join(lines[75:105])
    adjacent = [SearchHit("c", 1, "d", "d", 1, 2, 0.5, "a\nb\n"),
                SearchHit("c", 2, "d", "d", 3, 3, 0.6, "c\n")]
    assert [(a, b, t) for _, a, b, t in merge(adjacent)] == [(1, 3, "a\nb\nc\n")]


def test_duplicates_go_and_documents_and_corpora_stay_apart():
    one = hits_of(DOC, {2: 0.9})
    other_doc = hits_of(DOC, {2: 0.8}, doc="e", first_id=200)
    other_corpus = hits_of(DOC, {2: 0.7}, corpus="k")
    groups = merge(one + one + other_doc + other_corpus)
    assert [(m[0].corpus, m[0].document_id, len(m)) for m, *_ in groups] == [
        ("c", "d", 1), ("c", "e", 1), ("k", "d", 1)]


def test_spans_rank_by_their_best_hit_and_pack_best_first_within_budget(encoder):
    hits = hits_of(DOC, {7: 0.95, 0: 0.9, 1: 0.3, 4: 0.5})  # 106-130, 1-30, 16-45, 61-90
    full = pack(hits, 10**6, encoder.count_tokens)
    assert [(s.start_line, s.end_line) for s in full.spans] == [(106, 130), (1, 45), (61, 90)]
    assert full.spans[1].passage_ids == [100, 101] and full.spans[1].score == 0.9
    assert full.tokens_used == sum(s.tokens for s in full.spans) and not full.cut
    assert full.spans[0].tokens == encoder.count_tokens(
        [f"d.py:106-130\n{full.spans[0].text}"])[0]

    first, second, third = (s.tokens for s in full.spans)
    tight = pack(hits, first + third, encoder.count_tokens)  # the 45-line span does not fit
    assert [(s.start_line, s.end_line) for s in tight.spans] == [(106, 130), (61, 90)]
    assert [(s.start_line, s.end_line) for s in tight.cut] == [(1, 45)]
    assert tight.tokens_used == first + third <= tight.max_tokens
    nothing = pack(hits, 1, encoder.count_tokens)
    assert nothing.spans == [] and len(nothing.cut) == 3 and nothing.tokens_used == 0


def test_packed_search_answers_never_overlap_on_a_real_corpus(corpora):
    corpora.create("code")
    docs = [DocumentInput(f"f{i}", "".join(
        f"def handler_{i}_{j}(request):\n    return route(request, {j})\n" for j in range(60)),
        f"pkg/f{i}.py") for i in range(3)]
    corpora.upsert_documents("code", docs)
    hits = corpora.search(["code"], ["handler route request"], k=20)[0]
    packed = pack(hits, 10**6, corpora.encoder.count_tokens)
    spans = sorted((s.document_id, s.start_line, s.end_line) for s in packed.spans)
    for (d1, _, e1), (d2, s2, _) in zip(spans, spans[1:]):
        assert d1 != d2 or s2 > e1 + 1  # neither overlapping nor touching
    texts = {d.doc_id: d.text.splitlines(keepends=True) for d in docs}
    for s in packed.spans:
        assert s.text == "".join(texts[s.document_id][s.start_line - 1:s.end_line])
    covered = {(h.document_id, line) for h in hits for line in range(h.start_line, h.end_line + 1)}
    assert covered == {(s.document_id, line) for s in packed.spans
                       for line in range(s.start_line, s.end_line + 1)}
