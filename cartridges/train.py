"""Context distillation: train a cartridge so the model without the corpus answers like the model with it.

Loss per answer token: cross-entropy of the student's log-probabilities (cartridge
as prefix, no chunk) against the teacher's stored top-k probabilities (chunk in
context). That equals the KL to the teacher's top-k up to a constant. Adam on the
cartridge only; model weights frozen.

Work directory (resumable; see FORMAT.md)::

    run.json                 data settings, corpus id/version/sha256 (a rerun must match)
    synth/00000.safetensors  self-study samples
    ckpt.safetensors         cartridge + Adam moments + step + loss history
    cartridge.safetensors    the finished cartridge
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from cartridges.budget import GROWTH, Plan, load_or_plan, min_conversations, save_plan
from cartridges.config import CartridgeConfig
from cartridges.fileformat import model_header, save_cartridge
from cartridges.gain import Losses, judge, per_conversation, teacher_losses
from cartridges.kv import (
    Cartridge,
    context_window,
    corpus_tokens,
    forward_with_prefix,
    init_from_prefix,
    spread_tokens,
)
from cartridges.summary import summary_ids
from cartridges.synthesis import Sample, load_samples, synthesize
from indexer import durable
from indexer.errors import Conflict, InvalidInput
from indexer.models import load_lm
from indexer.progress import Progress


def _batch(samples: list[Sample], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(s.ids.numel() for s in samples)
    ids = torch.full((len(samples), width), pad, dtype=torch.long)
    mask = torch.zeros(len(samples), width, dtype=torch.long)
    for row, s in enumerate(samples):
        ids[row, : s.ids.numel()] = s.ids
        mask[row, : s.ids.numel()] = 1
    return ids.to(device), mask.to(device)


def token_losses(model, layers, samples: list[Sample], pad: int) -> torch.Tensor:
    """Cross-entropy against the teacher's top-k per answer token ``[N]``, samples in order.

    ``layers``: per layer ``(keys, values)``, each ``[kv_heads, p, head_dim]`` (may be empty).
    """
    device = next(model.parameters()).device
    ids, mask = _batch(samples, pad, device)
    hidden = forward_with_prefix(model, layers, ids, mask, hidden=True)  # (B, T, d)
    # the logit at position t predicts token t+1: answer token j is predicted at answer_start + j - 1
    rows = torch.cat([torch.full((s.topk_ids.shape[0],), i) for i, s in enumerate(samples)])
    cols = torch.cat([torch.arange(s.answer_start - 1, s.ids.numel() - 1) for s in samples])
    logits = model.get_output_embeddings()(hidden[rows.to(device), cols.to(device)])  # (N, V)
    student = torch.log_softmax(logits.float(), dim=-1)
    top_ids = torch.cat([s.topk_ids for s in samples]).to(device)  # (N, k)
    teacher = torch.cat([s.topk_logprobs for s in samples]).to(device).exp()  # (N, k)
    return -(teacher * student.gather(1, top_ids)).sum(1)


def distill_loss(model, layers, samples: list[Sample], pad: int) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy against the teacher's top-k over all answer tokens, and their count."""
    losses = token_losses(model, layers, samples, pad)
    return losses.sum(), int(losses.numel())


@torch.no_grad()
def evaluate(model, layers, samples: list[Sample], pad: int, batch_size: int = 4) -> Losses:
    """Per-conversation distillation losses over ``samples`` (``.mean()``: per token)."""
    rows = [token_losses(model, layers, samples[i:i + batch_size], pad).float().cpu()
            for i in range(0, len(samples), batch_size)]
    return per_conversation(rows, samples)


def _save_ckpt(path: Path, cart: Cartridge, opt: torch.optim.Adam, step: int, history: dict) -> None:
    tensors = {name: t.detach().cpu().contiguous() for name, t in cart.state_dict().items()}
    for idx, state in opt.state_dict()["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            tensors[f"adam.{idx}.{key}"] = torch.as_tensor(state[key]).detach().cpu().reshape(-1).contiguous()
    durable.write_bytes(path, st_save(tensors, metadata={"step": str(step), "history": json.dumps(history)}))


def _ckpt_step(path: Path) -> int:
    with safe_open(str(path), "pt") as f:
        return int(f.metadata()["step"])


def _load_ckpt(path: Path, cart: Cartridge, opt: torch.optim.Adam) -> tuple[int, dict]:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cart.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("adam.")})
    state = {}
    for idx in range(len(opt.param_groups[0]["params"])):
        if f"adam.{idx}.step" in tensors:
            shape = opt.param_groups[0]["params"][idx].shape
            state[idx] = {"step": tensors[f"adam.{idx}.step"].reshape(()),
                          "exp_avg": tensors[f"adam.{idx}.exp_avg"].reshape(shape),
                          "exp_avg_sq": tensors[f"adam.{idx}.exp_avg_sq"].reshape(shape)}
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    return int(meta["step"]), json.loads(meta["history"])


