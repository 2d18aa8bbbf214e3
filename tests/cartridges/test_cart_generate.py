import pytest

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

    from cartridges.kv import forward_with_prefix, load_lm
    from cartridges.synthesis import chat_ids

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
