"""Cartridge quality and cost on a FAQ corpus.

For every (question, answer) of ``qa.jsonl``: the mean per-token log-likelihood
of the answer given the question as a chat turn, with (a) the corpus's raw
tokens in context (as much as fits), (b) the trained cartridge, (b0) the
untrained cartridge (first p corpus tokens; also tokens spread over the corpus),
(c) nothing. Prints the share of the (a)-(c) gap recovered and the trained
cartridge's gain over its initialisation, each with a 90% bootstrap interval over
questions; with ``--budget`` the run is planned by the budget and its wall time is
compared with it; bytes of the cartridge vs the corpus's KV cache,
training tokens/s, and decode tokens/s with cartridge vs corpus in context.

    python -m bench.bench_cartridges --data ../shared/data/faq-general
    python -m bench.bench_cartridges --data ../shared/data/faq-general --budget 600
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.data import CACHE
from cartridges.config import INITS, CartridgeConfig
from cartridges.fileformat import read_cartridge
from cartridges.generate import decode
from cartridges.kv import context_window, corpus_tokens
from cartridges.synthesis import chat_ids
from cartridges.train import cart_layers, init_cartridge, train_cartridge
from indexer.models import load_lm


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


def peak_rss_mib() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def bootstrap_share(scores: dict[str, list[float]], rounds: int = 2000, name: str = "cartridge",
                    minus: str | None = None) -> tuple[float, float]:
    """5th and 95th percentile of ``name``'s share of the gap (less ``minus``'s share, when
    given: e.g. the gain of the trained cartridge over its initialisation), resampling questions."""
    rng = random.Random(0)
    n, shares = len(scores["nothing"]), []
    for _ in range(rounds):
        pick = [rng.randrange(n) for _ in range(n)]
        m = {k: sum(scores[k][i] for i in pick) / n for k in scores}
        if m["corpus"] != m["nothing"]:
            share = (m[name] - m["nothing"]) / (m["corpus"] - m["nothing"])
            if minus:
                share -= (m[minus] - m["nothing"]) / (m["corpus"] - m["nothing"])
            shares.append(share)
    shares.sort()
    return shares[len(shares) // 20], shares[len(shares) * 19 // 20]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--p", type=int, default=None, help="default 128; with --budget, the library's")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=384)
    ap.add_argument("--answer-tokens", type=int, default=None,
                    help="default 48; with --budget, the library's")
    ap.add_argument("--qa", type=int, default=0, help="limit on QA pairs (0: all)")
    ap.add_argument("--decode-tokens", type=int, default=24)
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds: CartridgeConfig's defaults (what `memex cartridge train --budget` "
                         "uses) with conversations and steps planned by a probe; other knobs but --p ignored")
    ap.add_argument("--init", choices=INITS, default="first")
    ap.add_argument("--lr", type=float, default=None, help="default: the library's (also with --budget)")
    ap.add_argument("--recall-share", type=float, default=None,
                    help="share of recall conversations; default: the library's (also with --budget)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None,
                    help="work dir for samples and checkpoints "
                         "(default bench/.cache/cartridges/<data name>); "
                         "a run with other data settings (p, samples) needs its own")
    ap.add_argument("--eval-only", action="store_true",
                    help="score the cartridge already in --work (e.g. on more QA pairs) without training")
    ap.add_argument("--stop-after", type=float, default=0,
                    help="seconds after which no new synthesis batch or training step starts; the run "
                         "saves its progress and exits, and the same command resumes it (0: no limit)")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    expert = {**({"lr": args.lr} if args.lr else {}),
              **({"recall_share": args.recall_share} if args.recall_share is not None else {}),
              **({"answer_tokens": args.answer_tokens} if args.answer_tokens else {})}
    if args.budget:
        cfg = CartridgeConfig(budget_seconds=args.budget, init=args.init,
                              **({"p": args.p} if args.p else {}), **expert)
    else:
        cfg = CartridgeConfig(p=args.p or 128, num_samples=args.samples, holdout=max(2, args.samples // 8),
                              chunk_tokens=args.chunk, question_tokens=32, steps=args.steps,
                              batch_size=args.batch, checkpoint_every=4, init=args.init,
                              **{"answer_tokens": 48, **expert})
    text = (args.data / "corpus.md").read_text()
    qa = [json.loads(line) for line in (args.data / "qa.jsonl").read_text().splitlines() if line.strip()]
    qa = qa[: args.qa] if args.qa else qa
    model, tok = load_lm(cfg.model)
    ids = corpus_tokens(tok, text)
    work = args.work or CACHE / "cartridges" / args.data.name
    t0 = time.perf_counter()
    stop = (lambda: time.perf_counter() - t0 > args.stop_after) if args.stop_after else (lambda: False)
    stages: dict[str, list[tuple[int, float]]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, []).append((done, time.perf_counter()))
        print(f"  {stage} {done}/{total} {time.perf_counter() - t0:.0f}s", flush=True)

    def planned(plan, config) -> None:
        print(plan.describe(), flush=True)

    if args.eval_only:
        path = work / "cartridge.safetensors"
        if not path.exists():
            ap.error(f"--eval-only: no cartridge in {work}")
    else:
        path = train_cartridge(text, args.data.name, 1, cfg, work, progress, should_stop=stop,
                               on_plan=planned)
    synth = stages.get("synthesis", [])
    if len(synth) > 1 and synth[-1][0] > synth[0][0]:
        n, secs = synth[-1][0] - synth[0][0], synth[-1][1] - synth[0][1]
        print(f"synthesis in this run: {n} conversations in {secs:.0f}s = {secs / n:.1f} s/conversation")
    if path is None:
        print(f"stopped after {time.perf_counter() - t0:.0f}s with progress saved in {work}; "
              "rerun the same command to resume")
        return
    cart = read_cartridge(path)
    training = cart.header["training"]
    print(f"training: {training['steps']} steps, heldout loss {training['heldout_loss_init']:.4f} -> "
          f"{training['heldout_loss_final']:.4f}, {training['train_tokens_per_s']} tokens/s")
    print(f"held-out verdict: gain_over_init {training.get('gain_over_init')} "
          f"(interval {training.get('gain_interval')}, within noise {training.get('gain_within_noise')})")
    if args.budget:
        wall = training["wall_seconds"]
        print(f"budget {args.budget:.0f} s, run took {wall:.0f} s in train_cartridge: "
              f"{wall / args.budget:.2f}x the budget", flush=True)

    rss_before = peak_rss_mib()
    longest = max(len(tok(q["question"] + q["answer"]).input_ids) for q in qa) + 40
    fit = min(ids.numel(), context_window(model) - longest)
    t1 = time.perf_counter()
    corpus_layers = prefix_kv(model, ids[:fit])
    prefill_s = time.perf_counter() - t1
    rss_prefill = peak_rss_mib()
    inits = {name: cart_layers(init_cartridge(model, tok, ids, replace(cfg, init=name), work))
             for name in INITS}
    conditions = {"corpus": corpus_layers, "cartridge": cart.layers(), "untrained": inits[cfg.init],
                  **{f"untrained-{n}": v for n, v in inits.items() if n != cfg.init}, "nothing": []}
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
    low, high = bootstrap_share(scores)
    print(f"share of gap recovered by the cartridge: {(mean['cartridge'] - mean['nothing']) / gap:.3f} "
          f"(90% bootstrap interval over questions {low:.3f} to {high:.3f})")
    for name in conditions:
        if name.startswith("untrained"):
            lo, hi = bootstrap_share(scores, name=name)
            glo, ghi = bootstrap_share(scores, minus=name)
            gain = (mean["cartridge"] - mean[name]) / gap
            print(f"{name}: share {(mean[name] - mean['nothing']) / gap:.3f} ({lo:.3f} to {hi:.3f}); "
                  f"trained minus it {gain:+.3f} ({glo:+.3f} to {ghi:+.3f})")
    cb, fb = kv_bytes(cart.layers()), kv_bytes(corpus_layers)
    full = fb * ids.numel() // fit
    print(f"cartridge {cb} bytes vs corpus KV {full} bytes (in-context part {fb}): {full / cb:.1f}x smaller")

    prompt = chat_ids(tok, [{"role": "user", "content": qa[0]["question"]}])
    for name in ("cartridge", "corpus") if args.decode_tokens else ():
        t2 = time.perf_counter()
        out = decode(model, tok, conditions[name], prompt, args.decode_tokens, temperature=0.0)
        n = len(out)
        secs = time.perf_counter() - t2
        print(f"decode with {name}: {n} tokens in {secs:.1f}s = {n / secs:.2f} tokens/s "
              f"(KV held {kv_bytes(conditions[name]) / 2**20:.1f} MiB + prompt)")
    print(f"corpus prefill (needed each time without a cartridge): {fit} tokens in {prefill_s:.1f}s")
    print(f"peak RSS: {rss_before} MiB before the corpus prefill "
          "(model, cartridge, training if it ran here), "
          f"{rss_prefill} MiB after it")


if __name__ == "__main__":
    main()
