"""Encoder runtimes with the real MiniLM: ONNX int8 (both recipes) vs torch fp32, export cache,
guard, settings."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from indexer.encoding import onnx as encode_onnx
from indexer.encoding.encoder import ColBERTEncoder
from indexer.encoding.guard import compare, passes
from indexer.encoding.pipeline import token_batches
from indexer.encoding.runtime import candidates, configure
from indexer.errors import InvalidInput, ModelError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private model cache, so the first ONNX load really exports."""
    path = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEMEX_MODEL_CACHE", str(path))
        mp.delenv("MEMEX_ENCODER_GUARD", raising=False)
        mp.delenv("MEMEX_ENCODER_QUANTIZE", raising=False)
        mp.delenv("MEMEX_ENCODER_INT8_RECIPE", raising=False)
        yield path


@pytest.fixture(scope="module")
def torch_encoder(cache):
    return ColBERTEncoder.load(runtime="torch")


@pytest.fixture(scope="module")
def int8_encoder(cache):
    return ColBERTEncoder.load(runtime="onnx", precision="int8")


@pytest.fixture(scope="module")
def windows():
    """Real code the guard's validation sample does not contain: 30-line windows of collections."""
    import collections

    lines = inspect.getsource(collections).splitlines()
    return [
        "collections/__init__.py\n" + "\n".join(lines[i : i + 30])
        for i in range(0, 12 * 15, 15)
    ] + ["x = 1", "def f():\n    pass"]


def test_onnx_int8_vectors_agree_with_torch(torch_encoder, int8_encoder, windows):
    assert int8_encoder.runtime == "onnx" and int8_encoder.precision == "int8"
    assert int8_encoder.backend.recipe == encode_onnx.DEFAULT_INT8_RECIPE
    assert passes(int8_encoder.agreement)
    ref = torch_encoder.encode_documents(windows)
    new = int8_encoder.encode_documents(windows)
    assert [r.shape for r in ref] == [n.shape for n in new]
    cos = np.concatenate([(r * n).sum(axis=1) for r, n in zip(ref, new)])
    assert cos.mean() > 0.97 and np.percentile(cos, 5) > 0.9
    queries = ["Return a new ordered dictionary", "count elements of an iterable"]
    q_ref, q_new = torch_encoder.encode_queries(queries), int8_encoder.encode_queries(queries)
    figures = compare(ref, q_ref, new, q_new)
    assert figures["cosine_mean"] > 0.97 and figures["top1"] == 1.0


def test_int8_queries_do_not_depend_on_their_batch(int8_encoder, windows):
    """int8 activations share one scale per batch: a query must encode the same alone
    and beside others (a long one stretches the scale most)."""
    queries = ["Return a new ordered dictionary", windows[0], "x"]
    vectors, pooled = int8_encoder.encode_queries_and_pooled(queries)
    for i, q in enumerate(queries):
        alone, alone_pooled = int8_encoder.encode_queries_and_pooled([q])
        assert np.array_equal(vectors[i], alone[0]) and np.array_equal(pooled[i], alone_pooled[0])


def test_second_load_reuses_the_export(int8_encoder, cache, monkeypatch):
    model_file = encode_onnx.export_dir(int8_encoder, "int8") / "model.onnx"
    assert model_file.exists()
    stamp = model_file.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(encode_onnx, "_trace", no_export)
    again = ColBERTEncoder.load(runtime="onnx", precision="int8")
    assert again.backend.directory == model_file.parent
    assert model_file.stat().st_mtime_ns == stamp
    assert not [p for p in (cache / "onnx").iterdir() if p.name.startswith(".tmp")]


def test_int8_recipes_quantize_what_they_say(torch_encoder, cache, windows):
    """'all' quantizes every MatMul; the others keep the first N GELU-fed ones (FFN down) fp32;
    keeping all 6 agrees better with torch fp32, and so does smoothing them instead (one Mul
    before each). Each recipe has its own cache key."""
    import onnx

    keys = {r: encode_onnx.export_key(torch_encoder, "int8", r) for r in encode_onnx.INT8_RECIPES}
    assert len(set(keys.values())) == len(keys)
    ref = torch_encoder.encode_documents(windows)
    cosine = {}
    for recipe in sorted({"all", "ffn-down-fp32", "ffn-down-smoothed",
                          encode_onnx.DEFAULT_INT8_RECIPE}):
        directory = encode_onnx.ensure_export(torch_encoder, "int8", recipe=recipe)
        assert directory.name == keys[recipe]
        assert json.loads((directory / "meta.json").read_text())["recipe"] == recipe
        graph = onnx.load(str(directory / "model.onnx")).graph
        float_matmuls = [n.name for n in graph.node if n.op_type == "MatMul"]
        quantized = [n for n in graph.node if n.op_type == "MatMulInteger"]
        kept = encode_onnx.INT8_RECIPES[recipe].fp32_first
        kept = 6 if kept is None else kept
        smoothing = [n for n in graph.node if n.op_type == "Mul" and n.name.startswith("Smoothing")]
        assert len(smoothing) == (6 if encode_onnx.INT8_RECIPES[recipe].smooth_alpha else 0)
        total = 18 + (torch_encoder.projection is not None)  # the backbone's, + the head's
        assert len(float_matmuls) == kept and len(quantized) == total - kept
        assert float_matmuls == [f"/model/encoder/layer.{i}/output/dense/MatMul" for i in range(kept)]
        torch_encoder.backend = encode_onnx.OnnxBackend(directory, "int8", recipe=recipe)
        try:
            new = torch_encoder.encode_documents(windows)
        finally:
            torch_encoder.backend = None
        cosine[recipe] = np.concatenate([(r * n).sum(axis=1) for r, n in zip(ref, new)]).mean()
    assert cosine["ffn-down-fp32"] > cosine["all"] > 0.97
    assert cosine["ffn-down-smoothed"] > cosine["all"]


