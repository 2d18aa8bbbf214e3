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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from cartridges.config import CartridgeConfig
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


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _generate(model, tokenizer, prompts: list[list[int]], max_new: int, temperature: float):
    """Batched sampling; returns new tokens ``[B, S]`` and raw logits ``[B, S, V]``."""
    device = next(model.parameters()).device
    ids, mask = _left_pad(prompts, tokenizer.pad_token_id)
    out = model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new,
        do_sample=temperature > 0, temperature=temperature or None, top_p=None, top_k=None,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        return_dict_in_generate=True, output_logits=True,
    )
    return out.sequences[:, ids.shape[1]:].cpu(), torch.stack(out.logits, dim=1).float().cpu()


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


@torch.no_grad()
def synthesize_batch(model, tokenizer, corpus: torch.Tensor, cfg: CartridgeConfig, batch_index: int,
                     size: int) -> list[Sample]:
    """Generate ``size`` samples; the draw depends only on ``cfg.seed`` and ``batch_index``."""
    rng = random.Random(cfg.seed * 1_000_003 + batch_index)
    torch.manual_seed(cfg.seed * 1_000_003 + batch_index)
    n = corpus.numel()
    chunk_len = min(cfg.chunk_tokens, n)
    systems, kinds, seeds = [], [], []
    for _ in range(size):
        start = rng.randrange(0, n - chunk_len + 1)
        chunk = tokenizer.decode(corpus[start:start + chunk_len])
        systems.append({"role": "system", "content": "Here is an excerpt of a document.\n\n" + chunk})
        kinds.append(rng.choice(sorted(SEED_PROMPTS)))
        seeds.append(rng.choice(SEED_PROMPTS[kinds[-1]]))
    q_prompts = [chat_ids(tokenizer, [s, {"role": "user", "content": seed}])
                 for s, seed in zip(systems, seeds)]
    q_tokens, _ = _generate(model, tokenizer, q_prompts, cfg.question_tokens, cfg.temperature)
    eos = tokenizer.eos_token_id
    questions = []
    for row, seed in zip(q_tokens.tolist(), seeds):
        text = tokenizer.decode(_until_eos(row, eos), skip_special_tokens=True).strip()
        questions.append(text or seed)
    a_prompts = [chat_ids(tokenizer, [s, {"role": "user", "content": q}]) for s, q in zip(systems, questions)]
    a_tokens, a_logits = _generate(model, tokenizer, a_prompts, cfg.answer_tokens, cfg.temperature)
    samples = []
    for i, question in enumerate(questions):
        answer = _until_eos(a_tokens[i].tolist(), eos)
        logprobs = torch.log_softmax(a_logits[i, : len(answer)], dim=-1)
        top = logprobs.topk(cfg.top_k, dim=-1)
        student = chat_ids(tokenizer, [{"role": "user", "content": question}])
        samples.append(Sample(torch.tensor(student + answer), len(student), top.indices,
                              top.values.contiguous(), kinds[i]))
    return samples


def synthesize(model, tokenizer, corpus: torch.Tensor, cfg: CartridgeConfig, out_dir: Path,
               progress: Progress = lambda *_: None,
               should_stop: Callable[[], bool] = lambda: False, batch_size: int = 8) -> bool:
    """Fill ``out_dir`` with ``cfg.num_samples`` sample files; resumes where files exist.

    Returns False when ``should_stop`` interrupted it (finished batches are kept).
    """
    durable.make_dirs(out_dir)
    total = cfg.num_samples
    batches = (total + batch_size - 1) // batch_size
    for b in range(batches):
        names = [out_dir / f"{j:05d}.safetensors"
                 for j in range(b * batch_size, min(total, (b + 1) * batch_size))]
        if all(p.exists() for p in names):
            continue
        progress("synthesis", b * batch_size, total)
        if should_stop():
            return False
        for path, sample in zip(names, synthesize_batch(model, tokenizer, corpus, cfg, b, len(names))):
            sample.save(path)
    progress("synthesis", total, total)
    return True


def load_samples(out_dir: Path, count: int) -> list[Sample]:
    return [Sample.load(out_dir / f"{j:05d}.safetensors") for j in range(count)]
