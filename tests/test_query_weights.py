"""Query token weights: ``encode_queries`` scales each token vector by its token's weight
(rescaled to mean 1 per query), the ONNX runtime does the same, and a weights file that
does not fit the vocabulary is refused at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from indexer.encoding.encoder import QUERY_WEIGHTS_FILE, ColBERTEncoder
from indexer.errors import ModelError
from indexer.models import resolve_model_path


def _linked_copy(dst: Path) -> Path:
    """The bundled MiniLM's files linked into ``dst``, to put a weights file beside."""
    dst.mkdir()
    for f in resolve_model_path("bundled:minilm").iterdir():
        (dst / f.name).symlink_to(f)
    return dst


def test_query_tokens_are_scaled_by_their_weights(tmp_path: Path) -> None:
    plain = ColBERTEncoder.load("bundled:minilm", runtime="torch")
    ids = plain.tokenizer("open a file")["input_ids"]  # [CLS] open a file [SEP]
    weights = torch.ones(len(plain.tokenizer))
    weights[plain.tokenizer.convert_tokens_to_ids("file")] = 3.0
    weights[[plain.tokenizer.cls_token_id, plain.tokenizer.sep_token_id]] = 0.0
    path = _linked_copy(tmp_path / "weighted")
    save_file({"weight": weights}, path / QUERY_WEIGHTS_FILE)

    (q,) = ColBERTEncoder.load(str(path), runtime="torch").encode_queries(["open a file"])
    (base,) = plain.encode_queries(["open a file"])
    w = weights[ids].numpy()
    np.testing.assert_allclose(q, base * (w * len(w) / w.sum())[:, None], atol=1e-6)
    assert np.linalg.norm(q[0]) == 0 and np.linalg.norm(q[3]) > 2.9  # [CLS] gone, "file" x3
    # documents are not weighted
    doc = "def open_file(path): ..."
    np.testing.assert_array_equal(
        ColBERTEncoder.load(str(path), runtime="torch").encode_documents([doc])[0],
        plain.encode_documents([doc])[0])


def test_onnx_runtime_weighs_queries_too(tmp_path: Path) -> None:
    path = _linked_copy(tmp_path / "weighted")
    n = len(ColBERTEncoder.load("bundled:minilm", runtime="torch").tokenizer)
    save_file({"weight": torch.linspace(0.1, 2.0, n)}, path / QUERY_WEIGHTS_FILE)
    torch_q = ColBERTEncoder.load(str(path), runtime="torch").encode_queries(["read a config"])[0]
    onnx_q = ColBERTEncoder.load(str(path), runtime="onnx", precision="fp32").encode_queries(
        ["read a config"])[0]
    np.testing.assert_allclose(onnx_q, torch_q, atol=1e-3)


def test_weights_that_do_not_fit_the_vocabulary_are_refused(tmp_path: Path) -> None:
    path = _linked_copy(tmp_path / "bad")
    save_file({"weight": torch.ones(7)}, path / QUERY_WEIGHTS_FILE)
    with pytest.raises(ModelError, match="vocabulary"):
        ColBERTEncoder.load(str(path), runtime="torch")


def test_training_weighs_queries_as_search_does() -> None:
    """Post-training scores queries with the torch form of the weights
    (``weigh_query_tokens``); search, with the numpy one in ``encode_queries``."""
    from indexer.training.model import TrainableColBERT

    encoder = ColBERTEncoder.load("bundled:memex-colbert", runtime="torch")
    assert encoder.query_weights is not None
    queries = ["open a file", "Return the number of items in the queue"]
    trained, mask = TrainableColBERT(encoder).eval().encode_queries(queries)
    for i, served in enumerate(encoder.encode_queries(queries)):
        np.testing.assert_allclose(trained[i][mask[i]].detach().numpy(), served, atol=1e-5)
