"""A head over several backbone layers (``EncoderConfig.head_layers``): it starts as the
one-layer PCA head, trains, and encodes the same in training, after a reload, through
ONNX, and from the frozen-layer cache; formats that read one layer refuse it."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.encoding.encoder import ColBERTEncoder
from indexer.errors import InvalidInput, ModelError
from indexer.training import TrainConfig
from indexer.training.checkpoint import export_colbert_ai, export_pylate, save_checkpoint
from indexer.training.loop import build_model, fit
from indexer.training.model import TrainableColBERT

CFG = TrainConfig(dim=32, steps=20, batch_size=4, n_negatives=1, doc_max_tokens=96,
                  train_layers=0, head_lr=2e-3, warmup_steps=3, log_every=0,
                  head_layers=(3, 6))


@pytest.fixture(scope="module")
def trained(examples, tmp_path_factory):
    model, _ = fit(CFG, examples)
    out = tmp_path_factory.mktemp("ckpt") / "layers"
    save_checkpoint(model.encoder, out)
    return model, out


def test_starts_as_the_one_layer_head(examples) -> None:
    passages = [e.positive for e in examples]
    wide = build_model(CFG, passages)
    narrow = build_model(replace(CFG, head_layers=()), passages)
    assert wide.head.weight.shape == (32, 2 * 384)
    docs = passages[:3]
    for a, b in zip(wide.encoder.encode_documents(docs), narrow.encoder.encode_documents(docs)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_trains_the_lower_layer_and_reloads_identically(trained, examples) -> None:
    model, out = trained
    assert float(model.head.weight.detach()[:, :384].abs().max()) > 0  # layer 3's block moved from 0
    assert json.loads((out / "memex_encoder.json").read_text())["head_layers"] == [3, 6]
    loaded = ColBERTEncoder.load(str(out), runtime="torch")
    assert loaded.config == model.encoder.config and loaded.dim == 32
    docs, queries = [e.positive for e in examples[:3]], [e.query for e in examples[:3]]
    for a, b in zip(model.encoder.encode_documents(docs), loaded.encode_documents(docs)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    onnx = ColBERTEncoder.load(str(out), runtime="onnx", precision="fp32")
    for a, b in zip(loaded.encode_queries(queries), onnx.encode_queries(queries)):
        np.testing.assert_allclose(a, b, atol=1e-3)
    for a, b in zip(loaded.encode_documents(docs), onnx.encode_documents(docs)):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_frozen_layer_cache_feeds_every_head_layer(trained) -> None:
    """Layer 3 lies below, at, or above the first trained layer as ``trained_layers`` grows:
    the cache must give the full forward's vectors in each case."""
    _, out = trained
    model = TrainableColBERT(ColBERTEncoder.load(str(out), runtime="torch")).eval()
    texts = [textwrap.dedent(textwrap.indent.__doc__ or ""), "def f(x):\n    return x", "short"]
    with torch.no_grad():
        full, mask = model.encode_documents(texts)
        for trained_layers in (0, 2, 3, 4, 6):
            model.cache_frozen_layers(trained_layers)
            for _ in range(2):  # the second pass reads the cache
                cached, _ = model.encode_documents(texts)
                assert torch.allclose(cached[mask], full[mask], atol=1e-5), trained_layers


def test_formats_that_read_one_layer_refuse_it(trained, tmp_path: Path) -> None:
    _, out = trained
    for export in (export_pylate, export_colbert_ai):
        with pytest.raises(InvalidInput, match="last layer only"):
            export(out, tmp_path / export.__name__)


def test_a_head_that_does_not_fit_its_layers_is_refused(trained, tmp_path: Path) -> None:
    _, out = trained
    for layers, match in (([3, 4, 6], "reading 1152 features"), ([3, 7], "from 0 to 6")):
        bad = tmp_path / f"bad-{len(layers)}-{layers[-1]}"
        bad.mkdir()
        for f in out.iterdir():
            (bad / f.name).symlink_to(f)
        (bad / "memex_encoder.json").unlink()
        config = json.loads((out / "memex_encoder.json").read_text())
        (bad / "memex_encoder.json").write_text(json.dumps({**config, "head_layers": layers}))
        with pytest.raises(ModelError, match=match):
            ColBERTEncoder.load(str(bad), runtime="torch")
