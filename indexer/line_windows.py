"""Cut documents into passages of whole lines that fit the encoder.

A passage is a window of up to ``window_lines`` lines, windows starting every
``stride_lines`` lines (overlap keeps a function whole in at least one window).
A window whose text would exceed the encoder's token budget is shortened line
by line, so nothing the encoder sees is silently truncated. With ``additive``
(the caller knows a window's token count is the sum of its lines', as for BERT's
whitespace pre-tokenizer when lines end in ``\n``/``\r``) every line is counted
once in one batched call; otherwise the windows of the unshortened layout are
counted in one call and a shortened window's counts are asked one by one.
"""

from __future__ import annotations

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
