"""Activation smoothing for the int8 export: move the FFN down-projections' outliers into weights.

A BERT layer's GELU output has a few channels far larger than the rest. int8 quantizes each
MatMul's input with one scale for the whole tensor, so those channels stretch the scale and
the others lose their precision: that is why the ``ffn-down-fp32-*`` recipes keep the first
down-projections in fp32 (a fp32 MatMul costs twice an int8 one; bench/RESULTS.md).

Smoothing (the SmoothQuant idea: Xiao et al., 2023) rewrites ``X @ W`` as
``(X / s) @ (s[:, None] * W)``, exact in fp32, with per input channel
``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``: the outlier channels shrink before the
per-tensor activation quantizer, and the weights, quantized per output channel, absorb the
scale. ``max|X_j|`` is measured once at export on a fixed calibration sample: functions and
docstring lines of standard-library modules other than the guard's (``guard.SAMPLE_MODULES``),
so the guard still judges the export on text it was not calibrated on.
"""

from __future__ import annotations

import hashlib

import numpy as np

from indexer.errors import ModelError

# Modules neither the guard's sample nor the tests' texts use, CALIBRATION_DOCS functions each.
CALIBRATION_MODULES = ("pathlib", "difflib", "calendar", "csv", "gettext", "pprint", "ftplib",
                       "tarfile", "configparser", "argparse")
CALIBRATION_DOCS = 8
# Documents are encoded in padded batches, and padding positions have activations of their
# own, outliers included, that the int8 scale covers too: calibrate on padded batches.
CALIBRATION_BATCH = 16


def calibration_sample() -> tuple[list[str], list[str]]:
    """(documents, queries) the activation maxima are measured on."""
    from indexer.encoding.guard import validation_sample

    docs, queries = [], []
    for module in CALIBRATION_MODULES:
        more_docs, more_queries = validation_sample(CALIBRATION_DOCS, (module,))
        docs += more_docs
        queries += more_queries
    return docs, queries


def calibration_digest() -> str:
    """Identifies the calibration sample (it follows the Python version's standard library)."""
    docs, queries = calibration_sample()
    return hashlib.sha256("\0".join(docs + queries).encode()).hexdigest()[:16]


def activation_maxima(encoder, graph_path: str, inputs: list[str]) -> list[np.ndarray]:
    """Per channel max |x| of each named graph tensor over the calibration sample, run
    through the fp32 graph at ``graph_path``: queries one at a time, documents in padded
    batches, as they are encoded."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(graph_path)
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                              for name in inputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    docs, queries = calibration_sample()
    if not docs:  # a Python installed without its sources (bytecode only)
        raise ModelError("no calibration text for int8 smoothing: the standard library's "
                         "sources are missing; set MEMEX_ENCODER_INT8_RECIPE=ffn-down-fp32-first1")
    cfg = encoder.config
    maxima: list[np.ndarray] = [np.zeros(0, np.float32)] * len(inputs)
    runs = [([q], cfg.query_max_tokens, cfg.query_marker) for q in queries]
    runs += [(docs[i:i + CALIBRATION_BATCH], cfg.doc_max_tokens, cfg.doc_marker)
             for i in range(0, len(docs), CALIBRATION_BATCH)]
    for texts, tokens, marker in runs:
        batch = encoder.tokenize_batch(texts, tokens, marker)
        feed = {k: batch[k].numpy() for k in ("input_ids", "attention_mask")}
        for k, x in enumerate(session.run(inputs, feed)):
            seen = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
            maxima[k] = seen if maxima[k].size == 0 else np.maximum(maxima[k], seen)
    return maxima


def smooth(model, matmuls: list[str], maxima: list[np.ndarray], alpha: float) -> None:
    """Rewrite each named MatMul (input x, constant weight W) of ``model`` in place as
    ``Mul(x, 1/s) @ (s * W)``; fp32 outputs do not change beyond rounding."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = {node.name: node for node in graph.node}
    for k, (name, x_max) in enumerate(zip(matmuls, maxima)):
        node = nodes[name]
        w = numpy_helper.to_array(weights[node.input[1]])  # (in, out)
        w_max = np.abs(w).max(axis=1)
        s = (np.maximum(x_max, 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha))
        s = np.clip(s, 1e-2, None).astype(np.float32)  # a near-dead channel keeps some weight
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], node.input[1]))
        inverse, smoothed = f"smoothing_{k}_inverse", f"{node.input[0]}_smoothed"
        graph.initializer.append(numpy_helper.from_array(1 / s, inverse))
        mul = helper.make_node("Mul", [node.input[0], inverse], [smoothed], name=f"Smoothing_{k}")
        graph.node.insert(list(graph.node).index(node), mul)
        node.input[0] = smoothed
