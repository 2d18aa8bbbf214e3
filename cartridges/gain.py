"""Did training pay? The trained cartridge against its own initialisation, on held-out conversations.

An untrained cartridge (the KV cache of some corpus tokens) already recovers part of
what the corpus in context gives; a user should see how much the training *added*.
On the held-out self-study conversations four per-token losses are known:

- ``nothing``: the model with no prefix;
- ``init``: the initial cartridge; ``final``: the trained one;
- ``teacher``: the floor, the teacher's own entropy over its kept top-k (the loss a
  student matching the teacher exactly would have).

``gain_over_init = (init - final) / (nothing - teacher)``: the share of the gap
between no context and the teacher that training closed beyond the initialisation
(the same share-of-gap shape as the QA benchmark). Its 90% interval comes from
resampling held-out conversations; a lower end at or below 0 means within noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from cartridges.synthesis import Sample

ROUNDS = 1000


@dataclass
class Losses:
    """Per held-out conversation: summed loss over its answer tokens, and their count."""

    sums: list[float]
    counts: list[int]

    def mean(self, pick: list[int] | None = None) -> float:
        pick = pick if pick is not None else list(range(len(self.sums)))
        return sum(self.sums[i] for i in pick) / max(1, sum(self.counts[i] for i in pick))


def teacher_losses(samples: list[Sample]) -> Losses:
    """The teacher's entropy over its top-k, per conversation: the lowest loss reachable."""
    sums = [float(-(s.topk_logprobs.exp() * s.topk_logprobs).sum()) for s in samples]
    return Losses(sums, [int(s.topk_ids.shape[0]) for s in samples])


def _share(nothing: float, teacher: float, x: float) -> float:
    gap = nothing - teacher
    return (nothing - x) / gap if gap > 0 else 0.0


def judge(nothing: Losses, init: Losses, final: Losses, teacher: Losses, seed: int = 0) -> dict:
    """The training summary's verdict fields (see the module docstring)."""
    n = len(nothing.sums)

    def gain(pick: list[int] | None) -> float:
        lo, hi = nothing.mean(pick), teacher.mean(pick)
        return _share(lo, hi, final.mean(pick)) - _share(lo, hi, init.mean(pick))

    rng = random.Random(seed)
    draws = sorted(gain([rng.randrange(n) for _ in range(n)]) for _ in range(ROUNDS)) if n > 1 else []
    low, high = (draws[len(draws) // 20], draws[len(draws) * 19 // 20]) if draws else (None, None)
    return {"heldout_loss_nothing": round(nothing.mean(), 5),
            "heldout_loss_teacher": round(teacher.mean(), 5),
            "heldout_share_init": round(_share(nothing.mean(), teacher.mean(), init.mean()), 4),
            "heldout_share_final": round(_share(nothing.mean(), teacher.mean(), final.mean()), 4),
            "gain_over_init": round(gain(None), 4),
            "gain_interval": [round(low, 4), round(high, 4)] if low is not None else None,
            "gain_within_noise": low is None or low <= 0}


def verdict(training: dict | None) -> str | None:
    """One line for people: the gain and whether it is within noise (None before training ends)."""
    if not training or training.get("gain_over_init") is None:
        return None
    gain, interval = training["gain_over_init"], training.get("gain_interval")
    span = f" (90% interval {interval[0]:+.3f} to {interval[1]:+.3f})" if interval else ""
    line = f"gain over initialisation {gain:+.3f} of the held-out gap{span}"
    if training.get("gain_within_noise"):
        line += "; WARNING: within noise, training did not clearly beat the untrained cartridge"
    return line


def per_conversation(loss_rows: list[torch.Tensor], samples: list[Sample]) -> Losses:
    """Group per-token losses (concatenated in sample order) back into conversations."""
    flat = torch.cat(loss_rows) if loss_rows else torch.zeros(0)
    sums, start = [], 0
    for s in samples:
        k = int(s.topk_ids.shape[0])
        sums.append(float(flat[start:start + k].sum()))
        start += k
    return Losses(sums, [int(s.topk_ids.shape[0]) for s in samples])
