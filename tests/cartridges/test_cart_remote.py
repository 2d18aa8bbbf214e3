"""``memex cartridge ... --server`` and ``memex corpora --server`` against a real uvicorn."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cartridges.inference import load_cartridge
from tests.cartridges.test_cart_api import DOC, TINY_BODY
from tests.test_api import wait_for_job

ROOT = Path(__file__).resolve().parents[2]


def memex(tmp_path, *args):
    env = {**os.environ, "MEMEX_HOME": str(tmp_path / "client-home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_pull_from_a_server_yields_a_loadable_verified_file(live_server, tmp_path, lm):
    c, url = live_server, str(live_server.base_url).rstrip("/")
    assert c.post("/v1/corpora", json={"name": "zephyr",
                                       "documents": [{"id": "z", "text": DOC}]}).status_code == 201
    started = c.post("/v1/corpora/zephyr/cartridges", json=TINY_BODY).json()
    assert wait_for_job(c, started["job"]["id"])["status"] == "succeeded"
    cid = started["cartridge"]["id"]

    listed = memex(tmp_path, "cartridge", "ls", "--server", url, "--json")
    assert [(x["id"], x["status"], x["stale"]) for x in json.loads(listed.stdout)] == [
        (cid, "ready", False)]
    corpora = memex(tmp_path, "corpora", "--server", url, "--json")
    assert [x["name"] for x in json.loads(corpora.stdout)] == ["zephyr"]

    out = tmp_path / "c.safetensors"
    pulled = memex(tmp_path, "cartridge", "pull", cid, "--server", url, "-o", str(out))
    assert pulled.returncode == 0, pulled.stderr
    model, tok = lm
    assert load_cartridge(out, model, tok).header["corpus_id"] == "zephyr"
    assert out.stat().st_size == c.get(f"/v1/cartridges/{cid}").json()["bytes"]

    stored = next((tmp_path / "server-home" / "cartridges").rglob("*.safetensors"))
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # damage one tensor byte on the server
    stored.write_bytes(bytes(data))
    damaged = memex(tmp_path, "cartridge", "pull", cid, "--server", url, "-o",
                    str(tmp_path / "d.safetensors"))
    assert damaged.returncode == 2 and "checksum mismatch" in damaged.stderr
    assert not (tmp_path / "d.safetensors").exists()
    assert not (tmp_path / "d.safetensors.part").exists()

    missing = memex(tmp_path, "cartridge", "train", "nope", "--server", url)
    assert missing.returncode == 2 and "'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert memex(tmp_path, "cartridge", "rm", cid, "--server", url).returncode == 0
    assert json.loads(memex(tmp_path, "cartridge", "ls", "--server", url, "--json").stdout) == []