def test_smoothing_without_stdlib_sources_is_a_model_error(torch_encoder, tmp_path, monkeypatch):
    """No calibration text (a bytecode-only Python): the smoothed export fails as a
    ModelError, which ``configure`` logs before trying the next runtime."""
    from indexer.encoding import smoothing

    monkeypatch.setattr(smoothing, "CALIBRATION_MODULES", ("no_such_module_here",))
    with pytest.raises(ModelError, match="sources are missing"):
        encode_onnx.ensure_export(torch_encoder, "int8", tmp_path, recipe="ffn-down-smoothed")
    assert not list((tmp_path / "onnx").iterdir())  # nothing half-written under a key


def test_smoothing_leaves_the_fp32_graph_unchanged(torch_encoder, cache, windows):
    """Each FFN down-projection ``x @ W`` becomes ``(x / s) @ (s * W)``: in fp32 the outputs are
    the same (a wrong axis or a missed rewrite would change them), and every down-projection
    reads its input through its Mul."""
    import onnx
    import onnxruntime as ort

    from indexer.encoding.smoothing import activation_maxima, smooth

    path = encode_onnx.ensure_export(torch_encoder, "fp32") / "model.onnx"
    model = onnx.load(str(path))
    downs = encode_onnx.ffn_down_projections(model.graph)
    nodes = {n.name: n for n in model.graph.node}
    maxima = activation_maxima(torch_encoder, str(path), [nodes[n].input[0] for n in downs])
    assert len(downs) == 6 and all(m.shape == (1536,) and m.max() > 1 for m in maxima)
    smooth(model, downs, maxima, alpha=0.8)
    nodes = {n.name: n for n in model.graph.node}
    assert all(nodes[n].input[0] == nodes[f"Smoothing_{k}"].output[0] for k, n in enumerate(downs))
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = torch_encoder.tokenize_batch(windows, 256, torch_encoder.config.doc_marker)
    feed = {k: batch[k].numpy() for k in ("input_ids", "attention_mask")}
    for a, b in zip(before.run(None, feed), after.run(None, feed)):
        np.testing.assert_allclose(a, b, atol=2e-4)


def test_fp32_export_is_fused_with_one_node_per_normalisation(torch_encoder, cache, windows):
    """The export keeps ORT's BERT fusion (one Attention node a layer) and traces each L2
    normalisation (head layers, head output, pooled) to one LpNormalization node, with the
    torch encoder's outputs."""
    import onnx

    directory = encode_onnx.ensure_export(torch_encoder, "fp32")
    ops = [n.op_type for n in onnx.load(str(directory / "model.onnx")).graph.node]
    layers = torch_encoder.model.config.num_hidden_layers
    assert ops.count("Attention") == layers and ops.count("SkipLayerNormalization") == 2 * layers
    assert ops.count("LpNormalization") == len(torch_encoder.config.head_layers) + 2
    assert "ReduceL2" not in ops
    torch_encoder.backend = encode_onnx.OnnxBackend(directory, "fp32")
    try:
        (new, new_pooled), queries = torch_encoder.encode_documents_and_pooled(windows), ["x", ""]
        new_q = torch_encoder.encode_queries(queries)
    finally:
        torch_encoder.backend = None
    ref, ref_pooled = torch_encoder.encode_documents_and_pooled(windows)
    assert max(np.abs(r - n).max() for r, n in zip(ref, new)) < 1e-4
    assert np.abs(ref_pooled - new_pooled).max() < 1e-4
    assert max(np.abs(r - n).max() for r, n in zip(torch_encoder.encode_queries(queries), new_q)) < 1e-4


def test_changed_weights_change_the_key(torch_encoder):
    import torch

    before = encode_onnx.export_key(torch_encoder, "int8")
    assert before != encode_onnx.export_key(torch_encoder, "fp32")
    weight = torch_encoder.model.embeddings.word_embeddings.weight
    with torch.no_grad():
        weight[0, 0] += 1.0
        try:
            assert encode_onnx.export_key(torch_encoder, "int8") != before
        finally:
            weight[0, 0] -= 1.0


