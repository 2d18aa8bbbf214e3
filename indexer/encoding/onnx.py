"""ONNX Runtime backend of the ColBERT encoder: export once, cache, run fast on CPU.

The loaded encoder (backbone + optional projection + L2 normalisation) is
traced to ONNX, fused by ONNX Runtime's BERT optimizer (attention, GELU,
skip-LayerNorm, embedding LayerNorm) and, for ``int8``, dynamically quantized
(per-channel int8 weights, int8 activations computed per batch) following one
of ``INT8_RECIPES`` (the default smooths the FFN down-projections' inputs first:
``indexer/encoding/smoothing.py``). The result lives in ``<model cache>/onnx/<key>/model.onnx``
where ``key`` hashes the weights' bytes and every export setting (recipe
included), so a changed checkpoint or setting gets a fresh export and an
unchanged one is never exported twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from indexer import config, durable
from indexer.encoding.encoder import backbone_pass, mean_pooled, unit
from indexer.encoding.smoothing import calibration_digest
from indexer.errors import InvalidInput, ModelError
from indexer.models import default_cache_dir

ONNX_PRECISIONS = ("fp32", "int8")
EXPORT_VERSION = 4  # bump when the export recipe changes; old exports stay unused
# (2: int8 recipes; 3: the pooled output; 4: one LpNormalization node per normalisation)
OPSET = 17


@dataclass(frozen=True)
class Int8Recipe:
    """Which FFN down-projections (MatMuls fed by a GELU, first layer first) int8 treats apart.

    ``fp32_first``: how many stay fp32 (None: all). Their inputs are GELU outputs with
    outliers, which stretch the per-batch int8 activation scale; keeping all 6 of MiniLM's
    halved the token-vector error, and the error they add shrinks with depth (layer 0
    contributes most), so the early ones buy the most quality per unit of speed
    (bench/RESULTS-encoder.md). ``smooth_alpha`` > 0: the int8 ones are smoothed first
    (``indexer/encoding/smoothing.py``), which buys that quality back without a fp32 MatMul.
    """

    fp32_first: int | None
    smooth_alpha: float = 0.0


INT8_RECIPES = {
    "all": Int8Recipe(0),
    "ffn-down-fp32-first1": Int8Recipe(1),
    "ffn-down-fp32-first2": Int8Recipe(2),
    "ffn-down-fp32": Int8Recipe(None),
    # alpha 0.8 of 0.7/0.8/0.9: the best token cosine to fp32 on the stdlib tuning set
    "ffn-down-smoothed": Int8Recipe(0, smooth_alpha=0.8),
}
# Every MatMul int8, and token and pooled vectors closer to fp32 than ffn-down-fp32-first1's
# (the default before, 2026-11-27) at ~5% less query encoding time; on the stdlib tuning
# subset the default hybrid search read 0.590 against 0.582 (bench/RESULTS.md, 2026-12-03).
DEFAULT_INT8_RECIPE = "ffn-down-smoothed"
_GELU_OPS = ("BiasGelu", "Gelu", "FastGelu")


class _Unit(torch.autograd.Function):
    """``encoder.unit`` that exports as one ONNX ``LpNormalization`` node instead of
    the five (Shape, ReduceL2, Clip, Expand, Div) torch's ``normalize`` traces to; the
    outputs are the same, and on a short query each node costs its own dispatch
    (bench/RESULTS.md, "query encoding")."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return unit(x)

    @staticmethod
    def symbolic(g, x):
        return g.op("LpNormalization", x, axis_i=-1, p_i=2)


