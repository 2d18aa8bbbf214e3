"""Training queries a code corpus already contains: its docstrings.

A Python docstring's first line is a person's description of the code under it,
the kind of sentence an agent searches with. Pairing it with the passage that
holds the code, with the docstring cut out of that passage, gives a
(query, positive) pair that teaches the retriever to match a description to
code that does not repeat it. Mining costs a parse per file and no model time,
so post-training can use thousands of pairs where the bundled LM writes tens.

Only Python files are mined (``ast``); other files contribute no pairs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

MIN_WORDS = 3  # "Return x." or "Helper." describe too little to be a query


@dataclass(frozen=True)
class PassageSpan:
    """A passage of one document: its id and 1-based inclusive line span."""

    passage_id: int
    start_line: int
    end_line: int


@dataclass(frozen=True)
class MinedQuery:
    query: str
    passage_id: int
    positive: str  # the passage's lines with the docstring removed (no path header)


def docstring_queries(text: str, spans: list[PassageSpan]) -> list[MinedQuery]:
    """One query per documented function or class whose docstring starts with a sentence.

    >>> code = 'def area(r):\\n    "Area of a circle of radius r."\\n    return 3.14 * r * r\\n'
    >>> [(q.query, q.positive) for q in docstring_queries(code, [PassageSpan(7, 1, 3)])]
    [('Area of a circle of radius r.', 'def area(r):\\n    return 3.14 * r * r')]
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        doc = ast.get_docstring(node)
        if not doc or not doc.strip() or not node.body:
            continue
        first = doc.strip().splitlines()[0].strip()
        if len(first.split()) < MIN_WORDS:
            continue
        span = _best_span(spans, node.lineno, node.end_lineno or node.lineno)
        if span is None:
            continue
        doc_node = node.body[0]
        cut = range(doc_node.lineno, (doc_node.end_lineno or doc_node.lineno) + 1)
        kept = [lines[n - 1] for n in range(span.start_line, span.end_line + 1)
                if n not in cut and n <= len(lines)]
        positive = "\n".join(kept).strip("\n")
        if positive.strip():
            found.append(MinedQuery(first, span.passage_id, positive))
    return found


def _best_span(spans: list[PassageSpan], start: int, end: int) -> PassageSpan | None:
    """The passage holding the definition line that covers most of the definition."""
    holding = [s for s in spans if s.start_line <= start <= s.end_line]
    if not holding:
        return None
    return max(holding, key=lambda s: (min(s.end_line, end) - start, -s.start_line))