def test_torch_runtime_batches_match_single_documents(torch_encoder, windows):
    assert torch_encoder.backend is None and torch_encoder.runtime == "torch"
    seen = []
    batched = torch_encoder.encode_documents(windows, batch_size=4, progress=seen.append)
    assert sum(seen) == len(windows)
    assert torch_encoder.encode_documents([]) == []
    for text, vectors in zip(windows[::4], batched[::4]):
        (alone,) = torch_encoder.encode_documents([text])
        assert vectors.shape == alone.shape and vectors.shape[1] == torch_encoder.dim
        np.testing.assert_allclose(vectors, alone, atol=1e-4)


def test_guard_rejects_a_disagreeing_export(int8_encoder, torch_encoder):
    verdict = encode_onnx.export_dir(int8_encoder, "int8") / "validation.json"
    saved = verdict.read_text()
    bad = {**json.loads(saved)["agreement"], "cosine_mean": 0.5}
    verdict.write_text(json.dumps({"agreement": bad}))
    try:
        with pytest.raises(ModelError, match="disagrees"):
            configure(torch_encoder, "onnx", "int8")
        configure(torch_encoder, "onnx", "int8", guard=False)  # the documented way around it
        assert torch_encoder.backend is not None and torch_encoder.agreement is None
    finally:
        verdict.write_text(saved)
        configure(torch_encoder, "torch")
    assert torch_encoder.backend is None


def test_guard_figures_detect_noise():
    rng = np.random.default_rng(0)
    docs = [rng.normal(size=(20, 8)) for _ in range(10)]
    docs = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]
    queries = [d[:4] for d in docs]
    assert passes(compare(docs, queries, docs, queries))
    noisy = [rng.normal(size=d.shape) for d in docs]
    assert not passes(compare(docs, queries, noisy, queries))


@pytest.mark.parametrize(
    "runtime, precision, device",
    [("tpu", None, "cpu"), ("torch", "int8", "cpu"), ("onnx", "fp16", "cpu"),
     ("onnx", None, "cuda"), ("auto", "int4", "cpu")],
)
def test_bad_settings_raise_invalid_input(runtime, precision, device):
    with pytest.raises(InvalidInput):
        candidates(runtime, precision, device)
    with pytest.raises(InvalidInput):
        ColBERTEncoder.load(runtime=runtime, precision=precision, device=device)


def test_environment_settings_are_checked_too(monkeypatch):
    monkeypatch.setenv("MEMEX_ENCODER_RUNTIME", "torch")
    monkeypatch.setenv("MEMEX_ENCODER_PRECISION", "int8")
    with pytest.raises(InvalidInput):
        ColBERTEncoder.load()


def test_unknown_int8_recipe_is_invalid_input(monkeypatch, torch_encoder):
    monkeypatch.setenv("MEMEX_ENCODER_INT8_RECIPE", "int4")
    with pytest.raises(InvalidInput, match="int8 recipe"):
        ColBERTEncoder.load(runtime="onnx")
    assert candidates("torch", None, "cpu") == [("torch", "fp32")]  # no int8 in play: not checked
    monkeypatch.delenv("MEMEX_ENCODER_INT8_RECIPE")
    with pytest.raises(InvalidInput, match="int8 recipe"):
        configure(torch_encoder, "onnx", "int8", recipe="none")
    assert torch_encoder.backend is None


def test_auto_order_and_quantize_switch(monkeypatch):
    assert candidates("auto", None, "cpu")[0] == ("onnx", "int8")
    assert candidates("auto", None, "cuda")[0] == ("torch", "fp16")
    monkeypatch.setenv("MEMEX_ENCODER_QUANTIZE", "0")
    assert candidates("auto", None, "cpu") == [("onnx", "fp32"), ("torch", "fp32")]


def test_pipeline_reraises_tokenizer_errors():
    def broken(texts):
        raise ValueError("tokenizer failed")

    with pytest.raises(ValueError, match="tokenizer failed"):
        list(token_batches(["a", "b"], broken, batch_size=1))


def test_auto_keeps_onnx_only_where_the_probe_says_it_is_faster(int8_encoder, cache, monkeypatch,
                                                                  tmp_path):
    from indexer import kernels

    monkeypatch.setenv("MEMEX_KERNEL_CACHE", str(tmp_path / "kernels.json"))
    kernels.reset_memo()
    enc = ColBERTEncoder.load(runtime="torch")
    key = f"encoder/{int8_encoder.backend.directory.name}"
    monkeypatch.setenv("MEMEX_FORCE_KERNEL", f"{key}=torch/fp32")  # as if int8 were slow here
    with pytest.raises(ModelError, match="not faster than torch fp32"):
        configure(enc, "auto", "int8")
    assert enc.backend is None  # left on torch fp32, not on the rejected export
    monkeypatch.delenv("MEMEX_FORCE_KERNEL")
    try:  # probed for real (int8 won on the AVX-512 and the AVX2 hosts measured)
        configure(enc, "auto", "int8")
    except ModelError:
        pass
    verdict = kernels.choices()["encoder"]
    faster = verdict["seconds"]["onnx/int8"] * kernels.MARGIN <= verdict["seconds"]["torch/fp32"]
    assert verdict["choice"] == ("onnx/int8" if faster else "torch/fp32")
    assert enc.runtime == ("onnx" if faster else "torch")
    kernels.reset_memo()
