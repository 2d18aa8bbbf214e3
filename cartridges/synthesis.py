"""Self-study: the model quizzes itself on corpus chunks and keeps its own answers' top-k.

For each sample: draw a chunk of the corpus, draw a seed prompt of one of five
kinds, let the model (chunk in context) write a question, then answer it (chunk
in context). What is kept is the *student's* view (the question and answer
without the chunk) plus the teacher's top-k log-probabilities for every answer
token. Samples are generated in batches and written one file per sample under
``<work_dir>/synth/``, so a rerun resumes at the first incomplete batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from cartridges.config import CartridgeConfig
from cartridges.sampling import Generated, prefill, sample_rows
from indexer import durable
from indexer.progress import Progress

SEED_PROMPTS = {
    "structuring": [
        "Ask for the information in the excerpt above to be organised as a list or a table. "
        "Write only the request.",
        "Ask for the key terms of the excerpt above and how they relate. Write only the request.",
    ],
    "summarization": [
        "Ask for a short summary of one part of the excerpt above, naming that part. "
        "Write only the request.",
    ],
    "question": [
        "Write one specific question whose answer is a fact stated in the excerpt above. "
        "Write only the question.",
        "Write a question a reader of the excerpt above might ask to check a detail. "
        "Write only the question.",
    ],
    "use_case": [
        "Think of a practical task where the excerpt above would help, and ask for help with it. "
        "Write only the request.",
    ],
    "creative": [
        "Ask for a short explanation of an idea in the excerpt above as if to a newcomer. "
        "Write only the request.",
    ],
}


@dataclass
class Sample:
    """One self-study conversation seen by the student.

    ids : ``[T]`` chat-formatted question plus answer tokens (no chunk).
    answer_start : index in ``ids`` of the first answer token.
    topk_ids, topk_logprobs : ``[T - answer_start, k]`` teacher's top-k per answer token.
    """

    ids: torch.Tensor
    answer_start: int
    topk_ids: torch.Tensor
    topk_logprobs: torch.Tensor
    kind: str = ""

    def save(self, path: Path) -> None:
        """Atomic and durable: a resumed run trusts every sample file that exists."""
        durable.write_bytes(path, st_save({"ids": self.ids, "topk_ids": self.topk_ids,
                                           "topk_logprobs": self.topk_logprobs},
                                          metadata={"answer_start": str(self.answer_start),
                                                    "kind": self.kind}))

    @classmethod
    def load(cls, path: Path) -> Sample:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        t = load_file(str(path))
        return cls(t["ids"], int(meta["answer_start"]), t["topk_ids"], t["topk_logprobs"], meta["kind"])


def chat_ids(tokenizer, messages: list[dict], generation_prompt: bool = True) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False).input_ids


def excerpt_message(chunk: str) -> dict:
    """The system message that shows the model a corpus excerpt (synthesis and summaries)."""
    return {"role": "system", "content": "Here is an excerpt of a document.\n\n" + chunk}


def _draw(tokenizer, corpus: torch.Tensor, cfg: CartridgeConfig, rng: random.Random,
          size: int) -> tuple[list[dict], list[int], list[str], list[str]]:
    """Chunks (one per ``questions_per_chunk`` conversations), each row's chunk index and seed prompt."""
    n = corpus.numel()
    chunk_len = min(cfg.chunk_tokens, n)
    systems, owner, kinds, seeds = [], [], [], []
    for i in range(size):
        if i % cfg.questions_per_chunk == 0:
            start = rng.randrange(0, n - chunk_len + 1)
            systems.append(excerpt_message(tokenizer.decode(corpus[start:start + chunk_len])))
        owner.append(len(systems) - 1)
        kinds.append(rng.choice(sorted(SEED_PROMPTS)))
        seeds.append(rng.choice(SEED_PROMPTS[kinds[-1]]))
    return systems, owner, kinds, seeds


