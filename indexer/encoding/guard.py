"""Quality guard: a faster encoder is used only if it agrees with the fp32 reference.

The validation sample is real code nobody wrote for this check: functions of a
fixed list of Python standard-library modules (as documents, path prepended)
and the first lines of their docstrings (as queries). Both encoders embed it
and are compared on

- ``cosine_mean`` / ``cosine_p5``: cosine between the two vectors of each kept
  document token (mean, 5th percentile);
- ``top1``: share of queries whose best MaxSim document is the same;
- ``spearman``: mean Spearman correlation of the per-query MaxSim rankings.

An encoder passes if every figure is at or above ``THRESHOLDS``. Set
``MEMEX_ENCODER_GUARD=0`` to skip the check (trusting the fast path unseen).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable

import numpy as np

from indexer import config

# int8 MiniLM measured cosine_mean 0.990-0.995, top1 0.925-0.975, spearman 0.992-0.995 depending
# on the recipe (docs/encoder-runtime.md);
# the bars sit below that with margin but far above what a broken export gives (cosine < 0.9).
THRESHOLDS = {"cosine_mean": 0.97, "cosine_p5": 0.90, "top1": 0.85, "spearman": 0.95}
SAMPLE_MODULES = ("json.decoder", "textwrap", "shlex", "fnmatch", "base64", "glob", "ntpath")
SAMPLE_DOCS = 40


def guard_enabled() -> bool:
    return config.current().encoder_guard


def validation_sample(limit: int = SAMPLE_DOCS,
                      modules: tuple[str, ...] = SAMPLE_MODULES) -> tuple[list[str], list[str]]:
    """(documents, queries): stdlib functions with docstrings, query i targets document i."""
    docs, queries = [], []
    for name in modules:
        try:
            module = importlib.import_module(name)
            source = inspect.getsource(module)
        except (ImportError, OSError, TypeError):  # frozen or source-less installs
            continue
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc or not doc.strip():
                continue
            body = "\n".join(lines[node.lineno - 1 : node.end_lineno][:30])
            docs.append(f"{name.replace('.', '/')}.py\n{body}")
            queries.append(doc.strip().splitlines()[0])
            if len(docs) == limit:
                return docs, queries
    return docs, queries


def maxsim(query: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """MaxSim scores of one query against each document.

    Parameters
    ----------
    query : (q_tokens, dim)
    docs : list of (d_tokens, dim)

    Returns
    -------
    (len(docs),) sum over query tokens of the best document-token dot product.

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> maxsim(q, [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8], [0.0, 1.0]])]).tolist()
    [1.0, 1.6]
    """
    return np.array([float((query @ d.T).max(axis=1).sum()) for d in docs])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(
    ref_docs: list[np.ndarray],
    ref_queries: list[np.ndarray],
    new_docs: list[np.ndarray],
    new_queries: list[np.ndarray],
) -> dict[str, float]:
    """Agreement figures of a candidate encoder's output with the reference's (same inputs)."""
    cos = np.concatenate([(r * n).sum(axis=1) for r, n in zip(ref_docs, new_docs)])
    top1, rho = [], []
    for rq, nq in zip(ref_queries, new_queries):
        ref_scores, new_scores = maxsim(rq, ref_docs), maxsim(nq, new_docs)
        top1.append(ref_scores.argmax() == new_scores.argmax())
        rho.append(spearman(ref_scores, new_scores))
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_p5": float(np.percentile(cos, 5)),
        "top1": float(np.mean(top1)),
        "spearman": float(np.mean(rho)),
    }


def passes(agreement: dict[str, float]) -> bool:
    return all(agreement.get(k, -1.0) >= bar for k, bar in THRESHOLDS.items())


def measure_agreement(
    encode_reference: Callable[[list[str], list[str]], tuple[list, list]],
    encode_candidate: Callable[[list[str], list[str]], tuple[list, list]],
) -> dict[str, float]:
    """Run both encoders on the validation sample; each maps (docs, queries) to their vectors."""
    docs, queries = validation_sample()
    if not docs:
        return {"samples": 0.0}  # fails ``passes``: no sample, no proof
    ref_docs, ref_queries = encode_reference(docs, queries)
    new_docs, new_queries = encode_candidate(docs, queries)
    return {**compare(ref_docs, ref_queries, new_docs, new_queries), "samples": float(len(docs))}