# settings that shape the synthesized data or the cartridge's geometry; the others
# (steps, lr, batch size, checkpointing, device) may change between resumes
RUN_FIELDS = ("model", "p", "frozen_tokens", "init", "num_samples", "holdout", "chunk_tokens",
              "questions_per_chunk", "recall_share", "question_tokens", "answer_tokens", "top_k",
              "temperature", "seed")


def _check_run(work_dir: Path, record: dict) -> None:
    """A work dir belongs to one (data settings, corpus); resuming with others would mix runs.
    A setting the saving version did not know (e.g. ``recall_share``) is not a difference:
    a run interrupted before an upgrade resumes after it."""
    path = work_dir / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = sorted(k for k in old if old.get(k) != record.get(k))
        if changed:
            raise Conflict(f"{work_dir} holds a run with other settings ({', '.join(changed)}); "
                           "use a new work dir")
    else:
        durable.make_dirs(work_dir)
        durable.write_json(path, record, indent=2, sort_keys=True)


def train_cartridge(corpus_text: str, corpus_id: str, corpus_version: int, config: CartridgeConfig,
                    work_dir: Path, progress: Progress = lambda *_: None,
                    should_stop: Callable[[], bool] = lambda: False,
                    on_plan: Callable[[Plan, CartridgeConfig], None] = lambda *_: None) -> Path | None:
    """Synthesize, then train; returns the path of the finished cartridge file.

    Resumable: rerun with the same arguments and it continues from the samples
    and the last checkpoint in ``work_dir``. Returns None when ``should_stop``
    interrupted it (everything done so far is saved). A finished run asked for more
    ``steps`` continues from its final checkpoint. ``progress(stage, done,
    total)`` is called with stage ``"synthesis"`` then ``"training"``.
    With ``config.budget_seconds``, a probe plans conversations and steps first
    (``on_plan(plan, planned config)`` is told before the run starts) and training
    stops in time for the budget; a resumed budgeted run follows its saved plan.
    """
    started = time.monotonic()
    work_dir = Path(work_dir)
    model, tokenizer = load_lm(config.model, config.device)
    ids = corpus_tokens(tokenizer, corpus_text)
    config = config.sized(ids.numel())
    if config.length >= context_window(model):
        raise InvalidInput(f"p={config.p} does not fit the model's context window ({context_window(model)})")
    if ids.numel() < config.length:
        raise InvalidInput(f"the corpus has {ids.numel()} tokens, fewer than p={config.p}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if config.init == "summary":  # generated before the probe: the plan counts its time
        initial_ids(model, tokenizer, ids, config, work_dir)
    plan, deadline, synth_stop, planned = None, None, None, config
    if config.budget_seconds is not None:
        plan, fresh = load_or_plan(model, tokenizer, ids, config, work_dir, pad, started)
        config = plan.apply(config)
        planned = replace(config, num_samples=plan.num_samples, holdout=plan.holdout)  # before any cut
        if fresh:
            deadline, synth_stop = started + config.budget_seconds, started + plan.synthesis_end_s()
        on_plan(plan, config)
    _check_run(work_dir, {**{k: getattr(planned, k) for k in RUN_FIELDS}, "corpus_id": corpus_id,
                          "corpus_version": corpus_version,
                          "corpus_sha256": hashlib.sha256(corpus_text.encode()).hexdigest()})
    out, ckpt = work_dir / "cartridge.safetensors", work_dir / "ckpt.safetensors"
    if out.exists() and (not ckpt.exists() or _ckpt_step(ckpt) >= config.steps):
        return out  # finished; asking for more steps than it had continues it instead
    # a fresh budgeted run synthesizes for its share of the budget, up to GROWTH x the plan
    upto = replace(config, num_samples=config.num_samples * GROWTH) if synth_stop else config
    made = synthesize(model, tokenizer, ids, upto, work_dir / "synth", progress, should_stop,
                      plan.first_batch if plan else 0, synth_stop, min_conversations(config))
    if made is None:
        return None
    if plan and not plan.synthesized:
        plan = replace(plan, synthesized=made)
        save_plan(work_dir, plan)
        config = plan.apply(config)
        on_plan(plan, config)
    samples = load_samples(work_dir / "synth", config.num_samples)
    train, held = samples[config.holdout:], samples[: config.holdout]
    cart = init_cartridge(model, tokenizer, ids, config, work_dir)
    opt = torch.optim.Adam(cart.parameters(), lr=config.lr)
    step, history = 0, {"train_loss": [], "tokens": 0, "train_seconds": 0.0}
    if ckpt.exists():
        step, history = _load_ckpt(ckpt, cart, opt)
    elif held:
        init, nothing = evaluate(model, cart_layers(cart), held, pad), evaluate(model, [], held, pad)
        history.update(heldout_loss_init=init.mean(), heldout_init=vars(init), heldout_nothing=vars(nothing))
    # with a deadline, steps is the plan's estimate: training goes on (up to 2x) while time is left
    limit = config.steps * 2 if deadline else config.steps
    reserve = 0.0  # seconds the final evaluation and save will take, measured on the first one
    t_train = time.perf_counter()
    while step < limit:
        progress("training", step, max(config.steps, step))
        if should_stop():
            history["train_seconds"] += time.perf_counter() - t_train
            _save_ckpt(ckpt, cart, opt, step, history)
            return None
        if deadline and step and time.monotonic() + _step_seconds(history, t_train, step) + reserve \
                > deadline:
            break  # the next step would not end in time
        t_step = time.perf_counter()
        batch = random.Random(config.seed * 7919 + step).sample(train, min(config.batch_size, len(train)))
        loss, n = distill_loss(model, cart_layers(cart), batch, pad)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        step += 1
        reserve = reserve or (time.perf_counter() - t_step) * (2 * len(held) / config.batch_size + 1)
        history["train_loss"].append(round(loss.item() / n, 5))
        history["tokens"] += int(sum(s.ids.numel() for s in batch))
        if step % config.checkpoint_every == 0 and step < limit:
            history["train_seconds"] += time.perf_counter() - t_train
            t_train = time.perf_counter()
            _save_ckpt(ckpt, cart, opt, step, history)
    history["train_seconds"] += time.perf_counter() - t_train
    _save_ckpt(ckpt, cart, opt, step, history)  # a later run may ask for more steps
    verdict = {}
    if held:
        final = evaluate(model, cart_layers(cart), held, pad)
        history["heldout_loss_final"] = final.mean()
        if "heldout_init" in history:  # absent in checkpoints of runs before it was recorded
            verdict = judge(Losses(**history["heldout_nothing"]), Losses(**history["heldout_init"]), final,
                            teacher_losses(held), config.seed)
    progress("training", step, step)
    keys, values = cart.tensors()
    header = {**model_header(model, tokenizer), "frozen_tokens": config.frozen_tokens,
              "corpus_id": corpus_id, "corpus_version": corpus_version,
              "training": {"config": config.to_dict(), **summarize(history), **verdict,
                           "wall_seconds": round(time.monotonic() - started, 1)}}
    save_cartridge(out, keys, values, header)
    return out


def _step_seconds(history: dict, t_train: float, step: int) -> float:
    """Mean seconds per step of this run so far (time before ``t_train`` is in the history)."""
    steps_timed = len(history["train_loss"]) or step
    return (history["train_seconds"] + time.perf_counter() - t_train) / max(1, steps_timed)


def initial_ids(model, tokenizer, ids: torch.Tensor, config: CartridgeConfig,
                work_dir: Path | None = None) -> torch.Tensor:
    """The ids whose KV cache ``config.init`` starts from (``ids``: the corpus tokens). A
    summary is generated once per ``work_dir`` (``init_ids.json``, keyed by what it was
    made from), so a resumed run starts from the same cache."""
    config = config.sized(ids.numel())
    if config.init == "spread":
        return spread_tokens(ids, config.length, config.frozen_tokens)
    if config.init != "summary":
        return ids[: config.length]
    key = {"model": config.model, "p": config.p, "frozen": config.frozen_tokens,
           "corpus_sha256": hashlib.sha256(ids.numpy().tobytes()).hexdigest()}
    saved = work_dir / "init_ids.json" if work_dir else None
    if saved and saved.exists():
        cached = json.loads(saved.read_text())
        if cached["key"] == key:
            return torch.tensor(cached["ids"], dtype=torch.long)
    out = summary_ids(model, tokenizer, ids, config.length, config.frozen_tokens)
    if saved:
        durable.make_dirs(saved.parent)
        durable.write_json(saved, {"key": key, "ids": out.tolist()})
    return out


def init_cartridge(model, tokenizer, ids: torch.Tensor, config: CartridgeConfig,
                   work_dir: Path | None = None) -> Cartridge:
    """The untrained cartridge ``config.init`` asks for (``ids``: the corpus tokens)."""
    config = config.sized(ids.numel())
    return init_from_prefix(model, initial_ids(model, tokenizer, ids, config, work_dir), config.length,
                            config.frozen_tokens)


def cart_layers(cart: Cartridge) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [cart.layer(i) for i in range(cart.num_layers)]


def summarize(history: dict) -> dict:
    """Loss curve summary kept in the file: first/last losses and ten evenly spaced points."""
    losses = history["train_loss"]
    points = [losses[min(len(losses) - 1, math.floor(i * len(losses) / 10))] for i in range(10)] \
        if losses else []
    secs = history.get("train_seconds", 0.0)
    return {"steps": len(losses), "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "loss_curve": points,
            "heldout_loss_init": history.get("heldout_loss_init"),
            "heldout_loss_final": history.get("heldout_loss_final"),
            "train_tokens": history.get("tokens", 0),
            "train_tokens_per_s": round(history.get("tokens", 0) / secs, 2) if secs else None}
