from indexer.line_windows import chunk_lines


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
