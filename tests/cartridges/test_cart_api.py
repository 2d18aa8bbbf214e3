"""Cartridges through the REST API, on a real uvicorn with the real models."""

import json

from cartridges.inference import load_cartridge
from tests.helpers.api import wait_for_job as _wait

TINY_BODY = {"p": 4, "num_samples": 2, "holdout": 1, "steps": 1, "batch_size": 1, "chunk_tokens": 24,
             "question_tokens": 6, "answer_tokens": 6}
DOC = ("The Zephyr protocol sends heartbeats every 7 seconds. Nodes that miss three heartbeats are "
       "marked dead and their shards move to the two nearest replicas. ") * 3


def test_train_list_pull_chat_delete(live_server, tmp_path, lm):
    c = live_server
    docs = [{"id": "z", "text": DOC}]
    assert c.post("/v1/corpora", json={"name": "zephyr", "documents": docs}).status_code == 201
    r = c.post("/v1/corpora/zephyr/cartridges", json=TINY_BODY)
    assert r.status_code == 202, r.text
    cid, job_id = r.json()["cartridge"]["id"], r.json()["job"]["id"]
    job = _wait(c, job_id)
    assert job["status"] == "succeeded", job
    info = c.get(f"/v1/cartridges/{cid}").json()
    assert (info["status"], info["p"], info["corpus_version"], info["stale"]) == ("ready", 4, 1, False)
    assert info["bytes"] > 0 and info["training"]["steps"] == 1
    assert [x["id"] for x in c.get("/v1/cartridges").json()["cartridges"]] == [cid]

    # the downloaded file loads into a plain HF model, as a client would use it
    f = tmp_path / "z.safetensors"
    f.write_bytes(c.get(f"/v1/cartridges/{cid}/file").content)
    model, tok = lm
    assert load_cartridge(f, model, tok).header["corpus_id"] == "zephyr"

    msg = {"messages": [{"role": "user", "content": "How often are heartbeats sent?"}],
           "max_tokens": 5, "cartridges": [{"id": cid}]}
    plain = c.post("/v1/chat/completions", json=msg).json()
    assert plain["object"] == "chat.completion" and plain["choices"][0]["message"]["content"]
    assert plain["usage"]["completion_tokens"] <= 5
    with c.stream("POST", "/v1/chat/completions", json={**msg, "stream": True}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    text = "".join(json.loads(x)["choices"][0]["delta"].get("content", "") for x in lines[:-1])
    assert text == plain["choices"][0]["message"]["content"]

    # the corpus changes: the cartridge is now stale
    c.put("/v1/corpora/zephyr/documents/z2", json={"text": "Another document."})
    assert c.get(f"/v1/cartridges/{cid}").json()["stale"] is True

    assert c.delete(f"/v1/cartridges/{cid}").status_code == 204
    r = c.post("/v1/chat/completions", json=msg)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def test_bad_cartridge_requests(live_server):
    c = live_server
    assert c.post("/v1/corpora/nope/cartridges", json={}).status_code == 404
    c.post("/v1/corpora", json={"name": "tiny", "documents": [{"id": "a", "text": "few words"}]})
    r = c.post("/v1/corpora/tiny/cartridges", json={"p": 0})
    assert r.status_code == 400 and "p must be positive" in r.json()["detail"]
    assert c.get("/v1/cartridges/" + "0" * 32).status_code == 404
    assert c.get("/v1/cartridges/" + "0" * 32 + "/file").status_code == 404



def test_cartridge_without_p_is_sized_from_its_corpus(live_server, tmp_path, lm):
    c = live_server
    docs = [{"id": "z", "text": DOC}]
    assert c.post("/v1/corpora", json={"name": "short", "documents": docs}).status_code == 201
    r = c.post("/v1/corpora/short/cartridges", json={k: v for k, v in TINY_BODY.items() if k != "p"})
    assert r.status_code == 202 and r.json()["cartridge"]["p"] is None  # decided by training
    cid = r.json()["cartridge"]["id"]
    assert _wait(c, r.json()["job"]["id"])["status"] == "succeeded"
    # ~100 corpus tokens: a tenth of that rounds to the 16-token floor, not the 256 default
    info = c.get(f"/v1/cartridges/{cid}").json()
    assert info["p"] == 16
    f = tmp_path / "short.safetensors"
    f.write_bytes(c.get(f"/v1/cartridges/{cid}/file").content)
    model, tok = lm
    assert load_cartridge(f, model, tok).p == 16
