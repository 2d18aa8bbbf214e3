"""Self-study synthesis throughput: conversations/s, the previous method vs prefix caching.

Baseline (the method cartridges/synthesis.py used before): one chunk per conversation,
the chunk prefilled twice per conversation (question turn, answer turn) by
``model.generate``, the full-vocabulary logits of every answer step kept, then cut to
top-k. Now: ``questions_per_chunk`` conversations per chunk, the chunk prefilled once
for both turns (cartridges/sampling.py), top-k kept per step. Same settings
otherwise, same machine, same run; each is measured after a one-batch warm-up.

    python -m bench.bench_synthesis --data ../shared/data/faq-general --conversations 8
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from cartridges.config import CartridgeConfig
from cartridges.kv import corpus_tokens
from cartridges.synthesis import SEED_PROMPTS, Sample, chat_ids, synthesize_batch
from indexer.models import load_lm


@torch.no_grad()
def baseline_batch(model, tok, corpus: torch.Tensor, cfg: CartridgeConfig, index: int,
                   size: int) -> list[Sample]:
    """The previous synthesis: a chunk per conversation, ``model.generate`` per turn."""
    rng = random.Random(cfg.seed * 1_000_003 + index)
    n, chunk_len = corpus.numel(), min(cfg.chunk_tokens, corpus.numel())
    systems, seeds = [], []
    for _ in range(size):
        start = rng.randrange(0, n - chunk_len + 1)
        systems.append({"role": "system", "content": "Here is an excerpt of a document.\n\n"
                        + tok.decode(corpus[start:start + chunk_len])})
        kind = rng.choice(sorted(SEED_PROMPTS))
        seeds.append(rng.choice(SEED_PROMPTS[kind]))

    def generate(prompts: list[list[int]], max_new: int):
        width = max(map(len, prompts))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in prompts])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in prompts])
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=True,
                             temperature=cfg.temperature, top_p=None, top_k=None,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             return_dict_in_generate=True, output_logits=True)
        return out.sequences[:, width:], torch.stack(out.logits, 1).float()

    def until_eos(row: list[int]) -> list[int]:
        return row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row

    q_prompts = [chat_ids(tok, [s, {"role": "user", "content": q}]) for s, q in zip(systems, seeds)]
    q_tokens, _ = generate(q_prompts, cfg.question_tokens)
    questions = [tok.decode(until_eos(r), skip_special_tokens=True).strip() or s
                 for r, s in zip(q_tokens.tolist(), seeds)]
    a_tokens, a_logits = generate([chat_ids(tok, [s, {"role": "user", "content": q}])
                                   for s, q in zip(systems, questions)], cfg.answer_tokens)
    samples = []
    for i, q in enumerate(questions):
        answer = until_eos(a_tokens[i].tolist())
        top = torch.log_softmax(a_logits[i, : len(answer)], -1).topk(cfg.top_k, -1)
        student = chat_ids(tok, [{"role": "user", "content": q}])
        samples.append(Sample(torch.tensor(student + answer), len(student), top.indices, top.values))
    return samples


def measure(methods: dict, batches: int, size: int) -> dict[str, dict[str, float]]:
    """Run the methods batch by batch in turn, so a shared machine's load drift hits all alike;
    wall and CPU seconds (this process, all threads) per method."""
    for make in methods.values():
        make(10_000, 2)  # warm-up, not counted
    totals = {name: {"wall": 0.0, "cpu": 0.0, "conversations": 0, "answer_tokens": 0} for name in methods}
    for b in range(batches):
        for name, make in methods.items():
            w, c = time.perf_counter(), time.process_time()
            out = make(b, size)
            t = totals[name]
            t["wall"] += time.perf_counter() - w
            t["cpu"] += time.process_time() - c
            t["conversations"] += len(out)
            t["answer_tokens"] += sum(s.ids.numel() - s.answer_start for s in out)
            print(f"  batch {b} {name}: {time.perf_counter() - w:.1f}s wall", flush=True)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--conversations", type=int, default=8, help="per method, after the warm-up")
    ap.add_argument("--batch", type=int, default=8, help="conversations per generation batch")
    ap.add_argument("--questions-per-chunk", type=int, nargs="+", default=[4])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = CartridgeConfig()
    model, tok = load_lm(cfg.model)
    ids = corpus_tokens(tok, (args.data / "corpus.md").read_text())
    batches = max(1, args.conversations // args.batch)
    print(f"{args.data.name}: chunks {cfg.chunk_tokens} tokens, questions <= {cfg.question_tokens}, "
          f"answers <= {cfg.answer_tokens}, top-k {cfg.top_k}, batch {args.batch}, {args.threads} thread(s)")
    methods = {"baseline (chunk per conversation, generate)":
               lambda b, n: baseline_batch(model, tok, ids, cfg, b, n)}
    for q in args.questions_per_chunk:
        c = CartridgeConfig(questions_per_chunk=q)
        methods[f"prefix-cached, {q} questions per chunk"] = \
            lambda b, n, c=c: synthesize_batch(model, tok, ids, c, b, n)
    totals = measure(methods, batches, args.batch)
    base = next(iter(totals.values()))
    print("| method | conversations | answer tokens each | s/conversation (wall) | conversations/s (CPU) "
          "| ratio to baseline (CPU) |")
    print("|---|---|---|---|---|---|")
    for name, t in totals.items():
        n = t["conversations"]
        print(f"| {name} | {n} | {t['answer_tokens'] / n:.0f} | {t['wall'] / n:.2f} | {n / t['cpu']:.3f} "
              f"| {base['cpu'] / t['cpu']:.2f}x |")


if __name__ == "__main__":
    main()
