"""Passages and token vectors of a set's subset for ``bench.bench_compression``, cached.

    nice -n 10 python -m bench.compression_data --set stdlib --passages 2000

A set (``stdlib``, the tune side, or ``code``, the validation set of
``bench/validation_sets.py``) is reduced to a seeded subset of files: the target files of
shuffled queries up to 85% of the budget (counted in 30-line windows), then other files.
Every file is cut as ``memex index`` cuts it (path line prepended, the encoder's token
budget after it) three ways: ``win30`` (``chunk_lines``, today's default), ``ast``
(``chunk_python``; other files as windows) and ``ast60`` (the same, definitions packed
into passages of up to 60 lines instead of 30). The windows are encoded by the default encoder
in ``fp32`` (PyTorch, the truth) and ``int8`` (ONNX, what ``auto`` picks on this CPU), the
AST passages in ``int8`` only (CPU time is scarce), all with the skiplist off; each token's
punctuation flag is stored so the skiplist is applied afterwards.
Layout under ``bench/.cache/compression/<set>/``:
``queries.jsonl``, ``q_<enc>.npy`` + ``q_offsets.npy``; per cut ``<cut>/passages.jsonl``
(id, path, start, end, text), ``punct.npy`` bool [T], ``<enc>.npy`` [T, dim] (float32 for
fp32, float16 for int8, as a sync commits), ``offsets.npy`` [n + 1].
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import data, validation_sets
from bench.data import CACHE
from indexer.encoding.encoder import PUNCTUATION
from indexer.line_windows import chunk_lines, chunk_python

OUT = CACHE / "compression"
CUTS = ("win30", "ast", "ast60")
ENCODINGS = {"fp32": ("torch", "fp32", np.float32), "int8": ("onnx", "int8", np.float16)}
WANTED = {"win30": ("fp32", "int8"), "ast": ("int8",), "ast60": ("int8",)}


def load_set(name: str) -> tuple[Path, list[dict[str, Any]]]:
    """``tree/`` and queries of ``stdlib`` or a validation set."""
    if name == "stdlib":
        return data.stdlib() / "tree", data.stdlib_queries()
    return validation_sets.load(name)


def choose_files(tree: Path, queries: list[dict], budget: int, seed: int = 0) -> tuple[list[str], list[dict]]:
    """Target files of shuffled queries (~85% of ``budget`` windows), then other files."""
    rng = random.Random(seed)
    targets = sorted({q["path"] for q in queries})
    others = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    others = [p for p in others if p not in set(targets)]
    rng.shuffle(targets)
    rng.shuffle(others)
    chosen: list[str] = []
    used = 0
    for pool, cap in ((targets, int(budget * 0.85)), (others, budget)):
        for path in pool:
            n = len(data.windows(tree, path))
            if used + n <= cap:
                chosen.append(path)
                used += n
    keep = set(chosen)
    return chosen, [q for q in queries if q["path"] in keep]


def cut(tree: Path, files: list[str], how: str, encoder) -> list[dict]:
    """Passages of ``files`` as the engine cuts them: path line first, token budget after it."""
    out: list[dict[str, Any]] = []
    headers = encoder.count_tokens(files)
    for path, header in zip(files, headers):
        text = (tree / path).read_text(errors="replace")
        budget = max(16, encoder.config.doc_max_tokens - header - 3)
        kw = {"max_tokens": budget, "count_tokens": encoder.count_tokens,
              "additive": encoder.lines_add_up(text)}
        if how == "ast" and path.endswith(".py"):
            ps = chunk_python(text, **kw)
        elif how == "ast60" and path.endswith(".py"):  # definitions packed up to 60 lines
            ps = chunk_python(text, 60, 30, **kw)
        else:
            ps = chunk_lines(text, **kw)
        out += [{"id": len(out) + i, "path": path, "start": p.start_line, "end": p.end_line,
                 "text": f"{path}\n{p.text}"} for i, p in enumerate(ps)]
    return out


def load_encoder(enc: str):
    """The default encoder in ``enc``'s runtime and precision, one thread, skiplist off."""
    import torch

    from indexer.encoding.encoder import ColBERTEncoder

    torch.set_num_threads(1)
    runtime, precision, _ = ENCODINGS[enc]
    encoder = ColBERTEncoder.load(runtime=runtime, precision=precision)
    encoder.config = dataclasses.replace(encoder.config, skip_punctuation=False)
    return encoder


