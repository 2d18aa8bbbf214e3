"""ONNX Runtime backend of the ColBERT encoder: export once, cache, run fast on CPU.

The loaded encoder (backbone + optional projection + L2 normalisation) is
traced to ONNX, fused by ONNX Runtime's BERT optimizer (attention, GELU,
skip-LayerNorm, embedding LayerNorm) and, for ``int8``, dynamically quantized
(per-channel int8 weights, int8 activations computed per batch). The result
lives in ``<model cache>/onnx/<key>/model.onnx`` where ``key`` hashes the
weights' bytes and every export setting, so a changed checkpoint or setting
gets a fresh export and an unchanged one is never exported twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from indexer.errors import ModelError
from indexer.models import default_cache_dir

ONNX_PRECISIONS = ("fp32", "int8")
EXPORT_VERSION = 1  # bump when the export recipe changes; old exports stay unused
OPSET = 17


class _Head(torch.nn.Module):
    """What the ONNX graph computes: token vectors of ``ColBERTEncoder._embed``."""

    def __init__(self, model: torch.nn.Module, projection: torch.nn.Linear | None) -> None:
        super().__init__()
        self.model = model
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, T, dim) unit vectors."""
        hidden = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state  # (B, T, H)
        if self.projection is not None:
            hidden = self.projection(hidden)  # (B, T, dim)
        return torch.nn.functional.normalize(hidden, dim=-1)


def weights_digest(encoder) -> str:
    """sha256 over the loaded weights (backbone and projection), in a fixed order."""
    digest = hashlib.sha256()
    modules = {"model": encoder.model, "projection": encoder.projection}
    for prefix, module in modules.items():
        if module is None:
            continue
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_key(encoder, precision: str) -> str:
    """Cache key: weights + encoder config + precision + export recipe and runtime version."""
    import onnxruntime

    settings = {
        "weights": weights_digest(encoder),
        "config": asdict(encoder.config),
        "precision": precision,
        "export_version": EXPORT_VERSION,
        "opset": OPSET,
        "onnxruntime": onnxruntime.__version__,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def export_dir(encoder, precision: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "onnx" / export_key(encoder, precision)


def ensure_export(encoder, precision: str, cache_dir: Path | None = None) -> Path:
    """Return the directory holding ``model.onnx`` for ``precision``, exporting it if absent.

    The export is built in a temporary directory beside its target and renamed
    into place, so a crash or a concurrent exporter never leaves a half-written
    model under the key.
    """
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"ONNX precision must be one of {ONNX_PRECISIONS}")
    target = export_dir(encoder, precision, cache_dir)
    if (target / "model.onnx").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tmp-") as tmp:
        tmp_dir = Path(tmp) / "export"
        tmp_dir.mkdir()
        traced = Path(tmp) / "traced.onnx"
        fused = Path(tmp) / "fused.onnx"
        try:
            _trace(encoder, traced)
            _fuse(encoder, traced, fused)
            if precision == "int8":
                _quantize(fused, tmp_dir / "model.onnx")
            else:
                os.replace(fused, tmp_dir / "model.onnx")
        except Exception as exc:  # the exporter raises many types; one typed error out
            raise ModelError(f"ONNX export of {encoder.model_path} failed: {exc}") from exc
        meta = {
            "precision": precision,
            "dim": encoder.dim,
            "model_path": str(encoder.model_path),
            "export_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp_dir, target)
        except OSError:  # another process exported the same key first: use theirs
            if not (target / "model.onnx").exists():
                raise
    return target


def _trace(encoder, path: Path) -> None:
    """Trace a CPU fp32 copy with eager attention (the pattern ORT's fuser recognises)."""
    model = copy.deepcopy(encoder.model).float().cpu().eval()
    model.set_attn_implementation("eager")
    projection = copy.deepcopy(encoder.projection).float().cpu() if encoder.projection else None
    sample = encoder.tokenizer(
        ["def add(a, b):\n    return a + b", "x"], padding=True, return_tensors="pt"
    )
    axes = {0: "batch", 1: "tokens"}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            _Head(model, projection),
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["vectors"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "vectors": axes},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and keeps BERT fusable
        )


def _fuse(encoder, source: Path, target: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = encoder.model.config
    fused = optimize_model(
        str(source),
        model_type="bert",
        num_heads=cfg.num_attention_heads,
        hidden_size=cfg.hidden_size,
        opt_level=1,
    )
    fused.save_model_to_file(str(target))


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8: per-channel weights (per-tensor lost ~7% cosine on MiniLM)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # fused ops (Attention, SkipLayerNorm) defeat shape inference; their outputs are float
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def default_threads() -> int:
    """Intra-op threads: ``MEMEX_ENCODER_THREADS`` or the cores this process may use."""
    env = os.environ.get("MEMEX_ENCODER_THREADS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class OnnxBackend:
    """Runs an exported encoder with ONNX Runtime on CPU; a drop-in for ``_embed``."""

    def __init__(self, directory: Path, precision: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Cores are shared (tokenizer thread, other processes): do not busy-wait between ops.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"cannot open the ONNX encoder in {directory}: {exc}") from exc
        self.directory = directory
        self.precision = precision

    def embed(self, batch: dict) -> torch.Tensor:
        """(B, T) ``input_ids`` / ``attention_mask`` tensors -> (B, T, dim) float32 unit vectors."""
        feed = {
            "input_ids": batch["input_ids"].numpy().astype(np.int64, copy=False),
            "attention_mask": batch["attention_mask"].numpy().astype(np.int64, copy=False),
        }
        (vectors,) = self.session.run(["vectors"], feed)
        return torch.from_numpy(vectors)
