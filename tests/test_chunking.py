from indexer.line_windows import chunk_lines, chunk_python


def text_of(n: int) -> str:
    return "".join(f"line {i}\n" for i in range(1, n + 1))


def test_windows_overlap_and_cover_every_line():
    passages = chunk_lines(text_of(100), window_lines=30, stride_lines=15)
    covered = set()
    for p in passages:
        assert p.end_line - p.start_line + 1 <= 30
        covered |= set(range(p.start_line, p.end_line + 1))
    assert covered == set(range(1, 101))
    assert passages[1].start_line == 16


def test_line_and_char_spans_match_the_text():
    text = text_of(40)
    for p in chunk_lines(text, 10, 5):
        assert text[p.start_char : p.end_char] == p.text
        assert p.text.splitlines()[0] == f"line {p.start_line}"
        assert p.text.splitlines()[-1] == f"line {p.end_line}"


def test_token_budget_shortens_windows_without_gaps():
    count = lambda texts: [len(t.split()) for t in texts]  # noqa: E731 - 2 "tokens" a line
    passages = chunk_lines(text_of(60), 30, 15, max_tokens=20, count_tokens=count)
    assert all(count([p.text])[0] <= 20 for p in passages)
    lines = set()
    for p in passages:
        lines |= set(range(p.start_line, p.end_line + 1))
    assert lines == set(range(1, 61))


def test_a_single_huge_line_still_makes_one_passage():
    passages = chunk_lines("x " * 10000, max_tokens=50, count_tokens=lambda t: [len(x) for x in t])
    assert len(passages) == 1 and passages[0].start_line == 1


def test_empty_text_has_no_passages():
    assert chunk_lines("") == []


SOURCE = '''"""A module."""
import os


@decorator
def small(a):
    return a + 1


class Big:
    """A class longer than the passage limit: split at its methods."""

    x = 1

''' + "".join(f"    def method_{i}(self):\n        return {i}\n\n" for i in range(40)) + '''

def long_function():
''' + "".join(f"    step_{i} = {i}\n" for i in range(90)) + '''    return step_0
'''


def lines_of(passages):
    return [line for p in passages for line in range(p.start_line, p.end_line + 1)]


def test_python_passages_cover_every_line_once_with_exact_spans():
    passages = chunk_python(SOURCE, window_lines=30, stride_lines=15)
    lines = SOURCE.splitlines(keepends=True)
    for p in passages:
        assert p.text == "".join(lines[p.start_line - 1 : p.end_line])
        assert SOURCE[p.start_char : p.end_char] == p.text
    windowed = lines.index("def long_function():\n") + 1  # the one definition cut into windows
    covered = lines_of(p for p in passages if p.end_line < windowed)  # the rest: no overlap
    assert covered == sorted(set(covered))
    assert set(lines_of(passages)) == set(range(1, len(lines) + 1))


def test_python_passages_start_at_definitions():
    passages = chunk_python(SOURCE, window_lines=30, stride_lines=15)
    starts = {p.start_line for p in passages}
    lines = SOURCE.splitlines()
    assert lines.index("@decorator") + 1 in starts or passages[0].end_line > lines.index("@decorator")
    for i in (3, 17, 39):  # methods of the split class begin a passage or sit whole inside one
        at = lines.index(f"    def method_{i}(self):") + 1
        assert any(p.start_line <= at and at + 1 <= p.end_line for p in passages)
    assert lines.index("def long_function():") + 1 in starts


def test_a_long_definition_is_cut_into_windows_under_the_budget():
    count = lambda texts: [len(t.split()) for t in texts]  # noqa: E731
    passages = chunk_python(SOURCE, 30, 15, max_tokens=60, count_tokens=count)
    assert all(count([p.text])[0] <= 60 for p in passages)
    start = SOURCE.splitlines().index("def long_function():") + 1
    inside = [p for p in passages if p.start_line >= start]
    assert len(inside) > 2 and inside[1].start_line < inside[0].end_line  # overlapping windows
    assert set(lines_of(passages)) == set(range(1, len(SOURCE.splitlines()) + 1))


def test_python_that_does_not_parse_falls_back_to_windows():
    text = "def broken(:\n" + text_of(50)
    assert chunk_python(text, 30, 15) == chunk_lines(text, 30, 15)


def test_line_breaks_python_does_not_count_keep_spans_exact():
    text = "def a():\n    x = 1\x0c\n    return x\n\n\ndef b():\r\n    return 2\r\n"
    passages = chunk_python(text, window_lines=3)
    lines = text.splitlines(keepends=True)
    assert [p.text for p in passages] == ["".join(lines[p.start_line - 1 : p.end_line]) for p in passages]
    assert set(lines_of(passages)) == set(range(1, len(lines) + 1))
    assert passages[-1].text.startswith("def b():")
