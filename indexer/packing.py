"""Search hits packed into a token budget: one span per stretch of a file, best first.

Passages are overlapping line windows (``indexer/line_windows.py``), so a plain top-k
often shows the same lines two or three times. For an agent that pays for every
token of context, ``pack`` merges the hits of one document whose line ranges
overlap or touch into one span, rebuilds the span's text line by line from the
hits' own passage texts (each passage holds exactly its document's lines
``start_line..end_line``, so the result is the document's text, no line twice),
and takes spans best first (a span ranks by its best hit) while they fit the
budget. A span that does not fit is reported as cut, and smaller spans after it
may still fit. A span's cost is its header line ``path:start-end`` plus its
text, counted with the caller's tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexer.corpus import SearchHit  # torch-free import for the CLI: types only

CountTokens = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class Span:
    corpus: str
    document_id: str
    path: str | None
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    score: float  # the best score of the hits merged into it
    passage_ids: list[int]  # the merged hits, best first
    tokens: int
    text: str

    @property
    def header(self) -> str:
        return span_header(self.path or self.document_id, self.start_line, self.end_line)


@dataclass
class Packed:
    spans: list[Span] = field(default_factory=list)
    cut: list[Span] = field(default_factory=list)  # did not fit, best first
    tokens_used: int = 0
    max_tokens: int = 0

    def answer(self, tokenizer: str) -> dict:
        """The REST answer's shape: ``spans`` and ``packing`` (see docs/api.md)."""
        cut_fields = ("corpus", "document_id", "path", "start_line", "end_line", "score",
                      "tokens")
        return {"spans": [asdict(s) for s in self.spans],
                "packing": {"tokenizer": tokenizer, "max_tokens": self.max_tokens,
                            "tokens_used": self.tokens_used,
                            "cut": [{f: getattr(s, f) for f in cut_fields} for s in self.cut]}}


def span_header(where: str, start_line: int, end_line: int) -> str:
    """>>> span_header("a/b.py", 3, 9)
    'a/b.py:3-9'
    """
    return f"{where}:{start_line}-{end_line}"


def merge(hits: Sequence[SearchHit]) -> list[tuple[list[SearchHit], int, int, str]]:
    """Group hits of one document whose line ranges overlap or are adjacent.

    Returns ``(members best first, start_line, end_line, text)`` per group, best
    group first; a hit repeated (same passage) counts once.

    >>> from indexer.corpus import SearchHit
    >>> h = lambda pid, a, b, s: SearchHit("c", pid, "d", "d", a, b, s,
    ...     "".join(f"{i}\\n" for i in range(a, b + 1)))
    >>> [(g[1], g[2], g[3]) for g in merge([h(1, 1, 3, .9), h(2, 4, 5, .5), h(3, 9, 9, .7)])]
    [(1, 5, '1\\n2\\n3\\n4\\n5\\n'), (9, 9, '9\\n')]
    """
    by_doc: dict[tuple[str, str], list[SearchHit]] = {}
    seen: set[tuple[str, int]] = set()
    for hit in hits:
        if (hit.corpus, hit.passage_id) in seen:
            continue
        seen.add((hit.corpus, hit.passage_id))
        by_doc.setdefault((hit.corpus, hit.document_id), []).append(hit)
    groups = []
    for doc_hits in by_doc.values():
        run: list[SearchHit] = []
        end = 0
        for hit in sorted(doc_hits, key=lambda x: (x.start_line, x.end_line)):
            if run and hit.start_line > end + 1:
                groups.append(_stitch(run))
                run = []
            run.append(hit)
            end = hit.end_line if len(run) == 1 else max(end, hit.end_line)
        groups.append(_stitch(run))
    return sorted(groups, key=lambda g: -g[0][0].score)


def _stitch(run: list[SearchHit]) -> tuple[list[SearchHit], int, int, str]:
    """One text for hits covering a contiguous line range, each line taken once."""
    start = min(h.start_line for h in run)
    lines: dict[int, str] = {}
    for hit in run:
        for offset, line in enumerate(hit.text.splitlines(keepends=True)):
            lines.setdefault(hit.start_line + offset, line)
    end = max(lines) if lines else start
    members = sorted(run, key=lambda h: -h.score)
    return members, start, end, "".join(lines[i] for i in range(start, end + 1))


def pack(hits: Sequence[SearchHit], max_tokens: int, count_tokens: CountTokens) -> Packed:
    """Merged spans of ``hits``, best first, whose tokens sum to at most ``max_tokens``."""
    groups = merge(hits)
    costs = count_tokens([
        f"{span_header(m[0].path or m[0].document_id, a, b)}\n{text}" for m, a, b, text in groups])
    packed = Packed(max_tokens=max_tokens)
    for (members, start, end, text), tokens in zip(groups, costs):
        best = members[0]
        span = Span(best.corpus, best.document_id, best.path, start, end, best.score,
                    [m.passage_id for m in members], tokens, text)
        if packed.tokens_used + tokens <= max_tokens:
            packed.spans.append(span)
            packed.tokens_used += tokens
        else:
            packed.cut.append(span)
    return packed


def encoder_tokens(encoder, name: str) -> tuple[CountTokens, str]:
    """The encoder's own token counter and how the answer names it (``name``: the
    encoder's, e.g. ``bundled:minilm``)."""
    return encoder.count_tokens, (f"{type(encoder.tokenizer).__name__} of {name}, "
                                  "no special tokens")
