"""Checkpoint layouts: memex's own, and colbert-ai's and PyLate's for exchange.

memex (what ``ColBERTEncoder.load(path)`` reads)::

    config.json, model.safetensors, tokenizer files   # the HF backbone
    colbert_linear.safetensors                        # {"weight": (dim, hidden)} head
    query_token_weights.safetensors                   # optional {"weight": (vocab,)}
    pooled_rotation.safetensors                       # optional {"weight": (hidden, hidden)}
    memex_encoder.json                                # EncoderConfig
    training_config.json                              # TrainConfig + training stats

colbert-ai (``HF_ColBERT``): one state dict with ``bert.*`` backbone keys and
``linear.weight`` (dim, hidden), a BERT ``config.json``, the tokenizer, and
``artifact.metadata`` (JSON: dim, query_maxlen, doc_maxlen, ...).
Neither exchange format has a place for query token weights or the pooled term of
hybrid search: an exported encoder scores queries unweighted, and imports get no pooled
term (``pooled_weight`` 0).

PyLate (a sentence-transformers dir): the backbone at the root, ``modules.json``
naming a Transformer and a ``1_Dense`` module (``linear.weight``), and
``config_sentence_transformers.json`` with prefixes and lengths.
"""

from __future__ import annotations

import json
import string
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from indexer import durable
from indexer.encoding.encoder import (
    POOLED_ROTATION_FILE,
    QUERY_WEIGHTS_FILE,
    ColBERTEncoder,
    EncoderConfig,
)
from indexer.errors import InvalidInput


