"""Batched token counting in the chunker: passages identical to counting window by window."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.corpus import DocumentInput, chunk_document
from indexer.encoding.encoder import ColBERTEncoder
from indexer.line_windows import Passage, chunk_lines
from indexer.models import resolve_model_path

REPO = Path(__file__).resolve().parents[1]


def reference_chunks(text: str, max_tokens: int, tokenizer) -> list[Passage]:
    """The previous chunker: one ``transformers`` call per window and per shortening."""
    def count(t: str) -> int:
        return len(tokenizer([t], add_special_tokens=False, verbose=False)["input_ids"][0])

    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out, start = [], 0
    while start < len(lines):
        end = min(start + 30, len(lines))
        n = count("".join(lines[start:end]))
        while n > max_tokens and end - start > 1:
            end = start + max(1, min(end - start - 1, int((end - start) * max_tokens / n)))
            n = count("".join(lines[start:end]))
        out.append(Passage(start + 1, end, offsets[start], offsets[end], "".join(lines[start:end])))
        if end >= len(lines):
            break
        start = min(start + 15, end)
    return out


@pytest.fixture(scope="module")
def encoder():
    from transformers import AutoTokenizer

    # the encoder's tokenizer and counting without loading the model's weights
    enc = ColBERTEncoder.__new__(ColBERTEncoder)
    enc.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("bundled:minilm"))
    enc._backends = {}
    return enc


def texts() -> list[str]:
    sources = [p.read_text() for p in sorted((REPO / "indexer").rglob("*.py"))][:25]
    odd = [
        "x = 1\r\ny = 2\r\n" * 40,  # CRLF
        "a\x0cb\x0cc\n" * 80 + "tail",  # form feeds: split as lines, dropped by the normalizer
        "défini = 'ünïcode' → ok\u2028next\n" * 70,
        "word " * 900 + "\n" + "short\n" * 50,  # one line over the budget, then normal ones
        ("tok " * 60 + "\n") * 45,  # every window shortened
        "",
        "no newline at end",
    ]
    return sources + odd


@pytest.mark.parametrize("budget", [240, 64])
def test_passages_identical_to_counting_window_by_window(encoder, budget):
    for text in texts():
        expected = reference_chunks(text, budget, encoder.tokenizer)
        assert chunk_lines(text, max_tokens=budget, count_tokens=encoder.count_tokens) == expected
        if encoder.lines_add_up(text):
            got = chunk_lines(text, max_tokens=budget, count_tokens=encoder.count_tokens, additive=True)
            assert got == expected


def test_line_sums_are_used_only_where_they_are_exact(encoder):
    sources, odd = texts()[:25], texts()[25:]
    assert all(encoder.lines_add_up(t) for t in sources + odd[:1])  # CRLF is fine
    joined = "a\x0cb\n"  # the normalizer deletes \x0c: "ab" is one word, not "a" + "b"
    assert not encoder.lines_add_up(joined) and not encoder.lines_add_up(odd[2])
    per_line = sum(encoder.count_tokens(joined.splitlines(keepends=True)))
    assert per_line != encoder.count_tokens([joined])[0]


def test_counts_match_the_tokenizer_and_ignore_its_truncation_state(encoder):
    sample = texts()[:5] + ["word " * 1000]
    ids = encoder.tokenizer(sample, add_special_tokens=False, verbose=False)["input_ids"]
    expected = [len(x) for x in ids]
    encoder.tokenizer(["y " * 600], truncation=True, max_length=16)  # leaves the backend truncating
    assert encoder.count_tokens(sample) == expected
    assert max(expected) > 1000


def test_corpus_chunk_with_batched_header_count_equals_per_document_count(encoder):
    from indexer.encoding.encoder import EncoderConfig

    encoder.config = EncoderConfig()
    docs = [DocumentInput(f"pkg/{i}/module_name.py", t, path=f"pkg/{i}/module_name.py")
            for i, t in enumerate(texts()[:6])]
    headers = encoder.count_tokens([d.path for d in docs])
    for d, n in zip(docs, headers):
        assert chunk_document(d, encoder, n) == chunk_document(d, encoder)
