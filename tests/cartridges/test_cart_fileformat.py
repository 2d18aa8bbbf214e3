import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from cartridges.fileformat import CartridgeCorrupt, CartridgeMismatch, read_cartridge, save_cartridge
from cartridges.inference import load_cartridge
from indexer.errors import NotFound
from indexer.models import causal_lm_dir


def test_roundtrip_is_bit_exact(trained, tmp_path):
    path = trained[0]
    cart = read_cartridge(path)
    copy = tmp_path / "copy.safetensors"
    save_cartridge(copy, cart.keys, cart.values, cart.header)
    again = read_cartridge(copy)
    assert again.header == cart.header
    for a, b in zip(cart.keys + cart.values, again.keys + again.values):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_header_describes_model_and_corpus(trained, lm):
    h = read_cartridge(trained[0]).header
    assert (h["format"], h["format_version"], h["p"], h["frozen_tokens"]) == ("memex-cartridge", 1, 8, 1)
    assert (h["layers"], h["kv_heads"], h["head_dim"]) == (30, 3, 64)
    assert h["rope"]["rope_theta"] == 100000.0
    assert (h["corpus_id"], h["corpus_version"], h["dtype"]) == ("faq", 3, "float32")
    assert len(h["model_weights_sha256"]) == 64 and len(h["tokenizer_sha256"]) == 64


def test_truncated_file_rejected(trained, tmp_path):
    data = trained[0].read_bytes()
    for cut in (4, 200, len(data) - 10):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CartridgeCorrupt):
            read_cartridge(bad)


def test_tampered_tensor_rejected(trained, tmp_path):
    data = bytearray(trained[0].read_bytes())
    data[-100] ^= 0x01
    bad = tmp_path / "flip.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CartridgeCorrupt, match="checksum"):
        read_cartridge(bad)


def test_tampered_header_rejected(trained, tmp_path):
    data = trained[0].read_bytes()
    bad = tmp_path / "hdr.safetensors"
    bad.write_bytes(data.replace(b'\\"corpus_version\\": 3', b'\\"corpus_version\\": 4', 1))
    assert bad.read_bytes() != data
    with pytest.raises(CartridgeCorrupt, match="checksum"):
        read_cartridge(bad)


def test_missing_file(tmp_path):
    with pytest.raises(NotFound):
        read_cartridge(tmp_path / "none.safetensors")


def test_refuses_same_shape_other_weights(trained):
    other = AutoModelForCausalLM.from_pretrained(causal_lm_dir(), dtype=torch.float32)
    with torch.no_grad():
        other.model.norm.weight.add_(0.5)
    with pytest.raises(CartridgeMismatch, match="not this model"):
        load_cartridge(trained[0], other)


def test_refuses_other_architecture(trained):
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(CartridgeMismatch, match="2 layers"):
        load_cartridge(trained[0], LlamaForCausalLM(cfg))


def test_accepts_its_model(trained, lm):
    model, tok = lm
    assert load_cartridge(trained[0], model, tok).p == 8
