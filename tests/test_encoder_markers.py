"""ColBERT markers with the real MiniLM tokenizer: one marker id after [CLS], as colbert-ai."""

from __future__ import annotations

import pytest

from indexer.encoding.encoder import ColBERTEncoder, EncoderConfig


@pytest.fixture(scope="module")
def encoder() -> ColBERTEncoder:
    enc = ColBERTEncoder.load("bundled:minilm", runtime="torch")
    enc.config = EncoderConfig(markers=True, query_augmentation=True)
    return enc


def test_vocab_marker_is_one_token_after_cls(encoder) -> None:
    batch = encoder.tokenize_batch(["def add(a, b): return a + b", "x"], 8, "[unused1]")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[1] == 8  # the marker counts towards the limit
    assert ids[:, 0].tolist() == [encoder.tokenizer.cls_token_id] * 2
    assert ids[:, 1].tolist() == [encoder.tokenizer.convert_tokens_to_ids("[unused1]")] * 2
    plain = encoder.tokenizer(["x"])["input_ids"][0]
    assert ids[1][mask[1].bool()].tolist() == [plain[0], ids[0, 1].item(), *plain[1:]]


def test_queries_keep_marker_and_mask_padding(encoder) -> None:
    (q,) = encoder.encode_queries(["open a file"])
    assert q.shape == (encoder.config.query_max_tokens, encoder.dim)


def test_marker_outside_vocab_stays_text(encoder) -> None:
    ids = encoder.tokenize_batch(["x"], 16, "[Q]")["input_ids"][0].tolist()
    assert encoder.tokenizer.convert_ids_to_tokens(ids)[1:4] == ["[", "q", "]"]


@pytest.mark.parametrize("max_tokens", [8, 32, 256])
def test_rust_tokenizer_path_gives_the_wrappers_tensors(encoder, max_tokens) -> None:
    """``tokenize_batch`` runs the fast tokenizer's backend directly; what the model sees
    must be what the ``transformers`` wrapper gives, for any text and length."""
    import inspect
    import string

    lines = inspect.getsource(string).splitlines()
    texts = ["\n".join(lines[i:i + 30]) for i in range(0, len(lines), 40)]
    texts += ["", "x", "héllo wörld ∑ 日本語 🙂 Ｆｕｌｌ", "word " * 400, "\x0c\tfoo\r\nbar\x00"]
    for batch in (texts, texts[-4:-3], texts[:1]):
        ours = encoder._tokenize(batch, max_tokens)
        theirs = encoder.tokenizer(batch, padding=True, truncation=True, max_length=max_tokens,
                                   return_tensors="pt")
        assert set(ours) == set(theirs.keys())
        for key, tensor in theirs.items():
            assert ours[key].dtype == tensor.dtype and ours[key].equal(tensor), key
