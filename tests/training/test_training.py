"""Training lowers the loss; checkpoints save, load and encode identically."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from indexer.encoding.encoder import ColBERTEncoder
from indexer.training import TrainConfig, read_jsonl
from indexer.training.checkpoint import (
    export_colbert_ai,
    export_pylate,
    import_colbert_ai,
    import_pylate,
    save_checkpoint,
)
from indexer.training.data import write_jsonl
from indexer.training.loop import batch_loss, build_model, fit

CFG = dict(dim=64, steps=25, batch_size=4, n_negatives=2, doc_max_tokens=96, train_layers=0,
           head_lr=2e-3, warmup_steps=3, log_every=0, query_idf=0.5, pooled_weight=0.3,
           pooled_rotation=True)


@torch.no_grad()
def mean_loss(model, examples, cfg) -> float:
    model.eval()
    return float(np.mean([batch_loss(model, examples[i:i + 4], cfg).item()
                          for i in range(0, len(examples) - 3, 4)]))


@pytest.fixture(scope="module")
def trained(examples, tmp_path_factory):
    cfg = TrainConfig(**CFG)
    before = mean_loss(build_model(cfg, [e.positive for e in examples]), examples, cfg)
    model, stats = fit(cfg, examples)
    out = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(model.encoder, out, {"stats": stats})
    return cfg, before, model, out


def test_training_lowers_the_loss(trained, examples) -> None:
    cfg, before, model, _ = trained
    after = mean_loss(model, examples, cfg)
    assert after < 0.8 * before, (before, after)


def test_checkpoint_loads_and_encodes_identically(trained, examples) -> None:
    _, _, model, out = trained
    loaded = ColBERTEncoder.load(str(out), runtime="torch")
    assert loaded.dim == 64 and loaded.config == model.encoder.config
    docs = [e.positive for e in examples[:3]]
    for a, b in zip(model.encoder.encode_documents(docs), loaded.encode_documents(docs)):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)
    q = [e.query for e in examples[:3]]
    for a, b in zip(model.encoder.encode_queries(q), loaded.encode_queries(q)):
        assert np.allclose(a, b, atol=1e-5)
    # query token weights (CFG's query_idf) travel with the checkpoint: [CLS], in every
    # passage, weighs least; a token no passage holds, most
    w = loaded.query_weights
    assert w is not None and torch.equal(w, model.encoder.query_weights)
    assert float(w[loaded.tokenizer.cls_token_id]) == float(w.min()) < 0.2
    assert float(w[loaded.tokenizer.convert_tokens_to_ids("[unused5]")]) == float(w.max())
    # so do the pooled vectors' weight and rotation
    assert loaded.config.pooled_weight == 0.3
    assert torch.equal(loaded.pooled_rotation, model.encoder.pooled_rotation)
    np.testing.assert_allclose(loaded.encode_documents_and_pooled(docs)[1],
                               model.encoder.encode_documents_and_pooled(docs)[1], atol=1e-5)
    assert "stats" in json.loads((out / "training_config.json").read_text())


def test_pylate_round_trip_encodes_identically(trained, examples, tmp_path) -> None:
    _, _, _, out = trained
    exported = export_pylate(out, tmp_path / "pylate")
    assert json.loads((exported / "modules.json").read_text())[1]["path"] == "1_Dense"
    back = import_pylate(exported, tmp_path / "back")
    a, b = ColBERTEncoder.load(str(out), runtime="torch"), ColBERTEncoder.load(str(back),
                                                                               runtime="torch")
    assert replace(a.config, pooled_weight=0.0) == b.config  # PyLate has no pooled term
    docs = [e.positive for e in examples[:2]]
    for x, y in zip(a.encode_documents(docs), b.encode_documents(docs)):
        assert np.allclose(x, y, atol=1e-5)


def test_colbert_ai_round_trip_keeps_weights(trained, tmp_path) -> None:
    _, _, _, out = trained
    exported = export_colbert_ai(out, tmp_path / "colbert")
    state = load_file(exported / "model.safetensors")
    assert state["linear.weight"].shape == (64, 384)
    assert any(k.startswith("bert.encoder.layer.") for k in state)
    back = import_colbert_ai(exported, tmp_path / "back")
    cfg = ColBERTEncoder.load(str(back), runtime="torch").config
    assert cfg.markers and cfg.query_augmentation  # colbert-ai's conventions
    assert torch.equal(load_file(back / "colbert_linear.safetensors")["weight"],
                       load_file(out / "colbert_linear.safetensors")["weight"])


def test_jsonl_round_trip(examples, tmp_path: Path) -> None:
    rows = examples[:3]
    rows[0] = replace(rows[0], scores=[1.0, 0.5, -1.0])
    write_jsonl(tmp_path / "t.jsonl", rows)
    assert read_jsonl(tmp_path / "t.jsonl") == rows
