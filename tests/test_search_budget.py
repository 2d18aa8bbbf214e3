"""``max_tokens`` on search through REST (real uvicorn) and the CLI (a real subprocess)."""

from __future__ import annotations

import json

from tests.test_api import assert_problem
from tests.test_cli import memex

LONG = "".join(f"def parse_header_{i}(line):\n    return line.split(':', {i})\n"
               for i in range(80))  # 160 lines: 10 overlapping 30-line windows


def spans_apart(spans: list[dict]) -> bool:
    key = sorted((s["corpus"], s["document_id"], s["start_line"], s["end_line"]) for s in spans)
    return all(a[:2] != b[:2] or b[2] > a[3] + 1 for a, b in zip(key, key[1:]))


def test_rest_packs_hits_into_the_budget_and_plain_answers_stay_as_before(live_server):
    docs = [{"id": "p", "text": LONG, "path": "parse.py"},
            {"id": "q", "text": "Bread needs flour, water and salt.\n", "path": "bread.md"}]
    assert live_server.post("/v1/corpora", json={"name": "c", "documents": docs}).status_code == 201
    body = {"query": "parse a header line", "k": 8}
    plain = live_server.post("/v1/corpora/c/search", json=body).json()["results"][0]
    assert set(plain) == {"query", "hits"} and len(plain["hits"]) == 8

    roomy = live_server.post("/v1/corpora/c/search", json={**body, "max_tokens": 100_000})
    result = roomy.json()["results"][0]
    assert set(result) == {"query", "spans", "packing"} and spans_apart(result["spans"])
    packing = result["packing"]
    assert packing["cut"] == [] and packing["tokenizer"].startswith("BertTokenizer")
    assert packing["tokens_used"] == sum(s["tokens"] for s in result["spans"])
    covered = {(h["document_id"], n) for h in plain["hits"]
               for n in range(h["start_line"], h["end_line"] + 1)}
    assert covered == {(s["document_id"], n) for s in result["spans"]
                       for n in range(s["start_line"], s["end_line"] + 1)}
    lines = LONG.splitlines(keepends=True)
    for s in result["spans"]:
        if s["document_id"] == "p":
            assert s["text"] == "".join(lines[s["start_line"] - 1:s["end_line"]])

    budget = result["spans"][0]["tokens"] - 1  # the best span no longer fits
    tight = live_server.post("/v1/search", json={**body, "corpora": ["c"],
                                                  "max_tokens": budget}).json()["results"][0]
    assert tight["packing"]["tokens_used"] <= budget
    assert tight["packing"]["cut"][0]["start_line"] == result["spans"][0]["start_line"]
    assert_problem(live_server.post("/v1/corpora/c/search", json={**body, "max_tokens": 0}),
                   422, "VALIDATION_ERROR")


def test_cli_max_tokens_prints_whole_spans_and_what_was_cut(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "parse.py").write_text(LONG)
    home = tmp_path / "home"
    assert memex(home, "index", str(src), "--name", "src").returncode == 0
    out = memex(home, "search", "parse a header line", "-k", "6", "--max-tokens", "400",
                "--json")
    answer = json.loads(out.stdout)
    assert spans_apart(answer["spans"]) and answer["packing"]["tokens_used"] <= 400
    assert answer["spans"] and answer["packing"]["cut"]  # 6 windows of ~150 tokens: some cut
    text = memex(home, "search", "parse a header line", "-k", "6", "--max-tokens", "400")
    first = answer["spans"][0]
    assert f"parse.py:{first['start_line']}-{first['end_line']}" in text.stdout
    assert first["text"].splitlines()[-1] in text.stdout  # whole spans, not 8-line previews
    assert f"{answer['packing']['tokens_used']} of 400 tokens" in text.stderr
