"""The benchmark's in-context baseline prefills the corpus once and reuses its KV cache per question.

That shortcut must equal putting the corpus tokens in front of every question and scoring
in one forward, and scoring one question must leave the shared cache untouched.
"""

import importlib.util
from pathlib import Path

import torch

from cartridges.kv import corpus_tokens
from cartridges.synthesis import chat_ids
from tests.cartridges.cart_setup import TEXT

_spec = importlib.util.spec_from_file_location(
    "bench_cartridges", Path(__file__).resolve().parents[2] / "bench" / "bench_cartridges.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

QA = [("What is Python?", "An interpreted, object-oriented programming language."),
      ("Is Python free?", "Yes, it is open source and free to use.")]


@torch.no_grad()
def _uncached(model, tok, prefix: torch.Tensor, question: str, answer: str) -> float:
    prompt = chat_ids(tok, [{"role": "user", "content": question}])
    target = tok(answer, add_special_tokens=False).input_ids
    ids = torch.tensor([prefix.tolist() + prompt + target])
    start = prefix.numel() + len(prompt)
    logits = model(input_ids=ids).logits[0, start - 1: -1]
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(target)[:, None]).mean().item()


def test_shared_prefix_cache_matches_corpus_in_every_prompt(lm):
    model, tok = lm
    prefix = corpus_tokens(tok, TEXT)[:150]
    layers = bench.prefix_kv(model, prefix)
    before = [(k.clone(), v.clone()) for k, v in layers]
    cached = [bench.answer_loglik(model, tok, layers, q, a) for q, a in QA]
    direct = [_uncached(model, tok, prefix, q, a) for q, a in QA]
    for c, d in zip(cached, direct):
        assert abs(c - d) < 1e-4
    # the corpus changes the scores (the prefix is really attended to) ...
    alone = [bench.answer_loglik(model, tok, [], q, a) for q, a in QA]
    assert max(abs(c - a) for c, a in zip(cached, alone)) > 1e-2
    # ... and scoring did not write into the shared cache
    assert all(torch.equal(k, k0) and torch.equal(v, v0) for (k, v), (k0, v0) in zip(layers, before))
    assert bench.answer_loglik(model, tok, layers, *QA[0]) == cached[0]
