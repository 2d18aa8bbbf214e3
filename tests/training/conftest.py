"""Real training data: docstring first lines of stdlib functions as queries, their
bodies (docstring removed) as positives, another function of the module as negative."""

from __future__ import annotations

import ast
import inspect
import shlex
import textwrap

import pytest

from indexer.training import Example


def _pairs(module) -> list[tuple[str, str]]:
    src = inspect.getsource(module)
    lines = src.splitlines()
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
            query = ast.get_docstring(node).strip().splitlines()[0]
            body = "\n".join(lines[node.lineno - 1:node.end_lineno])
            out.append((query, body.replace(ast.get_docstring(node, clean=False), "")))
    return out


@pytest.fixture(scope="session")
def examples() -> list[Example]:
    pairs = _pairs(textwrap) + _pairs(shlex)
    return [Example(q, p, [pairs[(i + 1) % len(pairs)][1], pairs[(i + 5) % len(pairs)][1]])
            for i, (q, p) in enumerate(pairs)]
