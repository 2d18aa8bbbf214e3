import json
import shutil

import pytest

from cartridges.config import CartridgeConfig
from cartridges.fileformat import read_cartridge
from cartridges.train import train_cartridge
from indexer.errors import Conflict
from tests.cartridges.cart_setup import TEXT, TINY


def test_training_lowers_heldout_loss(trained):
    t = read_cartridge(trained[0]).header["training"]
    assert t["steps"] == TINY.steps
    assert t["heldout_loss_final"] < t["heldout_loss_init"]


def test_cancel_then_resume_continues(trained):
    _, first, second, mtimes, work = trained
    assert ("training", 1) in [(s, d) for s, d, _ in first]
    # the rerun skips synthesis work and starts training at the saved step, not at 0
    assert [d for s, d, _ in second if s == "training"][0] == 1
    assert {p.name: p.stat().st_mtime_ns for p in (work / "synth").iterdir()} == mtimes


def test_finished_run_is_returned_as_is(trained):
    path, *_, work = trained
    before = path.stat().st_mtime_ns
    assert train_cartridge(TEXT, "faq", 3, TINY, work) == path
    assert path.stat().st_mtime_ns == before


def test_more_steps_continue_a_finished_run(trained, tmp_path):
    path, *_, work = trained
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    events = []
    more = CartridgeConfig(**{**TINY.to_dict(), "steps": TINY.steps + 1})
    again = train_cartridge(TEXT, "faq", 3, more, copy, lambda *e: events.append(e))
    assert [d for s, d, _ in events if s == "training"][0] == TINY.steps  # from the end, not from 0
    header = read_cartridge(again).header["training"]
    assert header["steps"] == TINY.steps + 1
    assert header["loss_curve"][0] == read_cartridge(path).header["training"]["loss_curve"][0]


def test_work_dir_refuses_other_settings(trained):
    work = trained[-1]
    other = CartridgeConfig(**{**TINY.to_dict(), "chunk_tokens": TINY.chunk_tokens + 1})
    with pytest.raises(Conflict, match="chunk_tokens"):
        train_cartridge(TEXT, "faq", 3, other, work)
    with pytest.raises(Conflict, match="corpus_sha256"):
        train_cartridge(TEXT + " more", "faq", 3, TINY, work)
    assert json.loads((work / "run.json").read_text())["chunk_tokens"] == TINY.chunk_tokens


def test_gain_over_init_is_recorded(trained):
    t = read_cartridge(trained[0]).header["training"]
    assert t["heldout_loss_nothing"] > t["heldout_loss_teacher"] >= 0
    # the gain is the trained share minus the initialisation's share of the held-out gap
    assert t["gain_over_init"] == pytest.approx(t["heldout_share_final"] - t["heldout_share_init"], abs=2e-4)
    assert t["gain_over_init"] > 0  # the held-out loss fell (test above)
    low, high = t["gain_interval"]
    assert low <= t["gain_over_init"] <= high
    assert t["gain_within_noise"] == (low <= 0)


def test_work_dir_of_an_older_version_is_resumed(trained, tmp_path):
    _, *_, work = trained
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    run = json.loads((copy / "run.json").read_text())
    del run["recall_share"]  # a run saved before the setting existed
    (copy / "run.json").write_text(json.dumps(run))
    assert train_cartridge(TEXT, "faq", 3, TINY, copy) == copy / "cartridge.safetensors"
    run["chunk_tokens"] += 1  # a setting both versions know still has to match
    (copy / "run.json").write_text(json.dumps(run))
    with pytest.raises(Conflict, match="chunk_tokens"):
        train_cartridge(TEXT, "faq", 3, TINY, copy)
