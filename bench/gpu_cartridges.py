"""Cartridge training at paper-like scale on a GPU host: conversations/s and training tokens/s.

What the 2-core CPU cannot show: the same ``train_cartridge`` code (CUDA, bfloat16 model,
float32 cartridge) with thousands of self-study conversations and a model of realistic
geometry. Weights are random (no model hub on the device host), so the numbers are
throughput only, not quality; the geometry (layers, heads, KV heads, hidden and MLP sizes)
follows the named public config. The tokenizer (and its chat template) is the bundled
SmolLM2's, from the model cache or ``--tokenizer``; the corpus is this checkout's docs/.

    python -m bench.gpu_cartridges --size 3b --conversations 2048 --steps 256 --out $OUT/gpu.json

Prints and writes one JSON record: machine, config, synthesis conversations/s, training
tokens/s (student tokens through forward + backward), peak GPU memory, wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from cartridges.config import CartridgeConfig
from cartridges.train import train_cartridge
from indexer.device import pick_device
from indexer.models import lm_dtype

ROOT = Path(__file__).resolve().parents[1]
# geometry of public Llama-3.2 / 3.1 configs (vocabulary replaced by the tokenizer's)
SIZES = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64),
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, head_dim=128),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128),
}


def random_model_dir(size: str, tokenizer_dir: Path, out: Path) -> Path:
    """A loadable HF directory: random weights of ``size``'s geometry plus the tokenizer."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=16384, rope_theta=500000.0,
                      tie_word_embeddings=size == "1b", bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      architectures=["LlamaForCausalLM"], **SIZES[size])
    torch.manual_seed(0)
    with torch.device(pick_device("auto")):
        model = LlamaForCausalLM(cfg).to(lm_dtype(torch.device(pick_device("auto"))))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="3b")
    ap.add_argument("--conversations", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--p", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--tokenizer", type=Path, default=None, help="default: the bundled SmolLM2's")
    ap.add_argument("--out", type=Path, default=None, help="also write the record here (JSON)")
    args = ap.parse_args()
    device = torch.device(pick_device("auto"))
    if device.type != "cuda":
        raise SystemExit("no CUDA device: this benchmark is for a GPU host (CPU figures: bench_cartridges)")
    if args.tokenizer is None:
        from indexer.models import DEFAULT_LM, causal_lm_dir

        args.tokenizer = Path(causal_lm_dir(DEFAULT_LM))
    text = "\n\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_model_dir(args.size, args.tokenizer, Path(tmp) / "model")
        cfg = CartridgeConfig(model=str(model_dir), p=args.p, num_samples=args.conversations,
                              holdout=min(64, args.conversations // 16), chunk_tokens=args.chunk,
                              steps=args.steps, batch_size=args.batch,
                              checkpoint_every=max(1, args.steps // 4))
        marks: dict[str, list[tuple[int, float]]] = {}

        def progress(done: int, total: int, stage: str) -> None:
            marks.setdefault(stage, []).append((done, time.perf_counter()))

        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        path = train_cartridge(text, "docs", 1, cfg, Path(tmp) / "work", progress)
        wall = time.perf_counter() - t0
        from cartridges.fileformat import read_cartridge

        training = read_cartridge(path).header["training"]
    synth = marks["synthesis"]
    record = {
        "device": torch.cuda.get_device_name(), "size": args.size, "dtype": str(lm_dtype(device)),
        "config": {k: v for k, v in cfg.to_dict().items() if k != "model"},
        "synthesis_conversations_per_s": round((synth[-1][0] - synth[0][0])
                                               / (synth[-1][1] - synth[0][1]), 3),
        "train_tokens_per_s": training["train_tokens_per_s"], "steps": training["steps"],
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "wall_seconds": round(wall, 1),
        "heldout_loss_init": training["heldout_loss_init"],
        "heldout_loss_final": training["heldout_loss_final"],
    }
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
