"""Shared fixtures: the bundled SmolLM2 (real weights) and one tiny trained cartridge."""

import pytest
import torch

from indexer.models import load_lm
from tests.cartridges.cart_setup import TEXT, TINY


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def lm():
    return load_lm(TINY.model)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A cartridge trained with TINY, cancelled once after a training step and resumed.

    Returns (path, first-run progress events, second-run progress events, synth mtimes).
    """
    from cartridges.train import train_cartridge

    work = tmp_path_factory.mktemp("cart")
    first, second = [], []
    stop = {"now": False}

    def progress_first(stage, done, total):
        first.append((stage, done, total))
        stop["now"] = stage == "training" and done >= 1

    assert train_cartridge(TEXT, "faq", 3, TINY, work, progress_first, lambda: stop["now"]) is None
    mtimes = {p.name: p.stat().st_mtime_ns for p in (work / "synth").iterdir()}
    path = train_cartridge(TEXT, "faq", 3, TINY, work, lambda *e: second.append(e))
    return path, first, second, mtimes, work
