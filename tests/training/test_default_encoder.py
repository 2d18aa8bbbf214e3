"""The default encoder: a seeded build is reproducible, and what `memex models` built loads
through the normal encoder path and serves an index."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from indexer.corpus import Corpora, DocumentInput
from indexer.encoding.encoder import ColBERTEncoder
from indexer.mined_queries import PassageSpan, docstring_queries
from indexer.models import DEFAULT_ENCODER
from indexer.training.default_data import source_files
from indexer.training.default_encoder import RECIPE, build

# Two small installed packages, a few steps: the real recipe, scaled down.
SMALL = {"packages": ("pathspec", "dotenv"), "per_package": 12}
CFG = replace(RECIPE, steps=6, pca_passages=16, warmup_steps=2)


def _head(path: Path) -> np.ndarray:
    return load_file(path / "colbert_linear.safetensors")["weight"]


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build") / "enc"
    return out, build(out, CFG, **SMALL)


def test_same_seed_builds_the_same_head(small_build, tmp_path: Path) -> None:
    path, info = small_build
    again = build(tmp_path / "again", CFG, **SMALL)
    assert again["data"]["digest"] == info["data"]["digest"]
    assert info["data"]["pairs"] > 10 and set(info["data"]["packages"]) == {"pathspec", "dotenv"}
    np.testing.assert_array_equal(_head(tmp_path / "again"), _head(path))
    other = build(tmp_path / "other", replace(CFG, seed=1), **SMALL)
    assert other["data"]["digest"] != info["data"]["digest"]
    assert not np.array_equal(_head(tmp_path / "other"), _head(path))


def test_built_head_moved_from_its_start(small_build) -> None:
    _, info = small_build
    assert info["stats"]["steps"] == CFG.steps
    assert info["stats"]["last_loss"] < info["stats"]["first_loss"]


def test_recipe_skiplist_setting_is_what_the_built_encoder_serves(small_build, tmp_path: Path) -> None:
    """The recipe's ``skip_punctuation`` is saved with the head, so an index built with the
    encoder keeps the punctuation tokens it was trained with (or drops them)."""
    path, _ = small_build
    other = tmp_path / "other"
    build(other, replace(CFG, skip_punctuation=not _skips(RECIPE)), **SMALL)
    built, flipped = (ColBERTEncoder.load(str(p), runtime="torch") for p in (path, other))
    assert built.config.skip_punctuation == _skips(RECIPE)
    assert flipped.config.skip_punctuation == (not _skips(RECIPE))
    code = "def f(a, b):\n    return a.b(c)[0]\n"
    kept = {enc.config.skip_punctuation: len(enc.encode_documents([code])[0])
            for enc in (built, flipped)}
    assert kept[False] > kept[True] + 5  # ( , ) : . ( ) [ ] are tokens of their own


def _skips(cfg) -> bool:
    return True if cfg.skip_punctuation is None else cfg.skip_punctuation


def test_mining_skips_tests_and_blank_docstrings(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "x.py").write_text("")
    (tmp_path / "test_y.py").write_text("")
    (tmp_path / "z.py").write_text("")
    assert [p.name for p in source_files(tmp_path)] == ["z.py"]
    code = 'def f():\n    """   """\n    return 1\n\ndef g():\n    """Add one to a number."""\n'
    assert [q.query for q in docstring_queries(code, [PassageSpan(0, 1, 6)])] == [
        "Add one to a number."]


def test_default_encoder_loads_by_name_and_serves_an_index(tmp_path: Path) -> None:
    assert DEFAULT_ENCODER == "bundled:memex-colbert"
    enc = ColBERTEncoder.load(DEFAULT_ENCODER, runtime="torch")
    assert enc.dim == RECIPE.dim and enc.projection is not None
    assert enc.config.skip_punctuation == _skips(RECIPE)
    (q,) = enc.encode_queries(["open a file"])
    assert q.shape[1] == RECIPE.dim
    # query tokens weighted by IDF (mean 1): [CLS] and [SEP], in every passage, nearly vanish
    norms = np.linalg.norm(q, axis=1)
    assert (RECIPE.query_idf > 0) == (enc.query_weights is not None)
    assert np.isclose(norms.mean(), 1, atol=1e-4) and norms[0] < 0.1 and norms[-1] < 0.1
    # hybrid search fuses its pooled vectors, rotated before their signs are kept
    assert enc.config.pooled_weight == RECIPE.pooled_weight > 0
    rotation = enc.pooled_rotation.numpy()
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(len(rotation)), atol=1e-5)
    corpora = Corpora(tmp_path / "home")  # the default encoder, as `memex index` uses it
    corpora.create("c")
    corpora.upsert_documents("c", [
        DocumentInput("geo.py", "def circle_area(radius):\n    return 3.14159 * radius ** 2\n"),
        DocumentInput("net.py", "def fetch_url(url):\n    import urllib.request\n"
                      "    return urllib.request.urlopen(url).read()\n"),
        DocumentInput("text.py", "def count_words(text):\n    return len(text.split())\n"),
    ])
    assert corpora.info("c").encoder == DEFAULT_ENCODER
    for mode in ("colbert", "hybrid"):
        hits = corpora.search(["c"], ["download the page at a web address"], k=3, mode=mode)[0]
        assert hits[0].document_id == "net.py", mode


def test_a_corpus_of_an_earlier_build_keeps_searching_after_an_upgrade(
        tmp_path: Path, monkeypatch, encoder: ColBERTEncoder) -> None:
    """A recipe change bumps the default's directory and fingerprint; a corpus indexed with
    the earlier build searches with it while it is in the model cache, and gets a clear
    409 once it is gone."""
    import json
    import shutil

    from indexer.errors import Conflict
    from indexer.training.default_encoder import EARLIER

    cache = tmp_path / "cache"
    earlier = cache / EARLIER[0]
    earlier.mkdir(parents=True)
    for f in encoder.model_path.iterdir():  # the current build under an earlier name ...
        if f.name != "memex_encoder.json":
            (earlier / f.name).symlink_to(f)
    settings = json.loads((encoder.model_path / "memex_encoder.json").read_text())
    (earlier / "memex_encoder.json").write_text(json.dumps({**settings, "pooled_weight": 0.0}))
    old = ColBERTEncoder.load(str(earlier))  # ... with other settings: another fingerprint
    assert old.fingerprint != encoder.fingerprint
    indexed = Corpora(tmp_path / "home", encoder=old)
    indexed.create("c")
    indexed.upsert_documents("c", [
        DocumentInput("geo.py", "def circle_area(r):\n    return 3.14 * r * r\n"),
        DocumentInput("text.py", "def count_words(s):\n    return len(s.split())\n")])

    monkeypatch.setattr("indexer.models.default_cache_dir", lambda: cache)
    upgraded = Corpora(tmp_path / "home", encoder=encoder)
    assert upgraded.search(["c"], ["area of a circle"], k=1)[0][0].document_id == "geo.py"
    assert upgraded.encoder_for(DEFAULT_ENCODER, old.fingerprint).model_path == earlier
    shutil.rmtree(earlier)
    with pytest.raises(Conflict, match="re-index"):
        Corpora(tmp_path / "home", encoder=encoder).search(["c"], ["area of a circle"], k=1)
