"""Choose how a ``ColBERTEncoder`` runs: PyTorch or ONNX Runtime, and at which precision.

=========  ======  ==========================================================
runtime    device  precisions (first = default for ``precision=None``)
=========  ======  ==========================================================
``torch``  cpu     ``fp32``
``torch``  cuda    ``fp16``, ``bf16``, ``fp32``
``onnx``   cpu     ``int8``, ``fp32``
``auto``   cpu     onnx ``int8`` -> onnx ``fp32`` -> torch ``fp32``
``auto``   cuda    torch ``fp16`` -> torch ``fp32``
=========  ======  ==========================================================

Every path but torch fp32 is checked against torch fp32 by ``encode_guard``
before use (ONNX verdicts are cached beside the export). ``auto`` takes the
first candidate that is available, passes, and on CPU runs at least
``kernels.MARGIN`` x faster than torch fp32 on a probe batch (timed once per
machine and export, cached by ``indexer.kernels``: int8 is 3x fp32 with AVX-512
VNNI, 1.8x on an AVX2-only EPYC, and could be slower where int8 has no fast
path); an explicitly requested one that fails raises ``ModelError``. Environment:
``MEMEX_ENCODER_RUNTIME`` and
``MEMEX_ENCODER_PRECISION`` give the defaults, ``MEMEX_ENCODER_QUANTIZE=0``
keeps ``auto`` off int8, ``MEMEX_ENCODER_INT8_RECIPE`` picks how int8
treats the FFN down-projections (``encode_onnx.INT8_RECIPES``), ``MEMEX_ENCODER_GUARD=0`` skips the check.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from indexer import config, kernels
from indexer.encoding import guard as encode_guard
from indexer.encoding.onnx import int8_recipe
from indexer.errors import InvalidInput, ModelError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")
PRECISIONS = ("fp32", "int8", "fp16", "bf16")
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def settings(runtime: str | None, precision: str | None) -> tuple[str, str | None]:
    """Arguments over ``MEMEX_ENCODER_RUNTIME`` / ``MEMEX_ENCODER_PRECISION`` over auto."""
    env = config.current()
    return runtime or env.encoder_runtime, precision or env.encoder_precision


def candidates(runtime: str, precision: str | None, device: str) -> list[tuple[str, str]]:
    """(runtime, precision) pairs to try in order; raises ``InvalidInput`` for bad settings.

    >>> candidates("auto", None, "cpu")
    [('onnx', 'int8'), ('onnx', 'fp32'), ('torch', 'fp32')]
    >>> candidates("torch", "int8", "cpu")
    Traceback (most recent call last):
    ...
    indexer.errors.InvalidInput: precision 'int8' is not available for runtime 'torch' on cpu ...
    """
    if runtime not in RUNTIMES:
        raise InvalidInput(f"unknown encoder runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if precision is not None and precision not in PRECISIONS:
        raise InvalidInput(
            f"unknown encoder precision {precision!r} (choose from {', '.join(PRECISIONS)})"
        )
    gpu = device.startswith("cuda")
    if runtime == "onnx" and gpu:
        raise InvalidInput("the onnx encoder runtime is CPU-only; use runtime='torch' on a GPU")
    if gpu:
        torch_options = [("torch", "fp16"), ("torch", "bf16"), ("torch", "fp32")]
        table = {"torch": torch_options, "onnx": [], "auto": torch_options}
    else:
        onnx_options = [("onnx", "int8"), ("onnx", "fp32")]
        table = {"torch": [("torch", "fp32")], "onnx": onnx_options,
                 "auto": onnx_options + [("torch", "fp32")]}
    options = table[runtime]
    if ("onnx", "int8") in options and precision in (None, "int8"):
        int8_recipe()  # a bad MEMEX_ENCODER_INT8_RECIPE fails before any weights load
    if precision is None:
        if config.current().encoder_quantize:
            return options
        return [c for c in options if c[1] != "int8"]
    chosen = [c for c in options if c[1] == precision]
    if not chosen:
        raise InvalidInput(
            f"precision {precision!r} is not available for runtime {runtime!r} on {device} "
            f"(choose from: {', '.join(p for _, p in options)})"
        )
    return chosen


def configure(
    encoder,
    runtime: str | None = None,
    precision: str | None = None,
    guard: bool | None = None,
    cache_dir: Path | None = None,
    recipe: str | None = None,
) -> None:
    """Switch ``encoder`` to the first usable (runtime, precision); sets ``encoder.backend``,
    ``.runtime``, ``.precision`` and ``.agreement`` (guard figures, None when unchecked).
    ``recipe``: the int8 recipe (default ``MEMEX_ENCODER_INT8_RECIPE`` or the built-in one)."""
    runtime, precision = settings(runtime, precision)
    guard = encode_guard.guard_enabled() if guard is None else guard
    failures = []
    for rt, prec in candidates(runtime, precision, encoder.device):
        try:
            if rt == "onnx":
                agreement = _enable_onnx(encoder, prec, guard, cache_dir, recipe)
            else:
                agreement = _enable_torch(encoder, prec, guard)
            if runtime == "auto" and rt == "onnx":
                _check_speed(encoder, f"{rt}/{prec}")
        except ModelError as exc:
            log.warning("encoder runtime %s/%s not used: %s", rt, prec, exc)
            failures.append(f"{rt}/{prec}: {exc}")
            continue
        encoder.runtime, encoder.precision, encoder.agreement = rt, prec, agreement
        return
    raise ModelError("no usable encoder runtime: " + "; ".join(failures))


def _check_speed(encoder, name: str) -> None:
    """Raise ``ModelError`` unless the enabled backend beats torch fp32 here (probed once
    per machine and export: ``kernels.pick``, both at the encoder's own thread counts)."""
    backend = encoder.backend
    batch = encoder.tokenize_batch([_PROBE_TEXT] * 4, encoder.config.doc_max_tokens,
                                   encoder.config.doc_marker)

    def run(with_backend) -> Callable[[], object]:
        def embed() -> object:
            encoder.backend = with_backend
            try:
                with torch.inference_mode():
                    return encoder.embed_batch(batch)
            finally:
                encoder.backend = backend
        return embed

    key = f"encoder/{backend.directory.name}"
    if kernels.pick(key, {name: run(backend), "torch/fp32": run(None)}, "torch/fp32",
                    single_thread=False) != name:
        encoder.backend = None
        raise ModelError(f"{name} is not faster than torch fp32 on this CPU "
                         f"(probe in {kernels.cache_path()})")


_PROBE_TEXT = "\n".join(f"def step_{i}(state, value):\n    return state.update(value * {i})"
                        for i in range(12))  # ~170 tokens: a typical code passage


def _encode_sample(encoder):
    return lambda docs, queries: (encoder.encode_documents(docs), encoder.encode_queries(queries))


def _check(agreement: dict[str, float], what: str) -> dict[str, float]:
    if not encode_guard.passes(agreement):
        raise ModelError(
            f"{what} disagrees with fp32 (agreement {agreement}, needs {encode_guard.THRESHOLDS}); "
            "set MEMEX_ENCODER_GUARD=0 to use it anyway"
        )
    return agreement


def _enable_onnx(encoder, precision: str, guard: bool, cache_dir: Path | None, recipe: str | None):
    try:
        import onnxruntime  # noqa: F401 - only to learn whether it is installed

        from indexer.encoding.onnx import OnnxBackend, ensure_export
    except ImportError as exc:  # onnxruntime / onnx not installed
        raise ModelError(f"ONNX Runtime is not installed: {exc}") from exc
    recipe = int8_recipe(recipe) if precision == "int8" else None
    directory = ensure_export(encoder, precision, cache_dir, recipe)
    backend = OnnxBackend(directory, precision, recipe=recipe)
    encoder.backend = None
    agreement = None
    if guard:
        verdict = directory / "validation.json"
        if verdict.exists():
            agreement = json.loads(verdict.read_text())["agreement"]
        else:
            reference = _encode_sample(encoder)

            def candidate(docs, queries):
                encoder.backend = backend
                try:
                    return reference(docs, queries)
                finally:
                    encoder.backend = None

            agreement = encode_guard.measure_agreement(reference, candidate)
            tmp = verdict.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"agreement": agreement, "reference": "torch/fp32"}))
            os.replace(tmp, verdict)
        _check(agreement, f"ONNX {precision} encoder" + (f" (recipe {recipe})" if recipe else ""))
    encoder.backend = backend
    return agreement


def _enable_torch(encoder, precision: str, guard: bool):
    """fp32 is the reference itself; fp16/bf16 (GPU) cast the weights after checking."""
    encoder.backend = None
    modules = [m for m in (encoder.model, encoder.projection) if m is not None]

    def cast(dtype: torch.dtype) -> None:
        for m in modules:
            m.to(dtype)

    cast(torch.float32)  # the reference, also when re-configuring a half-precision encoder
    if precision == "fp32":
        return None
    if not guard:
        cast(_TORCH_DTYPES[precision])
        return None
    reference = _encode_sample(encoder)

    def candidate(docs, queries):
        cast(_TORCH_DTYPES[precision])
        return reference(docs, queries)

    agreement = encode_guard.measure_agreement(reference, candidate)
    try:
        return _check(agreement, f"torch {precision} encoder")
    except ModelError:
        cast(torch.float32)
        raise
