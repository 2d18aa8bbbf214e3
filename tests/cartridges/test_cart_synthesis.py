"""Prefix-cached sampling gives each row what an unbatched run with its full prompt gives."""

import random

import torch

from cartridges.config import CartridgeConfig
from cartridges.kv import corpus_tokens
from cartridges.sampling import prefill, sample_rows, score_rows
from cartridges.synthesis import recall_cues, recall_pair, synthesize_batch
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


def test_scored_rows_match_unbatched_teacher_forcing(lm):
    model, tok = lm
    pad = tok.pad_token_id
    a = tok("The Zephyr protocol sends heartbeats every seven seconds.").input_ids
    b = tok("Python is a programming language").input_ids
    answers = [tok(" Every seven seconds.").input_ids, tok(" created by Guido van Rossum").input_ids]
    rows = [(0, a + tok(" How often?").input_ids + answers[0]), (1, b + answers[1])]
    got = score_rows(model, prefill(model, [a, b], pad), rows, [len(x) for x in answers], pad, top_k=4)
    for (_, prompt), answer, g in zip(rows, answers, got):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt])).logits[0, -len(answer) - 1: -1]
        want = torch.log_softmax(logits.float(), -1).topk(4, -1)
        assert g.tokens == answer
        assert torch.equal(g.topk_ids, want.indices)
        assert torch.allclose(g.topk_logprobs, want.values, atol=1e-4)


def test_recall_cues_are_lines_or_sentences_with_their_answers():
    long_line = "First sentence of a long paragraph. " * 8 + "Last one."
    chunk = "fragment of a cut line\n## Install\n\n" + long_line + "\n- x\n"
    cues = recall_cues(chunk)
    assert cues[0] == ("Install", chunk.index("\n\n"))
    assert all(cue != "fragment of a cut line" for cue, _ in cues)  # the first line may be cut
    sentences = [c for c, _ in cues[1:]]
    assert sentences[0] == "First sentence of a long paragraph." and sentences[-1] == "Last one."
    assert "x" not in sentences  # too short to name anything
    for cue, end in cues:
        assert chunk[:end].rstrip().endswith(cue)


def test_recall_rows_answer_with_the_chunks_own_next_tokens(lm):
    model, tok = lm
    cfg = CartridgeConfig(p=8, num_samples=5, holdout=1, chunk_tokens=120, answer_tokens=12,
                          questions_per_chunk=4, recall_share=1.0)
    ids = corpus_tokens(tok, TEXT)
    samples = synthesize_batch(model, tok, ids, cfg, 0, 4)
    assert [s.kind for s in samples] == ["recall"] * 4
    text = tok.decode(ids)
    for s in samples:
        answer = tok.decode(s.ids[s.answer_start:])
        assert 0 < s.ids.numel() - s.answer_start <= 12
        assert answer.strip()[:20] in text  # the corpus's own words, not generated ones
        assert s.topk_ids.shape == (s.ids.numel() - s.answer_start, cfg.top_k)
    half = synthesize_batch(model, tok, ids, CartridgeConfig(**{**vars(cfg), "recall_share": 0.5}), 0, 4)
    assert sum(s.kind == "recall" for s in half) == 2
    assert recall_pair("one line only", random.Random(0), tok, 8) is None  # no cue after line 1
