"""``--server`` for the CLI commands beyond index and search: the same work through the REST
API (``service.client``), answers in the shapes the local commands print.

Long jobs (cartridge and retriever training, chunk DB builds) are queued on the server and
followed with the local progress bar until they end; Ctrl-C stops following, not the job.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from indexer.errors import MemexError
from service.cli.common import StageBar
from service.cli.ops import remote_client
from service.client import raise_for_problem


def follow_job(client, job: dict, unit: str = "it") -> dict:
    """Poll ``job`` until it ends, feeding a progress bar; its result, or an error."""
    bar = StageBar(unit=unit)
    try:
        while job["status"] in ("queued", "running"):
            if job["total"]:
                bar(job["stage"] or job["kind"], job["done"], job["total"])
            time.sleep(0.5)
            job = client.job(job["id"])
    finally:
        bar.close()
    if job["status"] != "succeeded":
        raise MemexError(f"{job['kind']} job {job['id']} {job['status']}: {job['error']}")
    return job["result"] or {}


def corpora(server: str) -> list[dict]:
    with remote_client(server) as c:
        return c.list_corpora()["corpora"]


def cartridge_train(server: str, corpus: str, config: dict) -> dict:
    """Queue a training run and follow it; the finished cartridge's info."""
    with remote_client(server) as c:
        started = c.train_cartridge(corpus, **config)
        print(f"cartridge {started['cartridge']['id']} (job {started['job']['id']})",
              file=sys.stderr)
        follow_job(c, started["job"])
        return c.get_cartridge(started["cartridge"]["id"])


def cartridge_list(server: str, corpus: str | None) -> list[dict]:
    with remote_client(server) as c:
        return c.list_cartridges(corpus)["cartridges"]


def cartridge_remove(server: str, cartridge_id: str) -> None:
    with remote_client(server) as c:
        c.delete_cartridge(cartridge_id)


def cartridge_pull(server: str, cartridge_id: str, output: Path) -> int:
    """``Client.pull_cartridge`` with a progress bar: streamed, checksum verified."""
    with remote_client(server) as c, tqdm(unit="B", unit_scale=True, desc=cartridge_id[:12],
                                          file=sys.stderr) as bar:
        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return c.pull_cartridge(cartridge_id, output, progress)


def chat(server: str, history: list[dict], cartridges: list[str], max_tokens: int,
         temperature: float) -> Iterator[str]:
    """The reply's pieces as the server streams them (OpenAI chunk events)."""
    body = {"messages": history, "max_tokens": max_tokens, "temperature": temperature,
            "stream": True, "cartridges": [{"id": c} for c in cartridges]}
    with remote_client(server) as c:
        with c.http.stream("POST", "/v1/chat/completions", json=body) as response:
            if not response.is_success:
                response.read()
                raise_for_problem(response)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                piece = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if piece:
                    yield piece


def neighbors(server: str, corpus: str, text: str, k: int, continuation: bool,
              exclude: list[str]) -> list[dict]:
    with remote_client(server) as c:
        return c.neighbors(corpus, text, k, continuation=continuation,
                           exclude_document_ids=exclude)["chunks"]


def retro_build(server: str, corpus: str) -> dict:
    with remote_client(server) as c:
        return follow_job(c, c.build_chunkdb(corpus))


def retriever_train(server: str, corpus: str, **options) -> dict:
    with remote_client(server) as c:
        return follow_job(c, c.train_retriever(corpus, **options), unit="step")
