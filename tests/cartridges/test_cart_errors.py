import pytest

from cartridges.config import CartridgeConfig
from cartridges.kv import corpus_tokens, init_from_prefix
from cartridges.train import train_cartridge
from indexer.errors import InvalidInput, ModelError
from indexer.models import load_lm
from tests.cartridges.cart_setup import TINY


@pytest.mark.parametrize("p", [0, -3])
def test_p_not_positive(p):
    with pytest.raises(InvalidInput, match="p must be positive"):
        CartridgeConfig(p=p)


def test_p_beyond_context(lm):
    model, tok = lm
    with pytest.raises(InvalidInput, match="context window"):
        init_from_prefix(model, corpus_tokens(tok, "word " * 50), 10**6)


def test_empty_corpus(tmp_path):
    with pytest.raises(InvalidInput, match="empty"):
        train_cartridge("  \n", "c", 1, TINY, tmp_path)


def test_corpus_shorter_than_p(tmp_path):
    with pytest.raises(InvalidInput, match="fewer than p"):
        train_cartridge("just a few words", "c", 1, TINY, tmp_path)


def test_not_a_causal_lm():
    with pytest.raises(ModelError, match="not a causal LM"):
        load_lm("bundled:minilm")


def test_missing_model_path(tmp_path):
    with pytest.raises(ModelError):
        load_lm(str(tmp_path / "nope"))


def test_an_open_p_is_decided_only_by_the_corpus():
    assert CartridgeConfig().sized(12_000).p == 256
    assert CartridgeConfig().sized(2_224).p == 176  # msgpack's README: 12.6x smaller, not 8.7x
    assert CartridgeConfig(p=64).sized(100_000).p == 64  # a given p is kept
    with pytest.raises(ValueError, match="sized"):
        CartridgeConfig().length  # noqa: B018 -- reading it is the check