@torch.no_grad()
def synthesize_batch(model, tokenizer, corpus: torch.Tensor, cfg: CartridgeConfig, batch_index: int,
                     size: int) -> list[Sample]:
    """Generate ``size`` samples; the draw depends only on ``cfg.seed`` and ``batch_index``.

    Each chunk is prefilled once and its KV cache serves all its questions and answers.
    """
    seed = cfg.seed * 1_000_003 + batch_index
    rng = random.Random(seed)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    systems, owner, kinds, seeds = _draw(tokenizer, corpus, cfg, rng, size)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    shared = prefill(model, [chat_ids(tokenizer, [s], generation_prompt=False) for s in systems], pad)

    def turn(contents: list[str], max_new: int) -> list[Generated]:
        rows = [(u, chat_ids(tokenizer, [systems[u], {"role": "user", "content": c}]))
                for u, c in zip(owner, contents)]
        return sample_rows(model, shared, rows, max_new, cfg.temperature, eos, pad, cfg.top_k, generator)

    questions = []
    for q, seed_prompt in zip(turn(seeds, cfg.question_tokens), seeds):
        text = tokenizer.decode(q.tokens, skip_special_tokens=True).strip()
        questions.append(text or seed_prompt)
    samples = []
    for question, answer, kind in zip(questions, turn(questions, cfg.answer_tokens), kinds):
        student = chat_ids(tokenizer, [{"role": "user", "content": question}])
        samples.append(Sample(torch.tensor(student + answer.tokens), len(student), answer.topk_ids,
                              answer.topk_logprobs.contiguous(), kind))
    return samples


def synth_batch_size(model) -> int:
    """Conversations generated together: a CPU gains little past 8 rows (and pays for the
    longest answer in the batch); a GPU is idle below 64."""
    return 64 if next(model.parameters()).device.type == "cuda" else 8


def batch_bounds(total: int, batch_size: int, first_batch: int = 0) -> list[tuple[int, int]]:
    """Sample index ranges of the synthesis batches: the first holds ``first_batch``
    conversations (a budget's probe, ``cartridges/budget.py``; 0: a full batch), the rest
    ``batch_size`` each. Batch ``b`` of a layout always draws the same samples."""
    bounds, start = [], 0
    while start < total:
        end = min(total, start + (first_batch if not bounds and first_batch else batch_size))
        bounds.append((start, end))
        start = end
    return bounds


def synthesize(model, tokenizer, corpus: torch.Tensor, cfg: CartridgeConfig, out_dir: Path,
               progress: Progress = lambda *_: None,
               should_stop: Callable[[], bool] = lambda: False, first_batch: int = 0,
               stop_at: float | None = None, at_least: int = 0) -> int | None:
    """Fill ``out_dir`` with ``cfg.num_samples`` sample files; resumes where files exist.

    Returns how many samples exist: all of them, or fewer when the next batch would end
    after ``stop_at`` (``time.monotonic()``; never below ``at_least``). None when
    ``should_stop`` interrupted it (finished batches are kept).
    """
    durable.make_dirs(out_dir)
    total, batch_s = cfg.num_samples, 0.0
    for b, (start, end) in enumerate(batch_bounds(total, synth_batch_size(model), first_batch)):
        names = [out_dir / f"{j:05d}.safetensors" for j in range(start, end)]
        if all(p.exists() for p in names):
            continue
        if stop_at is not None and start >= at_least and time.monotonic() + batch_s > stop_at:
            return start
        progress("synthesis", start, total)
        if should_stop():
            return None
        t0 = time.monotonic()
        for path, sample in zip(names, synthesize_batch(model, tokenizer, corpus, cfg, b, len(names))):
            sample.save(path)
        batch_s = time.monotonic() - t0
    progress("synthesis", total, total)
    return total


def load_samples(out_dir: Path, count: int) -> list[Sample]:
    return [Sample.load(out_dir / f"{j:05d}.safetensors") for j in range(count)]