class _Head(torch.nn.Module):
    """What the ONNX graph computes: token vectors of ``ColBERTEncoder.embed_batch``."""

    def __init__(self, model: torch.nn.Module, projection: torch.nn.Linear | None,
                 head_layers: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.model = model
        self.projection = projection
        self.head_layers = head_layers

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids and mask -> (B, T, dim) unit vectors and (B, H) unit pooled vectors."""
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": torch.zeros_like(input_ids)}
        hidden, last = backbone_pass(self.model, batch, self.head_layers, _Unit.apply)
        pooled = mean_pooled(last, attention_mask, _Unit.apply)
        if self.projection is not None:
            hidden = self.projection(hidden)  # (B, T, dim)
        return _Unit.apply(hidden), pooled


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


def int8_recipe(recipe: str | None = None) -> str:
    """``recipe``, else ``MEMEX_ENCODER_INT8_RECIPE``, else ``DEFAULT_INT8_RECIPE``; checked."""
    recipe = recipe or config.current().encoder_int8_recipe or DEFAULT_INT8_RECIPE
    if recipe not in INT8_RECIPES:
        raise InvalidInput(f"unknown int8 recipe {recipe!r} (choose from {', '.join(INT8_RECIPES)})")
    return recipe


def export_key(encoder, precision: str, recipe: str | None = None) -> str:
    """Cache key: weights + encoder config + precision (+ int8 recipe) + export and runtime version."""
    import onnxruntime

    settings = {
        "weights": weights_digest(encoder),
        "config": asdict(encoder.config),
        "precision": precision,
        "recipe": int8_recipe(recipe) if precision == "int8" else None,
        "calibration": calibration_digest() if smoothed(precision, recipe) else None,
        "export_version": EXPORT_VERSION,
        "opset": OPSET,
        "onnxruntime": onnxruntime.__version__,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def smoothed(precision: str, recipe: str | None) -> bool:
    """Whether this export's int8 MatMuls are smoothed (and so depend on the calibration)."""
    return precision == "int8" and INT8_RECIPES[int8_recipe(recipe)].smooth_alpha > 0


def export_dir(
    encoder, precision: str, cache_dir: Path | None = None, recipe: str | None = None
) -> Path:
    return (cache_dir or default_cache_dir()) / "onnx" / export_key(encoder, precision, recipe)


def ensure_export(
    encoder, precision: str, cache_dir: Path | None = None, recipe: str | None = None
) -> Path:
    """Return the directory holding ``model.onnx`` for ``precision``, exporting it if absent.

    ``recipe`` (int8 only) names the layers kept in fp32, see ``int8_recipe``.

    The export is built in a temporary directory beside its target and renamed
    into place, so a crash or a concurrent exporter never leaves a half-written
    model under the key.
    """
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"ONNX precision must be one of {ONNX_PRECISIONS}")
    recipe = int8_recipe(recipe) if precision == "int8" else None
    target = export_dir(encoder, precision, cache_dir, recipe)
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
                _quantize(encoder, fused, tmp_dir / "model.onnx", recipe)
            else:
                os.replace(fused, tmp_dir / "model.onnx")
        except Exception as exc:  # the exporter raises many types; one typed error out
            raise ModelError(f"ONNX export of {encoder.model_path} failed: {exc}") from exc
        meta = {
            "precision": precision,
            "recipe": recipe,
            "dim": encoder.dim,
            "model_path": str(encoder.model_path),
            "export_seconds": round(time.perf_counter() - started, 2),
        }
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            durable.publish_dir(tmp_dir, target)
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
            _Head(model, projection, encoder.config.head_layers),
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["vectors", "pooled"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "vectors": axes,
                          "pooled": {0: "batch"}},
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


def ffn_down_projections(graph) -> list[str]:
    """Names of the MatMuls fed by a GELU: the FFN down-projections of a fused BERT graph,
    first layer first (the graph is stored in topological order).

    Found by structure, not by name, so any BERT-like checkpoint's export works.
    """
    gelu_outputs = {out for node in graph.node if node.op_type in _GELU_OPS for out in node.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[0] in gelu_outputs]


def _quantize(encoder, source: Path, target: Path, recipe: str) -> None:
    """Dynamic int8: per-channel weights (per-tensor lost ~7% cosine on MiniLM); the FFN
    down-projections as ``INT8_RECIPES[recipe]`` says."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plan = INT8_RECIPES[recipe]
    downs = ffn_down_projections(onnx.load(str(source), load_external_data=False).graph)
    if (plan.fp32_first != 0 or plan.smooth_alpha > 0) and not downs:
        raise ModelError("no FFN down-projection (MatMul after GELU) found in the fused graph")
    exclude = downs[: plan.fp32_first]
    if plan.smooth_alpha > 0:
        from indexer.encoding.smoothing import activation_maxima, smooth

        model = onnx.load(str(source))
        nodes = {node.name: node for node in model.graph.node}
        smoothed = [name for name in downs if name not in exclude]
        maxima = activation_maxima(encoder, str(source), [nodes[n].input[0] for n in smoothed])
        smooth(model, smoothed, maxima, plan.smooth_alpha)
        source = source.with_name("smoothed.onnx")
        onnx.save(model, str(source))
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=exclude,
        # fused ops (Attention, SkipLayerNorm) defeat shape inference; their outputs are float
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def default_threads() -> int:
    """Intra-op threads: ``MEMEX_ENCODER_THREADS``, else every core this process may use.

    On an oversubscribed machine one thread ran int8 7-15% faster than two; when
    the cores were free, two threads ran 80% faster than one
    (bench/RESULTS-encoder.md), so all cores is the better bet.
    """
    threads = config.current().encoder_threads
    if threads:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxBackend:
    """Runs an exported encoder with ONNX Runtime on CPU; a drop-in for ``embed_batch``."""

    def __init__(
        self, directory: Path, precision: str, threads: int | None = None, recipe: str | None = None
    ) -> None:
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
        self.recipe = recipe  # int8 only: which layers stayed fp32

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ``input_ids`` / ``attention_mask`` tensors -> (B, T, dim) float32 unit
        vectors and (B, H) pooled vectors, as ``ColBERTEncoder.embed_batch``."""
        feed = {
            "input_ids": batch["input_ids"].numpy().astype(np.int64, copy=False),
            "attention_mask": batch["attention_mask"].numpy().astype(np.int64, copy=False),
        }
        vectors, pooled = self.session.run(["vectors", "pooled"], feed)
        return torch.from_numpy(vectors), torch.from_numpy(pooled)
