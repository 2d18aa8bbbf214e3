"""The summary initialisation: p ids that start with the corpus's sink token, hold the
model's own summary of every chunk, and are made once per work dir."""

from dataclasses import replace

from cartridges.kv import corpus_tokens
from cartridges.summary import summary_ids
from cartridges.train import init_cartridge, initial_ids
from tests.cartridges.cart_setup import TEXT, TINY


def test_summary_ids_fill_p_and_are_made_once_per_work_dir(lm, tmp_path):
    model, tok = lm
    ids = corpus_tokens(tok, TEXT)
    two_chunks = summary_ids(model, tok, ids, p=9, frozen=1, chunk_tokens=ids.numel() // 2 + 1)
    assert two_chunks.shape == (9,) and two_chunks[0] == ids[0]  # the attention sink stays the corpus's
    assert not bool((two_chunks[1:] == ids[1:9]).all())  # not simply the first p tokens
    assert tok.eos_token_id not in two_chunks.tolist()

    cfg = replace(TINY, init="summary")
    first = initial_ids(model, tok, ids, cfg, tmp_path)
    saved = tmp_path / "init_ids.json"
    before = saved.stat().st_mtime_ns
    assert (initial_ids(model, tok, ids, cfg, tmp_path) == first).all()
    assert saved.stat().st_mtime_ns == before  # read back, not generated again
    cart = init_cartridge(model, tok, ids, cfg, tmp_path)
    assert cart.layer(0)[0].shape[-2] == cfg.p