def _write_atomically(out_dir: Path, fill) -> Path:
    """Build the directory beside ``out_dir``, fsync it whole and rename it into place
    (``indexer/durable.py``): after a power loss it is complete or absent."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise InvalidInput(f"{out_dir} already exists")
    durable.make_dirs(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        fill(tmp)
        durable.publish_dir(tmp, out_dir)
    except BaseException:
        durable.remove(tmp)
        raise
    return out_dir


def _backbone_files(encoder: ColBERTEncoder, path: Path, state: dict | None = None) -> None:
    encoder.model.config.save_pretrained(path)
    encoder.tokenizer.save_pretrained(path)
    state = state if state is not None else encoder.model.state_dict()
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
              path / "model.safetensors")


def save_checkpoint(encoder: ColBERTEncoder, out_dir: Path, training: dict | None = None) -> Path:
    """Write ``encoder`` (backbone, head, settings) as a memex checkpoint directory."""

    def fill(tmp: Path) -> None:
        _backbone_files(encoder, tmp)
        if encoder.projection is not None:
            save_file({"weight": encoder.projection.weight.detach().contiguous().cpu()},
                      tmp / "colbert_linear.safetensors")
        if encoder.query_weights is not None:
            save_file({"weight": encoder.query_weights.contiguous().cpu()}, tmp / QUERY_WEIGHTS_FILE)
        if encoder.pooled_rotation is not None:
            save_file({"weight": encoder.pooled_rotation.contiguous().cpu()},
                      tmp / POOLED_ROTATION_FILE)
        (tmp / "memex_encoder.json").write_text(json.dumps(asdict(encoder.config), indent=2))
        if training is not None:
            (tmp / "training_config.json").write_text(json.dumps(training, indent=2))

    return _write_atomically(out_dir, fill)


def _head(encoder: ColBERTEncoder) -> torch.Tensor:
    if encoder.projection is None:
        raise InvalidInput("the encoder has no linear head: colbert-ai and PyLate need one")
    if encoder.config.head_layers:
        raise InvalidInput(f"the encoder's head reads layers {list(encoder.config.head_layers)}: "
                           "colbert-ai and PyLate read the last layer only")
    return encoder.projection.weight.detach().contiguous().cpu()


def export_colbert_ai(checkpoint: Path, out_dir: Path) -> Path:
    """memex checkpoint -> colbert-ai ``HF_ColBERT`` directory."""
    enc = ColBERTEncoder.load(str(checkpoint), runtime="torch")
    cfg = enc.config

    def fill(tmp: Path) -> None:
        state = {f"bert.{k}": v for k, v in enc.model.state_dict().items()}
        state["linear.weight"] = _head(enc)
        _backbone_files(enc, tmp, state)
        config = json.loads((tmp / "config.json").read_text())
        config["architectures"] = ["HF_ColBERT"]
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        # attend_to_mask_tokens: memex's query augmentation attends to its [MASK] padding.
        (tmp / "artifact.metadata").write_text(json.dumps({
            "dim": enc.dim, "query_maxlen": cfg.query_max_tokens,
            "doc_maxlen": cfg.doc_max_tokens, "mask_punctuation": cfg.skip_punctuation,
            "query_token_id": cfg.query_marker, "doc_token_id": cfg.doc_marker,
            "similarity": "cosine", "attend_to_mask_tokens": True}, indent=2))

    return _write_atomically(out_dir, fill)


def _load_state(path: Path) -> dict:
    if (path / "model.safetensors").exists():
        return load_file(path / "model.safetensors")
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise InvalidInput(f"{path} has no model.safetensors or pytorch_model.bin")


def _save_imported(src: Path, out_dir: Path, backbone: dict, head: torch.Tensor,
                   config: EncoderConfig, origin: str) -> Path:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    def fill(tmp: Path) -> None:
        model = AutoModel.from_config(AutoConfig.from_pretrained(src))
        missing, unexpected = model.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith("pooler.")]  # unused by ColBERT
        if missing or unexpected:
            raise InvalidInput(f"{src} does not match its config: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
        save_file({"weight": head.contiguous()}, tmp / "colbert_linear.safetensors")
        (tmp / "memex_encoder.json").write_text(json.dumps(asdict(config), indent=2))
        (tmp / "training_config.json").write_text(json.dumps({"imported_from": origin}))

    return _write_atomically(out_dir, fill)


def import_colbert_ai(src: Path, out_dir: Path) -> Path:
    """colbert-ai checkpoint -> memex checkpoint (colbert-ai always uses markers and
    [MASK] query augmentation, so the imported settings turn both on)."""
    src = Path(src)
    state = _load_state(src)
    if "linear.weight" not in state:
        raise InvalidInput(f"{src} has no linear.weight: not a colbert-ai checkpoint")
    meta_file = src / "artifact.metadata"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    config = EncoderConfig(
        query_max_tokens=meta.get("query_maxlen", 32), doc_max_tokens=meta.get("doc_maxlen", 180),
        markers=True, query_augmentation=True,
        skip_punctuation=meta.get("mask_punctuation", True),
        query_marker=meta.get("query_token_id", "[unused0]"),
        doc_marker=meta.get("doc_token_id", "[unused1]"))
    backbone = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    return _save_imported(src, out_dir, backbone, state["linear.weight"], config, "colbert-ai")


def export_pylate(checkpoint: Path, out_dir: Path) -> Path:
    """memex checkpoint -> PyLate (sentence-transformers) directory."""
    enc = ColBERTEncoder.load(str(checkpoint), runtime="torch")
    cfg = enc.config
    weight = _head(enc)

    def fill(tmp: Path) -> None:
        _backbone_files(enc, tmp)
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
        (tmp / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": cfg.doc_max_tokens, "do_lower_case": False}))
        (tmp / "config_sentence_transformers.json").write_text(json.dumps({
            "query_prefix": f"{cfg.query_marker} " if cfg.markers else "",
            "document_prefix": f"{cfg.doc_marker} " if cfg.markers else "",
            "query_length": cfg.query_max_tokens, "document_length": cfg.doc_max_tokens,
            "do_query_expansion": cfg.query_augmentation, "attend_to_expansion_tokens": True,
            "skiplist_words": list(string.punctuation) if cfg.skip_punctuation else [],
            "similarity_fn_name": "MaxSim", "model_type": "ColBERT"}, indent=2))
        dense = tmp / "1_Dense"
        dense.mkdir()
        (dense / "config.json").write_text(json.dumps({
            "in_features": weight.shape[1], "out_features": weight.shape[0], "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": weight}, dense / "model.safetensors")

    return _write_atomically(out_dir, fill)


def import_pylate(src: Path, out_dir: Path) -> Path:
    """PyLate (sentence-transformers) directory -> memex checkpoint."""
    src = Path(src)
    modules = json.loads((src / "modules.json").read_text())
    dense = [m for m in modules if m["type"].endswith("Dense")]
    if len(dense) != 1:
        raise InvalidInput(f"{src} needs exactly one Dense module, has {len(dense)}")
    dense_dir = src / dense[0]["path"]
    dense_state = _load_state(dense_dir)
    if json.loads((dense_dir / "config.json").read_text()).get("bias"):
        raise InvalidInput("a Dense head with a bias is not supported")
    st = json.loads((src / "config_sentence_transformers.json").read_text())
    q_prefix = st.get("query_prefix", "").strip()
    d_prefix = st.get("document_prefix", "").strip()
    config = EncoderConfig(
        query_max_tokens=st.get("query_length", 32), doc_max_tokens=st.get("document_length", 180),
        markers=bool(q_prefix), query_augmentation=st.get("do_query_expansion", True),
        skip_punctuation=bool(st.get("skiplist_words")),
        query_marker=q_prefix or "[unused0]", doc_marker=d_prefix or "[unused1]")
    root = src / next(m["path"] for m in modules if m["type"].endswith("Transformer"))
    return _save_imported(root, out_dir, _load_state(root), dense_state["linear.weight"],
                          config, "pylate")
