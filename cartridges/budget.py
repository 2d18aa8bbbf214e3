"""Size a cartridge run to a wall-clock budget from a throughput probe on this machine.

A user knows how long they can wait, not how many conversations or steps that buys
on their hardware. The probe runs a small first synthesis batch (``PROBE_CONVERSATIONS`` on
a CPU, where a full batch of 8 could alone outlast a small budget on a slow or busy machine;
its samples are kept as the run's batch 0) and a few training steps on them, then splits
what is left of the budget between more synthesis and training so that every training
conversation is seen ``EPOCHS`` times. Measured here (bench/RESULTS-cartridges.md),
fresh conversations are worth more than more passes over old ones, hence few epochs.
The plan is a split of time, not of counts: synthesis runs until its share is spent (more
conversations than planned when the small probe batch overestimated their cost, fewer on
a machine that got busier), and training runs until the deadline but at most 2x
``EPOCHS`` passes (many passes over a few conversations lowered the QA share measured on
msgpack). So an error in the probe shifts counts, not the end time.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from cartridges.config import CartridgeConfig
from cartridges.kv import init_from_prefix
from cartridges.synthesis import Sample, synth_batch_size, synthesize_batch
from indexer import durable

DEFAULT_BUDGET_S = 600.0  # the default run: see bench/RESULTS-cartridges.md ("default budget")
EPOCHS = 2  # passes over the training conversations the plan aims at (training may run to 2x)
GROWTH = 4  # synthesis may make up to this many times the planned conversations in its time
PROBE_STEPS = 3  # training steps timed by the probe (the first one is a warm-up)
PROBE_CONVERSATIONS = 2  # the probe's synthesis batch on a CPU (a GPU's full batch is cheap)
EVAL_PASSES = 3  # held-out forward passes a run makes: no prefix, initialisation, trained
MIN_HOLDOUT, MAX_HOLDOUT = 2, 32


@dataclass(frozen=True)
class Plan:
    """What a budget buys here, and the measurements it came from (seconds)."""

    budget_s: float
    num_samples: int
    holdout: int
    steps: int
    synth_s_per_conversation: float
    step_s: float
    probe_s: float
    estimate_s: float
    first_batch: int = 0  # conversations in the probe's batch 0 (0: a full batch, plans before it)
    synthesized: int = 0  # conversations synthesis made in its share of the budget (0: not yet)

    def apply(self, config: CartridgeConfig) -> CartridgeConfig:
        """``config`` with the planned conversations and steps, or, once synthesis has run,
        with the conversations it made and the steps that pass over them ``EPOCHS`` times."""
        if not self.synthesized:
            return replace(config, num_samples=self.num_samples, holdout=self.holdout, steps=self.steps)
        n = self.synthesized
        holdout = holdout_for(n)
        steps = max(1, round(EPOCHS * (n - holdout) / config.batch_size))
        return replace(config, num_samples=n, holdout=holdout, steps=steps)

    def synthesis_end_s(self) -> float:
        """Seconds after the run's start by which the planned synthesis should be done."""
        return self.probe_s + max(0, self.num_samples - self.first_batch) * self.synth_s_per_conversation

    def describe(self) -> str:
        return (f"plan for a {self.budget_s:.0f} s budget: {self.num_samples} conversations "
                f"({self.holdout} held out), ~{self.steps} steps; measured "
                f"{self.synth_s_per_conversation:.2f} s/conversation, {self.step_s:.2f} s/step; "
                f"estimate {self.estimate_s:.0f} s")

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def probe_size(model) -> int:
    """Conversations in the probe's batch: small on a CPU, the usual batch on a GPU."""
    size = synth_batch_size(model)
    return size if next(model.parameters()).device.type == "cuda" else min(size, PROBE_CONVERSATIONS)


