"""Self-study: the model quizzes itself on corpus chunks and keeps its own answers' top-k.

For each sample: draw a chunk of the corpus, draw a seed prompt of one of five
kinds, let the model (chunk in context) write a question, then answer it (chunk
in context). A share of the samples (``recall_share``) are *recall* conversations
instead: a line or sentence of the chunk is the request and the chunk's own next
words are the answer, scored by the teacher in one forward pass (no generation, so
about a tenth of the cost); they teach the cartridge what the corpus says in its
own words, which generated answers of a small model often do not. What is kept
is the *student's* view (the question and answer without the chunk) plus the
teacher's top-k log-probabilities for every answer token. Samples are generated
in batches and written one file per sample under ``<work_dir>/synth/``, so a
rerun resumes at the first incomplete batch.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from cartridges.config import CartridgeConfig
from cartridges.sampling import Generated, prefill, sample_rows, score_rows
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

RECALL_PROMPTS = ("{cue}", 'What does the document say after "{cue}"?',
                  'Continue the document from "{cue}".')
MAX_CUE_CHARS = 200  # a longer line is cut into sentences, each a possible cue
SENTENCE = re.compile(r"[^.!?]+[.!?]+(?=\s|$)|[^.!?]+$")


def recall_cues(chunk: str) -> list[tuple[str, int]]:
    """Candidate cues of a chunk: (cue text without markup, offset where its answer starts).

    A cue is a line (a heading, a list item, a short paragraph) or one sentence of a long
    line; its answer is what follows it. The first line is skipped: a chunk cut from the
    middle of the corpus starts with a fragment.

    >>> recall_cues("ragment\\n## Install\\nRun pip install msgpack.\\n")
    [('Install', 18), ('Run pip install msgpack.', 43)]
    """
    cues, offset = [], 0
    for i, line in enumerate(chunk.split("\n")):
        start, offset = offset, offset + len(line) + 1
        if i == 0:
            continue
        spans = [(start, start + len(line))] if len(line) <= MAX_CUE_CHARS else \
            [(start + m.start(), start + m.end()) for m in SENTENCE.finditer(line)]
        for a, b in spans:
            cue = chunk[a:b].strip().lstrip("#>*-+ ").strip()
            if 4 <= len(cue) <= MAX_CUE_CHARS and any(c.isalpha() for c in cue):
                cues.append((cue, b))
    return cues


def recall_pair(chunk: str, rng: random.Random, tokenizer,
                answer_tokens: int) -> tuple[str, list[int]] | None:
    """A request naming a cue of ``chunk`` and the tokens of the text that follows it (None:
    no cue with at least a few words after it)."""
    choices = []
    for cue, end in recall_cues(chunk):
        rest = chunk[end:].strip()
        if len(rest) >= 20:
            choices.append((cue, rest))
    if not choices:
        return None
    cue, rest = rng.choice(choices)
    answer = tokenizer(rest, add_special_tokens=False).input_ids[:answer_tokens]
    return rng.choice(RECALL_PROMPTS).format(cue=cue), answer


def is_recall_row(i: int, share: float) -> bool:
    """Row ``i`` of every batch is a recall row when the running count of ``share`` steps up
    there, so each batch (the budget's probe of 2 as well) holds the same mix."""
    return int((i + 1) * share) > int(i * share)


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
          size: int) -> tuple[list[str], list[int], list[str], list[str]]:
    """Chunks (one per ``questions_per_chunk`` conversations), each row's chunk index, kind
    and seed prompt (a recall row's seed is the chunk's cue request, or a question seed
    when the chunk has no cue)."""
    n = corpus.numel()
    chunk_len = min(cfg.chunk_tokens, n)
    chunks, owner, kinds, seeds = [], [], [], []
    for i in range(size):
        if i % cfg.questions_per_chunk == 0:
            start = rng.randrange(0, n - chunk_len + 1)
            chunks.append(tokenizer.decode(corpus[start:start + chunk_len]))
        owner.append(len(chunks) - 1)
        kinds.append("recall" if is_recall_row(i, cfg.recall_share) else rng.choice(sorted(SEED_PROMPTS)))
        seeds.append("" if kinds[-1] == "recall" else rng.choice(SEED_PROMPTS[kinds[-1]]))
    return chunks, owner, kinds, seeds


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
    chunks, owner, kinds, seeds = _draw(tokenizer, corpus, cfg, rng, size)
    systems = [excerpt_message(c) for c in chunks]
    recall: dict[int, tuple[str, list[int]]] = {}
    for r, kind in enumerate(kinds):
        pair = recall_pair(chunks[owner[r]], rng, tokenizer, cfg.answer_tokens) if kind == "recall" else None
        if pair:
            recall[r] = pair
        elif kind == "recall":  # no cue in this chunk: an ordinary question instead
            kinds[r], seeds[r] = "question", rng.choice(SEED_PROMPTS["question"])
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    shared = prefill(model, [chat_ids(tokenizer, [s], generation_prompt=False) for s in systems], pad)

    def prompt(r: int, content: str) -> list[int]:
        return chat_ids(tokenizer, [systems[owner[r]], {"role": "user", "content": content}])

    def turn(rows: list[int], contents: list[str], max_new: int) -> list[Generated]:
        if not rows:
            return []
        return sample_rows(model, shared, [(owner[r], prompt(r, c)) for r, c in zip(rows, contents)],
                           max_new, cfg.temperature, eos, pad, cfg.top_k, generator)

    made: dict[int, tuple[str, Generated]] = {}
    if recall:
        rows = sorted(recall)
        scored = score_rows(model, shared, [(owner[r], prompt(r, recall[r][0]) + recall[r][1]) for r in rows],
                            [len(recall[r][1]) for r in rows], pad, cfg.top_k)
        made.update({r: (recall[r][0], g) for r, g in zip(rows, scored)})
    asked = [r for r in range(size) if r not in recall]
    questions = []
    for q, r in zip(turn(asked, [seeds[r] for r in asked], cfg.question_tokens), asked):
        text = tokenizer.decode(q.tokens, skip_special_tokens=True).strip()
        questions.append(text or seeds[r])
    made.update({r: (q, g) for r, q, g in zip(asked, questions, turn(asked, questions, cfg.answer_tokens))})
    samples = []
    for r in range(size):
        question, answer = made[r]
        student = chat_ids(tokenizer, [{"role": "user", "content": question}])
        samples.append(Sample(torch.tensor(student + answer.tokens), len(student), answer.topk_ids,
                              answer.topk_logprobs.contiguous(), kinds[r]))
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
