"""Cut documents into passages of whole lines that fit the encoder.

A passage is a window of up to ``window_lines`` lines, windows starting every
``stride_lines`` lines (overlap keeps a function whole in at least one window).
A window whose text would exceed the encoder's token budget is shortened line
by line, so nothing the encoder sees is silently truncated. With ``additive``
(the caller knows a window's token count is the sum of its lines', as for BERT's
whitespace pre-tokenizer when lines end in ``\n``/``\r``) every line is counted
once in one batched call; otherwise the windows of the unshortened layout are
counted in one call and a shortened window's counts are asked one by one.

``chunk_python`` cuts Python at definition boundaries instead; it lost to the windows on
stdlib and on the validation set (``bench/RESULTS.md``, "Code-aware passages"), so
``memex index`` cuts every file into windows and it serves the benchmark.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    start_char: int
    end_char: int
    text: str


def chunk_lines(
    text: str,
    window_lines: int = 30,
    stride_lines: int = 15,
    max_tokens: int | None = None,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    additive: bool = False,
) -> list[Passage]:
    """Split ``text`` into overlapping line windows.

    >>> [(p.start_line, p.end_line) for p in chunk_lines("a\\nb\\nc\\nd\\ne", 2, 2)]
    [(1, 2), (3, 4), (5, 5)]
    >>> chunk_lines("one line")[0].text
    'one line'
    """
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    passages: list[Passage] = []
    count = None
    if max_tokens is not None and count_tokens is not None:
        count = (_line_sums if additive else _window_counts)(lines, window_lines, stride_lines, count_tokens)
    start = 0
    while start < len(lines):
        end = min(start + window_lines, len(lines))
        if count is not None:
            end = _fit_to_budget(start, end, max_tokens, count)
        passages.append(
            Passage(start + 1, end, offsets[start], offsets[end], "".join(lines[start:end]))
        )
        if end >= len(lines):
            break
        start = min(start + stride_lines, end)  # a shortened window never leaves a gap
    return passages


def _line_sums(lines, window_lines, stride_lines, count_tokens) -> Callable[[int, int], int]:
    """Count of lines [a, b) as the sum of per-line counts, each line counted once."""
    cum = [0]
    for n in count_tokens(lines):
        cum.append(cum[-1] + n)
    return lambda a, b: cum[b] - cum[a]


def _window_counts(lines, window_lines, stride_lines, count_tokens) -> Callable[[int, int], int]:
    """Count of lines [a, b) by tokenizing them; the unshortened layout in one call."""
    spans = _planned_windows(len(lines), window_lines, stride_lines)
    counted = dict(zip(spans, count_tokens(["".join(lines[a:b]) for a, b in spans])))

    def count(a: int, b: int) -> int:
        if (a, b) not in counted:
            counted[(a, b)] = count_tokens(["".join(lines[a:b])])[0]
        return counted[(a, b)]

    return count


def _planned_windows(n_lines: int, window_lines: int, stride_lines: int) -> list[tuple[int, int]]:
    """Line spans [start, end) of the windows if none needs shortening."""
    spans = []
    for start in range(0, n_lines, max(1, min(stride_lines, window_lines))):
        spans.append((start, min(start + window_lines, n_lines)))
        if spans[-1][1] >= n_lines:
            break
    return spans


def _fit_to_budget(start: int, end: int, max_tokens: int, count: Callable[[int, int], int]) -> int:
    """Shrink the window [start, end) until it fits ``max_tokens``; keep at least one line."""
    n = count(start, end)
    while n > max_tokens and end - start > 1:
        end = start + max(1, min(end - start - 1, int((end - start) * max_tokens / n)))
        n = count(start, end)
    return end


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_PY_LINE = re.compile(r"\r\n|\r|\n")  # the line breaks Python's tokenizer counts


def chunk_python(
    text: str,
    window_lines: int = 30,
    stride_lines: int = 15,
    max_tokens: int | None = None,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    additive: bool = False,
    max_lines: int = 60,
) -> list[Passage]:
    """Split Python source at function and class boundaries (``ast``), no overlap.

    Each top-level definition (decorators included) is one unit, the lines between
    definitions another; a definition that does not fit (``max_lines``, the token
    budget) is split at its nested definitions, and what still does not fit is cut
    into ``chunk_lines`` windows. Consecutive units are then packed into passages of
    up to ``window_lines`` lines that fit the budget. Source that does not parse is
    cut into windows. Line spans follow ``str.splitlines`` as ``chunk_lines`` does.

    >>> src = "import os\\n\\ndef a():\\n    return 1\\n\\n\\nclass B:\\n    x = 2\\n"
    >>> [(p.start_line, p.end_line) for p in chunk_python(src, window_lines=4)]
    [(1, 6), (7, 8)]
    """
    lines = text.splitlines(keepends=True)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        tree = None
    if tree is None or not lines:
        return chunk_lines(text, window_lines, stride_lines, max_tokens, count_tokens, additive)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    py_starts = [0] + [m.end() for m in _PY_LINE.finditer(text)]

    def line_of(py_line: int) -> int:  # 0-based splitlines index of a 1-based ast line's first char
        return bisect.bisect_right(offsets, py_starts[py_line - 1]) - 1

    def end_of(py_line: int) -> int:  # 1 + splitlines index of that ast line's last char
        last = (py_starts[py_line] if py_line < len(py_starts) else len(text)) - 1
        return bisect.bisect_right(offsets, max(last, 0))

    count: Callable[[int, int], int] | None = None
    if max_tokens is not None and count_tokens is not None:
        counter = count_tokens
        count = _line_sums(lines, window_lines, stride_lines, counter) if additive else (
            lambda a, b: counter(["".join(lines[a:b])])[0])

    def fits(a: int, b: int, limit: int) -> bool:
        return b - a <= limit and (count is None or max_tokens is None or count(a, b) <= max_tokens)

    def units(nodes: list[ast.stmt], start: int, end: int) -> list[tuple[int, int]]:
        """Partition lines [start, end) into definitions and the gaps between them."""
        out: list[tuple[int, int]] = []
        cur = start
        for node in nodes:
            if not isinstance(node, _DEFS):
                continue
            a = max(cur, line_of(min([node.lineno] + [d.lineno for d in node.decorator_list])))
            b = min(end, end_of(node.end_lineno or node.lineno))
            if b <= a:
                continue
            if a > cur:
                out.append((cur, a))
            inner = [n for n in node.body if isinstance(n, _DEFS)]
            out += units(node.body, a, b) if inner and not fits(a, b, max_lines) else [(a, b)]
            cur = b
        if cur < end:
            out.append((cur, end))
        return out

    packed: list[tuple[int, int]] = []
    for a, b in units(tree.body, 0, len(lines)):
        blank = packed and not "".join(lines[packed[-1][0] : a]).strip()
        if packed and (blank or not "".join(lines[a:b]).strip() or fits(packed[-1][0], b, window_lines)):
            packed[-1] = (packed[-1][0], b)  # blank lines never make a passage of their own
        else:
            packed.append((a, b))
    passages: list[Passage] = []
    for a, b in packed:
        if fits(a, b, max_lines):
            passages.append(Passage(a + 1, b, offsets[a], offsets[b], "".join(lines[a:b])))
            continue
        for p in chunk_lines("".join(lines[a:b]), window_lines, stride_lines, max_tokens,
                             count_tokens, additive):
            passages.append(Passage(p.start_line + a, p.end_line + a, p.start_char + offsets[a],
                                    p.end_char + offsets[a], p.text))
    return passages
