import pytest
import torch

from cartridges.generate import generate_chat, load_layers
from indexer.errors import InvalidInput

MSG = [{"role": "user", "content": "What is Python?"}]


def test_chat_with_cartridge_plain_and_stream_agree(trained):
    path = trained[0]
    text = generate_chat(MSG, [path], max_tokens=8)
    pieces = list(generate_chat(MSG, [path], max_tokens=8, stream=True))
    assert text and "".join(pieces) == text
    assert len(pieces) > 1


def test_cartridge_changes_the_answer_distribution(trained):
    import torch

    from cartridges.kv import forward_with_prefix
    from cartridges.synthesis import chat_ids
    from indexer.models import load_lm

    model, tok = load_lm("bundled:smollm2")
    ids = torch.tensor([chat_ids(tok, MSG)])
    with torch.no_grad():
        a = forward_with_prefix(model, load_layers([trained[0]]), ids)[0, -1]
        b = forward_with_prefix(model, [], ids)[0, -1]
    assert (a - b).abs().max() > 1e-3


def test_several_cartridges_concatenate(trained):
    layers = load_layers([trained[0], trained[0]])
    assert layers[0][0].shape[1] == 16
    assert isinstance(generate_chat(MSG, [trained[0], trained[0]], max_tokens=3), str)


def test_too_long_request_rejected(trained):
    with pytest.raises(InvalidInput, match="context window"):
        generate_chat(MSG, [trained[0]], max_tokens=10**6, stream=True)


def test_bad_messages_rejected():
    with pytest.raises(InvalidInput):
        generate_chat([{"content": "no role"}])


def test_two_different_cartridges_compose(trained, lm, tmp_path):
    """A second cartridge of another corpus: the composition is A's slots then B's, and chats."""
    from cartridges.fileformat import model_header, read_cartridge, save_cartridge
    from cartridges.kv import corpus_tokens, init_from_prefix

    model, tok = lm
    other = init_from_prefix(model, corpus_tokens(tok, "Zephyr nodes send heartbeats every 7 seconds."), 6)
    keys, values = other.tensors()
    b = tmp_path / "b.safetensors"
    save_cartridge(b, keys, values, {**model_header(model, tok), "frozen_tokens": 1, "corpus_id": "zephyr",
                                     "corpus_version": 1, "training": {}})
    a = read_cartridge(trained[0]).layers()
    layers = load_layers([trained[0], b])
    assert layers[0][0].shape[1] == a[0][0].shape[1] + 6
    for i, (k, v) in enumerate(layers):
        assert torch.equal(k[:, :8], a[i][0]) and torch.equal(k[:, 8:], keys[i])
        assert torch.equal(v[:, 8:], values[i])
    assert isinstance(generate_chat(MSG, [trained[0], b], max_tokens=3), str)
