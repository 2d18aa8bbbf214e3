"""A cartridge's status tells the truth however its training ends: Ctrl-C in the CLI,
a failure while publishing, a job cancelled before it ran; deleted corpora make their
cartridges stale; a bad info.json spoils only its own cartridge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from cartridges.store import CartridgeStore
from indexer.corpus import DocumentInput
from tests.cartridges.cart_setup import TEXT, TINY
from tests.conftest import LiveServer

DOC = ("The Zephyr protocol sends heartbeats every 7 seconds. Nodes that miss three heartbeats are "
       "marked dead and their shards move to the two nearest replicas. ") * 3


def memex(home, *args, **kw):
    env = {**os.environ, "MEMEX_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_in_the_cli_marks_the_cartridge_cancelled(tmp_path, encoder):
    from indexer.corpus import Corpora

    home = tmp_path / "home"
    corpora = Corpora(home, encoder=encoder)
    corpora.create("z")
    corpora.upsert_documents("z", [DocumentInput("z", DOC)])
    corpora.engine.dispose()
    store = CartridgeStore(home / "cartridges")
    # 5,000 steps: with cheap recall conversations and a sized p, 50 steps ended before the signal
    proc = memex(home, "cartridge", "train", "z", "--tokens", "4", "--steps", "5000", "--samples", "12")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        infos = store.list()
        if infos and infos[0]["status"] == "training":
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(2)  # inside model loading or synthesis
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)  # a flag, polled per batch or step
    [info] = store.list()
    assert info["status"] == "cancelled", (info, err[-2000:])
    assert proc.returncode == 130, err[-2000:]  # stopped by the Ctrl-C, where it is safe to
    assert "stopping at the next conversation batch or step" in err and "--resume" in err


def test_resume_of_a_ready_cartridge_does_not_retrain(tmp_path, trained):
    path = trained[0]
    home = tmp_path / "home"
    store = CartridgeStore(home / "cartridges")
    info = store.create("faq", 3, TINY)
    store.work_dir(info["id"]).mkdir(parents=True)
    shutil.copy(path, store.work_dir(info["id"]) / "cartridge.safetensors")
    store.finish(info["id"], store.work_dir(info["id"]) / "cartridge.safetensors")
    before = store.file(info["id"]).stat().st_mtime_ns
    proc = memex(home, "cartridge", "train", "faq", "--resume", info["id"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "already trained" in out
    assert store.info(info["id"])["status"] == "ready"
    assert store.file(info["id"]).stat().st_mtime_ns == before


def test_a_failure_while_publishing_marks_the_cartridge_failed(tmp_path, corpora):
    from service.jobs.cartridge_handlers import register_cartridges
    from service.jobs.runner import JobRunner

    corpora.create("z")
    corpora.upsert_documents("z", [DocumentInput("z", TEXT)])
    store = CartridgeStore(tmp_path / "cartridges")
    info = store.create("z", corpora.info("z").version, TINY)
    work = store.work_dir(info["id"])
    work.mkdir(parents=True)
    (work / "cartridge.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")  # torn
    runner = JobRunner(corpora.sessions, corpora.home)
    register_cartridges(runner, corpora, store)
    job = runner.submit("cartridge_train", {"cartridge_id": info["id"]}, corpus="z")
    runner.run_pending()
    assert runner.get(job.id).status == "failed"
    done = store.info(info["id"])
    assert done["status"] == "failed" and done["error"]


@pytest.fixture
def idle_server(tmp_path):
    """A server that runs no jobs: what is submitted stays queued."""
    from service.api.app import create_app
    from service.settings import Settings

    with LiveServer(create_app(Settings(home=tmp_path / "home", run_jobs=False))) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client, tmp_path / "home"


BODY = {"p": 4, "num_samples": 2, "holdout": 1, "steps": 1, "batch_size": 1}


def test_a_job_cancelled_while_queued_cancels_its_cartridge(idle_server):
    c, _ = idle_server
    created = c.post("/v1/corpora", json={"name": "z", "documents": [{"id": "z", "text": DOC}]})
    assert created.status_code == 201
    r = c.post("/v1/corpora/z/cartridges", json=BODY).json()
    assert r["cartridge"]["status"] == "queued"
    assert c.post(f"/v1/jobs/{r['job']['id']}/cancel").json()["status"] == "cancelled"
    assert c.get(f"/v1/cartridges/{r['cartridge']['id']}").json()["status"] == "cancelled"
    assert [x["status"] for x in c.get("/v1/cartridges").json()["cartridges"]] == ["cancelled"]


def test_a_recreated_corpus_makes_old_cartridges_stale(idle_server):
    c, _ = idle_server
    c.post("/v1/corpora", json={"name": "z", "documents": [{"id": "z", "text": DOC}]})
    cid = c.post("/v1/corpora/z/cartridges", json=BODY).json()["cartridge"]["id"]
    assert c.get(f"/v1/cartridges/{cid}").json()["stale"] is False
    assert c.delete("/v1/corpora/z").status_code == 204
    c.post("/v1/corpora", json={"name": "z", "documents": [{"id": "other", "text": "Another text."}]})
    info = c.get(f"/v1/cartridges/{cid}").json()
    assert info["corpus_version"] == c.get("/v1/corpora/z").json()["version"]  # versions restarted
    assert info["stale"] is True


def test_an_unreadable_info_json_spoils_only_its_cartridge(idle_server):
    c, home = idle_server
    c.post("/v1/corpora", json={"name": "z", "documents": [{"id": "z", "text": DOC}]})
    good = c.post("/v1/corpora/z/cartridges", json=BODY).json()["cartridge"]["id"]
    bad = c.post("/v1/corpora/z/cartridges", json=BODY).json()["cartridge"]["id"]
    path = home / "cartridges" / bad / "info.json"
    path.write_text(path.read_text()[:40])  # torn by a crash of an older version
    r = c.get("/v1/cartridges")
    assert r.status_code == 200, r.text
    status = {x["id"]: x["status"] for x in r.json()["cartridges"]}
    assert status == {good: "queued", bad: "corrupt"}
    r = c.get(f"/v1/cartridges/{bad}")
    assert r.status_code == 409 and r.json()["code"] == "INDEX_CORRUPT"
    assert c.delete(f"/v1/cartridges/{bad}").status_code == 204


def test_checkpoints_survive_a_power_loss_at_every_write(tmp_path):
    """Power cut at each call of a resumed run's last step (its checkpoint, then the
    cartridge file): what is left loads (samples, checkpoint, cartridge), so a run resumes."""
    from cartridges.fileformat import read_cartridge
    from cartridges.synthesis import load_samples
    from cartridges.train import _ckpt_step, train_cartridge
    from tests.helpers.power import every_power_cut

    config = replace(TINY, steps=2)  # one step before the cut, the last one in the run
    golden = tmp_path / "golden"
    stop = {"now": False}

    def progress(stage, done, total):
        stop["now"] = stage == "training" and done >= 1

    assert train_cartridge(TEXT, "faq", 3, config, golden, progress, lambda: stop["now"]) is None
    steps = set()

    def run(work):
        train_cartridge(TEXT, "faq", 3, config, work)

    def check(work, i):
        assert len(load_samples(work / "synth", TINY.num_samples)) == TINY.num_samples
        steps.add(_ckpt_step(work / "ckpt.safetensors"))
        if (work / "cartridge.safetensors").exists():
            assert read_cartridge(work / "cartridge.safetensors").header["training"]["steps"] == config.steps

    assert every_power_cut(golden, run, check, tmp_path) >= 8  # the checkpoint's calls, the file's
    assert steps == {1, config.steps}  # the save lost whole, or kept whole


def test_cartridge_finish_survives_a_power_loss_at_every_write(tmp_path, trained):
    from cartridges.fileformat import read_cartridge
    from cartridges.train import _ckpt_step
    from tests.helpers.power import every_power_cut

    *_, work_src = trained
    golden = tmp_path / "golden"
    cid = CartridgeStore(golden).create("faq", 3, TINY)["id"]
    shutil.copytree(work_src, golden / cid / "work")
    states = set()

    def run(root):
        store = CartridgeStore(root)
        store.update(cid, status="training")
        store.finish(cid, store.work_dir(cid) / "cartridge.safetensors")

    def check(root, i):
        store = CartridgeStore(root)
        [info] = store.list()
        states.add(info["status"])
        if info["status"] == "ready":
            assert read_cartridge(store.file(cid)).header["corpus_id"] == "faq"
        else:  # the work dir still holds what a resumed job finishes from
            assert info["status"] in ("queued", "training")
            work = store.work_dir(cid)
            assert json.loads((work / "run.json").read_text())
            assert _ckpt_step(work / "ckpt.safetensors") == TINY.steps

    every_power_cut(golden, run, check, tmp_path)
    assert states >= {"ready", "training"}
