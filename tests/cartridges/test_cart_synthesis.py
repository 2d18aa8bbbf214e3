"""Prefix-cached sampling gives each row what an unbatched run with its full prompt gives."""

import torch

from cartridges.config import CartridgeConfig
from cartridges.kv import corpus_tokens
from cartridges.sampling import prefill, sample_rows
from cartridges.synthesis import synthesize_batch
from tests.cartridges.cart_setup import TEXT


def _greedy_alone(model, prompt: list[int], steps: int, eos: int) -> list[int]:
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
            if token == eos:
                break
    return out


def test_shared_prefix_rows_match_unbatched_greedy(lm):
    model, tok = lm
    eos, pad = tok.eos_token_id, tok.pad_token_id
    a = tok("The Zephyr protocol sends heartbeats every seven seconds.").input_ids
    b = tok("Python is a programming language").input_ids
    # rows of unequal length; one diverges from its prefix before the prefix ends
    rows = [(0, a + tok(" Question: how often?").input_ids), (1, b + tok(" created by").input_ids),
            (0, a[:5] + tok(" something else entirely").input_ids)]
    got = sample_rows(model, prefill(model, [a, b], pad), rows, 6, 0.0, eos, pad, top_k=5)
    for (_, prompt), g in zip(rows, got):
        assert g.tokens == _greedy_alone(model, prompt, 6, eos)
        assert g.topk_ids.shape == (len(g.tokens), 5)
        assert g.topk_ids[:, 0].tolist() == g.tokens  # greedy: the chosen token is the top one
        assert torch.all(g.topk_logprobs[:, :-1] >= g.topk_logprobs[:, 1:])


def test_questions_share_chunks_and_draws_repeat(lm):
    model, tok = lm
    cfg = CartridgeConfig(p=8, num_samples=5, holdout=1, chunk_tokens=40, question_tokens=6,
                          answer_tokens=6, questions_per_chunk=2)
    ids = corpus_tokens(tok, TEXT)
    first = synthesize_batch(model, tok, ids, cfg, 0, 3)
    again = synthesize_batch(model, tok, ids, cfg, 0, 3)
    assert [s.ids.tolist() for s in first] == [s.ids.tolist() for s in again]
    for s in first:
        assert s.topk_ids.shape == (s.ids.numel() - s.answer_start, cfg.top_k)
