"""kill -9 during a sync, at every step of the change protocol, and of a server
mid-job; then restart: the index opens, searches serve the last committed state, nothing
is lost, and a server's interrupted sync job resumes by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from indexer.corpus import Corpora
from indexer.database import Passage
from tests.helpers.server import free_port

CHILD = Path(__file__).parent / "helpers" / "crash_child.py"
BEFORE = {"geo.md": "Volcanoes erupt molten lava from the mantle.",
          "food.md": "Sourdough bread rises slowly with wild yeast.",
          "space.md": "Neutron stars are the collapsed cores of giant stars.",
          "sea.md": "Coral reefs grow in warm shallow tropical seas."}
AFTER = {"geo.md": "Glaciers carve deep U-shaped valleys in mountains.",  # changed
         "food.md": BEFORE["food.md"],
         "space.md": BEFORE["space.md"],  # sea.md deleted, two added:
         "music.md": "A violin concerto features a solo violinist and orchestra.",
         "code.md": "Binary search halves a sorted array at every step."}
QUERY = {"Volcanoes erupt": "lava eruption", "Glaciers carve": "glacier valleys",
         "Sourdough bread": "bread yeast", "Neutron stars": "collapsed star core",
         "Coral reefs": "coral reef", "A violin": "violin orchestra",
         "Binary search": "sorted array search"}


def _write(root: Path, files: dict) -> None:
    for f in root.glob("*.md"):
        f.unlink()
    for name, text in files.items():
        (root / name).write_text(text + "\n")


def _check_consistent(corpora: Corpora, states: list[dict]) -> dict:
    """The served state is exactly one of ``states``; index and SQL agree; all searchable."""
    served = {d.doc_id: d.text.strip() for d in corpora.iter_documents("c")}
    assert served in states, served
    with corpora.sessions() as s:
        sql_ids = np.array(sorted(s.scalars(select(Passage.id))), np.int64)
    assert np.array_equal(corpora.index("c").passage_ids(), sql_ids)
    for doc_id, text in served.items():
        query = next(q for prefix, q in QUERY.items() if text.startswith(prefix))
        top = corpora.search(["c"], [query], k=1)[0][0]
        assert top.document_id == doc_id, (query, top)
    return served


@pytest.fixture
def committed(tmp_path, encoder):
    root = tmp_path / "src"
    root.mkdir()
    _write(root, BEFORE)
    home = tmp_path / "home"
    corpora = Corpora(home, encoder=encoder)
    corpora.create("c", root=str(root))
    corpora.sync("c")
    _write(root, AFTER)
    return home, root


@pytest.mark.parametrize("point", ["encoded", "rows", "segment", "manifest-tmp", "manifest"])
def test_kill_at_each_step_of_a_sync(committed, encoder, point):
    home, root = committed
    child = subprocess.run([sys.executable, str(CHILD), str(home), "c", point],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    corpora = Corpora(home, encoder=encoder)  # "restart"
    corpora.recover_all()
    served = _check_consistent(corpora, [BEFORE, AFTER])
    # Before the SQL commit the old version is served; from it on, the new one.
    assert served == (BEFORE if point == "encoded" else AFTER)
    assert not list((home / "corpora" / "c" / "index").glob("*.tmp")) or point == "manifest-tmp"
    corpora.sync("c")  # and the next sync completes the job
    assert _check_consistent(corpora, [AFTER]) == AFTER
    assert corpora.info("c").version == 2


@pytest.mark.parametrize("point", ["merge-segment", "merge-manifest-tmp", "merge-none"])
def test_kill_during_a_merge(committed, encoder, point):
    home, root = committed
    corpora = Corpora(home, encoder=encoder)
    corpora.sync("c")  # a second segment, with tombstones in the first: something to merge
    queries = list(QUERY.values())
    before = [[(h.document_id, round(h.score, 4)) for h in hits]
              for hits in corpora.search(["c"], queries, k=3)]
    child = subprocess.run([sys.executable, str(CHILD), str(home), "c", point],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    expected = 0 if point == "merge-none" else -signal.SIGKILL
    assert child.returncode == expected, child.stderr[-2000:]
    restarted = Corpora(home, encoder=encoder)
    assert _check_consistent(restarted, [AFTER]) == AFTER
    after = [[(h.document_id, round(h.score, 4)) for h in hits]
             for hits in restarted.search(["c"], queries, k=3)]
    assert after == before  # a merge never changes results, finished or not
    restarted.index("c").optimize()  # and the next merge completes
    assert _check_consistent(restarted, [AFTER]) == AFTER


def test_server_killed_during_sync_job_resumes_it(tmp_path, encoder):
    root = tmp_path / "big"
    root.mkdir()
    for i in range(40):  # enough passages that the job is still encoding when killed
        (root / f"f{i:03}.txt").write_text(f"Note number {i} about topic {i % 7}.\n" * 12)
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"

    def serve():
        return subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port",
                                 str(port)], env={**os.environ, "MEMEX_HOME": str(home),
                                                  "MEMEX_ALLOWED_ROOTS": str(tmp_path)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(predicate, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("timed out")

    server = serve()
    try:
        wait(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        job_id = httpx.post(f"{url}/v1/corpora", json={"name": "big", "directory": str(root)},
                            timeout=60).json()["job_id"]
        wait(lambda: httpx.get(f"{url}/v1/jobs/{job_id}").json()["done"] > 0)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    server = serve()
    try:
        wait(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        job = wait(lambda: (j := httpx.get(f"{url}/v1/jobs/{job_id}").json())["status"]
                   not in ("queued", "running") and j)
        # Resumed: its work was either redone or found committed (then nothing is "added").
        assert job["status"] == "succeeded"
        info = httpx.get(f"{url}/v1/corpora/big").json()
        assert info["documents"] == 40 and info["version"] == 1
        hit = httpx.post(f"{url}/v1/corpora/big/search",
                         json={"query": "Note number 17 about topic 3", "k": 1}).json()
        assert hit["results"][0]["hits"][0]["document_id"] == "f017.txt"
    finally:
        server.terminate()
        server.wait(30)


def test_reader_reopens_when_another_process_swaps_the_manifest_mid_open(corpora, encoder,
                                                                          monkeypatch):
    """The files of the manifest a reader just read may be gone when it loads them."""
    from indexer.corpus import DocumentInput
    from indexer.corpus import caches as corpus_module
    from indexer.errors import IndexCorrupt

    corpora.create("c")
    corpora.upsert_documents("c", [DocumentInput("a", "Volcanoes erupt lava.")])
    reader = Corpora(corpora.home, encoder=encoder)  # another process's view
    real_open, raced = corpus_module.open_index, []

    def racing_open(path):
        if not raced:  # a writer commits between our manifest read and our file loads
            raced.append(1)
            corpora.upsert_documents("c", [DocumentInput("a", "Glaciers carve valleys.")])
            raise IndexCorrupt("index is missing a file: seg-1.ids.npy")
        return real_open(path)

    monkeypatch.setattr(corpus_module, "open_index", racing_open)
    hits = reader.search(["c"], ["glacier"], k=1)[0]
    assert raced and hits[0].text == "Glaciers carve valleys."
    monkeypatch.setattr(corpus_module, "open_index", lambda path: (_ for _ in ()).throw(
        IndexCorrupt("bad")))
    reader.indexes.clear()
    with pytest.raises(IndexCorrupt):  # a manifest that does not change is really corrupt
        reader.index("c")
