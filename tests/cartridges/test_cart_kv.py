import torch

from cartridges.fileformat import model_header, save_cartridge
from cartridges.inference import load_cartridge
from cartridges.kv import corpus_tokens, forward_with_prefix, init_from_prefix
from tests.cartridges.cart_setup import TEXT


def test_fresh_cartridge_reproduces_prefix_logits(lm):
    model, tok = lm
    ids = corpus_tokens(tok, TEXT)
    cart = init_from_prefix(model, ids, 16)
    cont = ids[16:28].unsqueeze(0)
    with torch.no_grad():
        with_cart = forward_with_prefix(model, [cart.layer(i) for i in range(cart.num_layers)], cont)
        real = model(input_ids=ids[:28].unsqueeze(0)).logits[:, 16:]
    assert torch.allclose(with_cart, real, atol=1e-4)
    # and the continuation alone (no prefix) is different: the prefix matters
    with torch.no_grad():
        alone = model(input_ids=cont).logits
    assert (alone - real).abs().max() > 1e-2


def test_client_generate_matches_prefix_in_context(lm, tmp_path):
    """As a client would: file -> load_cartridge -> model.generate, vs the real prefix in context."""
    model, tok = lm
    ids = corpus_tokens(tok, TEXT)
    cart = init_from_prefix(model, ids, 12)
    keys, values = cart.tensors()
    path = tmp_path / "c.safetensors"
    save_cartridge(path, keys, values, {**model_header(model, tok), "frozen_tokens": 1, "corpus_id": "x",
                                        "corpus_version": 1, "training": {}})
    loaded = load_cartridge(path, model, tok)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is Python?"}],
                                     add_generation_prompt=True, tokenize=False)
    q = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(**loaded.generate_inputs(q), max_new_tokens=6, do_sample=False)
    ref = model.generate(input_ids=torch.cat([ids[:12][None], q], 1), max_new_tokens=6, do_sample=False)
    assert out[0, loaded.p + q.shape[1]:].tolist() == ref[0, 12 + q.shape[1]:].tolist()
    assert len(out[0, loaded.p + q.shape[1]:]) > 0


def test_frozen_sink_is_not_trainable(lm):
    model, tok = lm
    cart = init_from_prefix(model, corpus_tokens(tok, TEXT), 6, frozen=1)
    assert cart.p == 6
    assert all(p.shape[1] == 5 for p in cart.train_keys)
    assert sum(p.numel() for p in cart.parameters()) * 4 < cart.nbytes()
