"""Cartridge quality and cost on a FAQ corpus.

For every (question, answer) of ``qa.jsonl``: the mean per-token log-likelihood
of the answer given the question as a chat turn, with (a) the corpus's raw
tokens in context (as much as fits), (b) the trained cartridge, (b0) the
untrained cartridge (first p corpus tokens), (c) nothing. Prints the share of
the (a)-(c) gap recovered, bytes of the cartridge vs the corpus's KV cache,
training tokens/s, and decode tokens/s with cartridge vs corpus in context.

    python bench/bench_cartridges.py --data /work/shared/data/faq-general
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cartridges.config import CartridgeConfig
from cartridges.fileformat import read_cartridge
from cartridges.generate import decode
from cartridges.kv import context_window, corpus_tokens, init_from_prefix, load_lm
from cartridges.synthesis import chat_ids
from cartridges.train import cart_layers, train_cartridge


@torch.no_grad()
def prefix_kv(model, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """KV cache of raw tokens ``ids`` ``[n]``: per layer ``[kv_heads, n, head_dim]``."""
    cache = model(input_ids=ids.unsqueeze(0), use_cache=True).past_key_values
    return [(layer.keys[0], layer.values[0]) for layer in cache.layers]


@torch.no_grad()
def answer_loglik(model, tokenizer, layers, question: str, answer: str) -> float:
    """Mean log-probability per answer token after ``layers`` (may be empty)."""
    from cartridges.kv import forward_with_prefix

    prompt = chat_ids(tokenizer, [{"role": "user", "content": question}])
    target = tokenizer(answer, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt + target])
    logits = forward_with_prefix(model, layers, ids)[0, len(prompt) - 1: -1]
    return torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(target)[:, None]).mean().item()


def kv_bytes(layers) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--p", type=int, default=128)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=384)
    ap.add_argument("--answer-tokens", type=int, default=48)
    ap.add_argument("--qa", type=int, default=0, help="limit on QA pairs (0: all)")
    ap.add_argument("--decode-tokens", type=int, default=24)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = CartridgeConfig(p=args.p, num_samples=args.samples, holdout=max(2, args.samples // 8),
                          chunk_tokens=args.chunk, question_tokens=32, answer_tokens=args.answer_tokens,
                          steps=args.steps, batch_size=args.batch, checkpoint_every=4)
    text = (args.data / "corpus.md").read_text()
    qa = [json.loads(line) for line in (args.data / "qa.jsonl").read_text().splitlines() if line.strip()]
    qa = qa[: args.qa] if args.qa else qa
    model, tok = load_lm(cfg.model)
    ids = corpus_tokens(tok, text)
    work = Path("bench/.cache/cartridges") / args.data.name
    t0 = time.perf_counter()
    path = train_cartridge(text, args.data.name, 1, cfg, work,
                           progress=lambda d, t, s: print(f"  {s} {d}/{t} {time.perf_counter() - t0:.0f}s", flush=True))
    cart = read_cartridge(path)
    training = cart.header["training"]
    print(f"training: {training['steps']} steps, heldout loss {training['heldout_loss_init']:.4f} -> "
          f"{training['heldout_loss_final']:.4f}, {training['train_tokens_per_s']} tokens/s")

    longest = max(len(tok(q["question"] + q["answer"]).input_ids) for q in qa) + 40
    fit = min(ids.numel(), context_window(model) - longest)
    t1 = time.perf_counter()
    corpus_layers = prefix_kv(model, ids[:fit])
    prefill_s = time.perf_counter() - t1
    fresh = cart_layers(init_from_prefix(model, ids, cfg.p, cfg.frozen_tokens))
    conditions = {"corpus": corpus_layers, "cartridge": cart.layers(), "untrained": fresh, "nothing": []}
    scores = {name: [] for name in conditions}
    for item in qa:
        for name, layers in conditions.items():
            scores[name].append(answer_loglik(model, tok, layers, item["question"], item["answer"]))
    mean = {name: sum(v) / len(v) for name, v in scores.items()}
    gap = mean["corpus"] - mean["nothing"]
    print(f"\ncorpus {ids.numel()} tokens, in context {fit} tokens (window {context_window(model)}); "
          f"{len(qa)} QA pairs")
    print("| condition | mean answer log-lik/token | share of gap |")
    print("|---|---|---|")
    for name, value in mean.items():
        print(f"| {name} | {value:.4f} | {(value - mean['nothing']) / gap:.3f} |")
    cb, fb = kv_bytes(cart.layers()), kv_bytes(corpus_layers)
    full = fb * ids.numel() // fit
    print(f"cartridge {cb} bytes vs corpus KV {full} bytes (in-context part {fb}): {full / cb:.1f}x smaller")

    prompt = chat_ids(tok, [{"role": "user", "content": qa[0]["question"]}])
    for name in ("cartridge", "corpus"):
        t2 = time.perf_counter()
        out = decode(model, tok, conditions[name], prompt, args.decode_tokens, temperature=0.0)
        n = len(out)
        secs = time.perf_counter() - t2
        print(f"decode with {name}: {n} tokens in {secs:.1f}s = {n / secs:.2f} tokens/s "
              f"(KV held {kv_bytes(conditions[name]) / 2**20:.1f} MiB + prompt)")
    print(f"corpus prefill (needed each time without a cartridge): {fit} tokens in {prefill_s:.1f}s")


if __name__ == "__main__":
    main()