def punct_flags(encoder, texts: list[str]) -> np.ndarray:
    """Per kept token (special tokens but [CLS] dropped, as ``encode_documents``): whether the
    skiplist would drop it."""
    tok = encoder.tokenizer
    ids = tok(texts, truncation=True, max_length=encoder.config.doc_max_tokens)["input_ids"]
    drop = set(tok.all_special_ids) - {tok.cls_token_id}
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    punct = {i for i, t in enumerate(vocab) if t and all(c in PUNCTUATION for c in t)}
    return np.concatenate([np.array([i in punct for i in row if i not in drop]) for row in ids])


def encode_cut(folder: Path, passages: list[dict], enc: str, encoder) -> None:
    texts = [p["text"] for p in passages]
    t = time.time()
    bags = []
    for s in range(0, len(texts), 256):
        bags += encoder.encode_documents(texts[s : s + 256])
        print(f"  {folder.name}/{enc}: {len(bags)}/{len(texts)} in {time.time() - t:.0f}s", flush=True)
    offsets = np.zeros(len(bags) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in bags])
    flags = punct_flags(encoder, texts)
    assert len(flags) == offsets[-1], "token flags do not line up with the encoder's tokens"
    np.save(folder / "punct.npy", flags)
    np.save(folder / "offsets.npy", offsets)
    np.save(folder / f"{enc}.npy", np.concatenate(bags).astype(ENCODINGS[enc][2]))


def build(name: str, n_passages: int) -> None:
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    tree, queries = load_set(name)
    files, queries = choose_files(tree, queries, n_passages)
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for enc in ENCODINGS:
        encoder = None
        if not (out / f"q_{enc}.npy").exists():
            encoder = load_encoder(enc)
            qv = encoder.encode_queries([q["text"] for q in queries])
            np.save(out / "q_offsets.npy", np.cumsum([0] + [len(v) for v in qv]))
            np.save(out / f"q_{enc}.npy", np.concatenate(qv).astype(np.float32))
        for how in CUTS:
            folder = out / how
            if enc not in WANTED[how] or (folder / f"{enc}.npy").exists():
                continue
            encoder = encoder or load_encoder(enc)
            folder.mkdir(exist_ok=True)
            if not (folder / "passages.jsonl").exists():
                passages = cut(tree, files, how, encoder)
                (folder / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
            passages = [json.loads(x) for x in (folder / "passages.jsonl").read_text().splitlines()]
            print(f"{name}/{how}: {len(files)} files, {len(passages)} passages, {len(queries)} queries")
            encode_cut(folder, passages, enc, encoder)


def bags(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def load(name: str, how: str) -> dict[str, Any]:
    """One set's cut: passages, queries, ``doc[enc]`` / ``query[enc]`` bags (float32) and
    ``punct`` (per passage, bool per token)."""
    out, folder = OUT / name, OUT / name / how
    off, q_off = np.load(folder / "offsets.npy"), np.load(out / "q_offsets.npy")
    doc = {e: bags(np.load(folder / f"{e}.npy").astype(np.float32), off)
           for e in ENCODINGS if (folder / f"{e}.npy").exists()}
    return {"passages": [json.loads(x) for x in (folder / "passages.jsonl").read_text().splitlines()],
            "queries": [json.loads(x) for x in (out / "queries.jsonl").read_text().splitlines()],
            "doc": doc, "query": {e: bags(np.load(out / f"q_{e}.npy"), q_off) for e in ENCODINGS
                                  if (out / f"q_{e}.npy").exists()},
            "punct": bags(np.load(folder / "punct.npy"), off)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="stdlib", choices=["stdlib", "code"])
    ap.add_argument("--passages", type=int, default=2000, help="budget in 30-line windows")
    args = ap.parse_args()
    build(args.set, args.passages)


if __name__ == "__main__":
    main()