def _probe(model, tokenizer, ids: torch.Tensor, config: CartridgeConfig, synth_dir: Path,
           pad: int) -> tuple[float, float]:
    """Seconds per conversation and per training step, measured on the real run's first batch.

    A batch smaller than the usual one costs more per conversation, so the plan errs
    towards fewer conversations; training is deadline-driven and uses the time left."""
    from cartridges.train import distill_loss

    size = probe_size(model)
    t0 = time.perf_counter()
    samples = synthesize_batch(model, tokenizer, ids, config, 0, size)
    per_conversation = (time.perf_counter() - t0) / size
    durable.make_dirs(synth_dir)
    for j, sample in enumerate(samples):
        path = synth_dir / f"{j:05d}.safetensors"
        if not path.exists():
            sample.save(path)
    cart = init_from_prefix(model, ids, config.length, config.frozen_tokens)
    opt = torch.optim.Adam(cart.parameters(), lr=config.lr)
    rng = random.Random(config.seed)
    times = []
    for _ in range(PROBE_STEPS):
        batch: list[Sample] = [rng.choice(samples) for _ in range(config.batch_size)]
        t1 = time.perf_counter()
        loss, n = distill_loss(model, [cart.layer(i) for i in range(cart.num_layers)], batch, pad)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        times.append(time.perf_counter() - t1)
    return per_conversation, sum(times[1:]) / max(1, len(times) - 1)


def plan_for(budget_s: float, spent_s: float, per_conversation: float, step_s: float,
             config: CartridgeConfig, probed: int) -> Plan:
    """Conversations and steps filling ``budget_s`` of which ``spent_s`` is gone (pure arithmetic)."""
    per_train_conversation = EPOCHS * step_s / config.batch_size  # training time one conversation costs
    eval_per_conversation = EVAL_PASSES * step_s / config.batch_size / 3  # forward only: ~1/3 of a step
    left = max(0.0, budget_s - spent_s)
    # left = n * per_conversation + (n - holdout) * per_train + holdout * eval, holdout ~ n / 8
    n = left / (per_conversation + per_train_conversation * 7 / 8 + eval_per_conversation / 8)
    n = max(int(n), probed, min_conversations(config))
    holdout = holdout_for(n)
    synth_left = max(0, n - probed) * per_conversation
    train_left = left - synth_left - holdout * eval_per_conversation
    steps = max(1, math.floor(train_left / step_s)) if step_s > 0 else 1
    estimate = spent_s + synth_left + holdout * eval_per_conversation + steps * step_s
    return Plan(budget_s, n, holdout, steps, per_conversation, step_s, spent_s, estimate, probed)


def load_or_plan(model, tokenizer, ids: torch.Tensor, config: CartridgeConfig, work_dir: Path, pad: int,
                 started: float) -> tuple[Plan, bool]:
    """The run's plan: the one saved in ``work_dir`` (a resumed run), else a fresh probe's.

    Returns the plan and whether it was made now (only then does the deadline apply).
    """
    path = work_dir / "plan.json"
    if path.exists():
        known = {f.name for f in fields(Plan)}  # a plan saved by another version
        return Plan(**{k: v for k, v in json.loads(path.read_text()).items() if k in known}), False
    assert config.budget_seconds is not None
    per_conversation, step_s = _probe(model, tokenizer, ids, config, work_dir / "synth", pad)
    plan = plan_for(config.budget_seconds, time.monotonic() - started, per_conversation, step_s, config,
                    probe_size(model))
    save_plan(work_dir, plan)
    return plan, True


def save_plan(work_dir: Path, plan: Plan) -> None:
    durable.make_dirs(work_dir)
    durable.write_json(work_dir / "plan.json", plan.to_dict(), indent=2, sort_keys=True)


def holdout_for(conversations: int) -> int:
    return min(MAX_HOLDOUT, max(MIN_HOLDOUT, conversations // 8))


def min_conversations(config: CartridgeConfig) -> int:
    """The fewest conversations a run trains with: one batch plus the held-out minimum."""
    return config.batch_size + MIN_HOLDOUT


def parse_duration(text: str) -> float:
    """``"20m"``, ``"90s"``, ``"1.5h"`` or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 20m, 1.5h)") from None
    if value <= 0:
        raise ValueError(f"a budget must be positive, got {text!r}")
    return value
