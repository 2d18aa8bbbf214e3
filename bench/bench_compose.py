"""Composition: two cartridges of two corpora concatenated, questions of each answered.

For corpus X (each of the two): mean answer log-likelihood per token of X's QA pairs with
X's corpus in context (as much as fits), X's cartridge alone, the concatenation
``[A | B]`` (same order for both corpora, so B's cartridge sits after A's), and nothing.
Prints each share of the gap alone and composed, and composed / alone, with 90%
bootstrap intervals over questions.

    python -m bench.bench_compose --data ../shared/data/faq-general bench/.cache/faq-msgpack \\
        --cartridges A.safetensors B.safetensors
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from bench.bench_cartridges import answer_loglik, bootstrap_share, prefix_kv
from cartridges.fileformat import read_cartridge
from cartridges.kv import context_window, corpus_tokens
from indexer.models import load_lm


def ratio_interval(scores: dict[str, list[float]], rounds: int = 2000) -> tuple[float, float]:
    """5th/95th percentile of share(composed) / share(alone), resampling questions."""
    rng = random.Random(0)
    n, out = len(scores["nothing"]), []
    for _ in range(rounds):
        pick = [rng.randrange(n) for _ in range(n)]
        m = {k: sum(v[i] for i in pick) / n for k, v in scores.items()}
        alone = m["alone"] - m["nothing"]
        if alone != 0 and m["corpus"] != m["nothing"]:
            out.append((m["composed"] - m["nothing"]) / alone)
    out.sort()
    return out[len(out) // 20], out[len(out) * 19 // 20]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, nargs=2, required=True)
    ap.add_argument("--cartridges", type=Path, nargs=2, required=True,
                    help="one per data folder, same order")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    carts = [read_cartridge(p) for p in args.cartridges]
    model, tok = load_lm(carts[0].header["model_id"])
    layers = [c.layers() for c in carts]
    composed = [(torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1)) for a, b in zip(*layers)]
    print(f"composition: p = {carts[0].p} + {carts[1].p} = {composed[0][0].shape[1]}")
    print("| corpus | QA pairs | share alone (90% CI) | share composed (90% CI) "
          "| composed / alone (90% CI) |")
    print("|---|---|---|---|---|")
    for data, own in zip(args.data, layers):
        qa = [json.loads(x) for x in (data / "qa.jsonl").read_text().splitlines() if x.strip()]
        ids = corpus_tokens(tok, (data / "corpus.md").read_text())
        longest = max(len(tok(q["question"] + q["answer"]).input_ids) for q in qa) + 40
        fit = min(ids.numel(), context_window(model) - longest)
        conditions = {"corpus": prefix_kv(model, ids[:fit]), "alone": own, "composed": composed,
                      "nothing": []}
        scores: dict[str, list[float]] = {k: [] for k in conditions}
        for item in qa:
            for name, lay in conditions.items():
                scores[name].append(answer_loglik(model, tok, lay, item["question"], item["answer"]))
        mean = {k: sum(v) / len(v) for k, v in scores.items()}
        gap = mean["corpus"] - mean["nothing"]
        a_lo, a_hi = bootstrap_share(scores, name="alone")
        c_lo, c_hi = bootstrap_share(scores, name="composed")
        r_lo, r_hi = ratio_interval(scores)
        alone, comp = (mean["alone"] - mean["nothing"]) / gap, (mean["composed"] - mean["nothing"]) / gap
        ratio = comp / alone if alone else float("nan")
        print(f"| {data.name} | {len(qa)} | {alone:.3f} ({a_lo:.3f}–{a_hi:.3f}) "
              f"| {comp:.3f} ({c_lo:.3f}–{c_hi:.3f}) | {ratio:.2f} ({r_lo:.2f}–{r_hi:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
