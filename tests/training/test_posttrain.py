"""Post-training with no labels: docstring mining, the frozen-layer cache, end to end."""

from __future__ import annotations

import inspect
import shlex
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from indexer.corpus import Corpora
from indexer.encoding.encoder import ColBERTEncoder
from indexer.mined_queries import PassageSpan, docstring_queries
from indexer.models import DEFAULT_LM, load_lm
from indexer.posttrain import PostTrainConfig, QueryWriter, mined_queries, post_train
from indexer.training.default_encoder import RECIPE
from indexer.training.model import TrainableColBERT

SOURCE = '''class Stack:
    """A last-in first-out collection of items."""

    def push(self, item):
        """Put an item on top of the stack."""
        self.items.append(item)

    def pop(self):
        """Short."""
        return self.items.pop()
'''


def test_query_writer_shares_the_lm_and_scores_a_batch_as_one_by_one() -> None:
    writer = QueryWriter()
    model, tokenizer = load_lm(DEFAULT_LM, "auto")  # what cartridge training asks for
    assert writer.model is model and writer.tok is tokenizer  # one copy in a server
    side = tokenizer.padding_side
    passages = [("stack.py", SOURCE), ("url.py", "def split_url(url):\n    return url.split('/')\n")]
    queries = writer.write(passages, chars=400, max_tokens=16)
    assert len(queries) == 2 and all(isinstance(q, str) for q in queries)
    batched = writer.likelihood("push an item on a stack", passages, chars=400)
    alone = [writer.likelihood("push an item on a stack", [p], chars=400)[0] for p in passages]
    assert batched == pytest.approx(alone, abs=1e-4)  # padding never leaks into a score
    assert batched[0] > batched[1]  # the query is likelier beside the passage it describes
    assert tokenizer.padding_side == side  # the shared tokenizer is left as it was


def test_docstring_queries_cut_the_docstring_and_pick_the_holding_window() -> None:
    spans = [PassageSpan(1, 1, 5), PassageSpan(2, 4, 10)]
    found = {m.query: m for m in docstring_queries(SOURCE, spans)}
    assert set(found) == {"A last-in first-out collection of items.",
                          "Put an item on top of the stack."}  # "Short." is too short
    push = found["Put an item on top of the stack."]
    assert push.passage_id == 2  # the window that holds the whole method
    assert "def push(self, item):" in push.positive and "Put an item" not in push.positive
    assert "last-in" not in found["A last-in first-out collection of items."].positive
    assert docstring_queries("def broken(:\n", spans) == []
    assert docstring_queries(SOURCE, []) == []


def test_frozen_layer_cache_encodes_as_the_full_forward(encoder: ColBERTEncoder) -> None:
    trainable = ColBERTEncoder.load(runtime="torch")
    trainable.config = replace(trainable.config, head_layers=())  # the last layer only
    trainable.projection = torch.nn.Linear(384, 32, bias=False)
    trainable.dim = 32
    model = TrainableColBERT(trainable).eval()
    texts = [inspect.getsource(textwrap.dedent), "def f(x):\n    return x", "short"]
    with torch.no_grad():
        full, mask = model.encode_documents(texts)
        for trained_layers in (0, 1, 2):
            model.cache_frozen_layers(trained_layers)
            for _ in range(2):  # the second pass reads the cache
                cached, _ = model.encode_documents(texts)
                assert torch.allclose(cached[mask], full[mask], atol=1e-5), trained_layers


def test_post_train_mines_trains_and_switches(tmp_path: Path, encoder: ColBERTEncoder,
                                              monkeypatch) -> None:
    monkeypatch.setenv("MEMEX_ENCODER_RUNTIME", "torch")  # no ONNX export of the new version
    tree = tmp_path / "tree"
    tree.mkdir()
    for module in (textwrap, shlex):
        shutil.copy(inspect.getsourcefile(module), tree / Path(module.__file__).name)
    corpora = Corpora(tmp_path / "home", encoder=encoder)
    corpora.create("lib", str(tree))
    corpora.sync("lib")
    mined = mined_queries(corpora, "lib", 1000, seed=0)
    assert len(mined) >= 10 and all(text.startswith(("textwrap.py\n", "shlex.py\n"))
                                    for _, _, text in mined)

    cfg = PostTrainConfig(passages=2, mined=24, lm_batch=2)
    cfg.train.steps, cfg.train.batch_size, cfg.train.train_layers = 4, 4, 1
    cfg.train.dim, cfg.train.doc_max_tokens = 32, 96
    seen = []
    done = post_train(corpora, "lib", cfg, progress=lambda stage, d, t: seen.append((stage, d, t)))
    # every stage shows by name, the re-index's k-means and compression included
    assert list(dict.fromkeys(s for s, _, _ in seen)) == [
        "docstring queries", "write queries", "mine and score", "train", "re-encode", "codec",
        "compress", "commit", "calibrate fusion"]
    assert seen[-1] == ("calibrate fusion", 1, 1)
    # a docstring query whose top hits all lie in its own file has no negative and is left
    # out, so how many of the 24 stay depends on the encoder (9 with the 64-d default)
    assert done["queries"]["docstrings"]["count"] >= 5
    assert done["training"]["steps"] == 4
    info = corpora.info("lib")
    assert info.encoder == done["encoder"] != "bundled:minilm"
    # post-training starts from the corpus's encoder: the default's head carries over
    # (cfg.train.dim sizes a head only for a base that has none)
    assert corpora.index("lib").dim == encoder.dim == RECIPE.dim != cfg.train.dim
    hits = corpora.search(["lib"], ["split a string using shell-like syntax"], 5,
                          mode="colbert")[0]
    assert hits and hits[0].path in {"shlex.py", "textwrap.py"}
