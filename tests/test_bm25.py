"""BM25 over code: identifiers match by their words and as a whole, in any naming style."""

import numpy as np

from indexer.bm25 import Analyzer, BM25Index, terms


def test_identifiers_give_their_words_and_themselves():
    assert terms("parse_url") == ["parse", "url", "parse_url"]
    assert terms("parseUrl") == ["parse", "url", "parse_url"]
    assert terms("HTTPServer.serve_forever") == ["http", "server", "http_server",
                                                 "serve", "forever", "serve_forever"]
    assert terms("MAX_RETRIES = 3") == ["max", "retries", "max_retries"]
    assert terms("__init__ x md5") == ["init", "md", "md_5"]  # one-character words dropped
    assert terms("getURLs IDsFor") == ["get", "urls", "get_urls", "ids", "for", "ids_for"]
    assert terms("größe_wert") == ["größe", "wert", "größe_wert"]


def test_analyzer_stems_words_but_not_whole_identifiers():
    analyse = Analyzer()
    assert analyse("the parsed URLs") == ["pars", "url"]
    assert analyse("parse_urls") == ["pars", "url", "parse_urls"]


PASSAGES = [
    "net/util.py\ndef parseUrl(text):\n    scheme, rest = text.split(':', 1)\n    return scheme, rest",
    "net/words.py\ndef parse(text):\n    return text.split()\n\nurl = 'https://example.org'",
    "net/other.py\ndef fetch(address):\n    return open_connection(address)",
    "net/more.py\ndef split_host(text):\n    return text.rsplit(':', 1)",
]


def ranking(index: BM25Index, query: str, allowed=None) -> list[int]:
    return [i for i, _ in index.search([query], 10, allowed)[0]]


def test_identifier_query_finds_it_in_another_naming_style():
    index = BM25Index.build([10, 11, 12, 13], PASSAGES)
    # the whole identifier outranks a passage that merely has both words
    assert ranking(index, "parse_url")[:2] == [10, 11]
    assert ranking(index, "ParseURL")[:2] == [10, 11]
    # prose words find a snake_case or camelCase definition
    assert ranking(index, "split the host")[0] == 13
    assert ranking(index, "parsing URLs")[0] in (10, 11)
    assert ranking(index, "open connection") == [12]


def test_search_filters_and_empty_cases():
    index = BM25Index.build([10, 11, 12, 13], PASSAGES)
    assert ranking(index, "parse_url", np.array([11, 12])) == [11]
    assert ranking(index, "the of and") == []
    assert ranking(index, "zebra") == []
    assert BM25Index.build([], []).search(["parse_url"], 5) == [[]]
