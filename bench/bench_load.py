"""Load test from a second process on loopback: requests at rising concurrency while syncs run.

    python -m bench.bench_load [--files 12] [--levels 1,2,4,8,16] [--seconds 15]
                               [--max-requests 400] [--mix search=8,neighbors=1,chat=1]

The server (``memex serve``, one worker, no keys, rate limit off) indexes a
subset of CPython's stdlib (``shared/data/stdlib-codesearch.tar.gz``);
this process then sends real code-search queries at each concurrency level for
``--seconds`` (or ``--max-requests``) while a background loop keeps a second
corpus syncing (it edits files and starts a sync job whenever the last one
ends). Prints throughput, p50/p99 latency and errors per level, and the ratio of
each level's throughput and p50 to concurrency 1 measured in the same run.

``--mix`` weighs the request kinds each client picks from: ``search`` (k=10),
``neighbors`` (RETRO neighbours of the query text, k=2, on the corpus's chunk
DB) and ``chat`` (the bundled SmolLM2, ``max_tokens`` 8, a short question): each
waits at its own compute gate. Latencies are reported per kind; ``--mix search``
is the search-only run of earlier results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.data import stdlib_archive
from service.client import APIError, AsyncClient, Client, raise_for_problem


def extract(tmp: Path, n_files: int) -> tuple[Path, list[str]]:
    """The first ``n_files`` target files of the queries, and those files' queries."""
    with tarfile.open(stdlib_archive()) as tar:
        members = {m.name: m for m in tar.getmembers()}
        qname = next(n for n in members if n.endswith("queries.jsonl"))
        queries = [json.loads(x) for x in tar.extractfile(members[qname]).read().splitlines()]
        tree = (qname.rsplit("/", 1)[0] + "/" if "/" in qname else "") + "tree/"
        wanted = []
        for q in queries:
            if q["path"] not in wanted and tree + q["path"] in members:
                size = members[tree + q["path"]].size
                if 2_000 < size < 12_000:
                    wanted.append(q["path"])
            if len(wanted) == n_files:
                break
        root = tmp / "lib"
        for path in wanted:
            out = root / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(members[tree + path]).read())
    return root, [q["text"] for q in queries if q["path"] in wanted]


def start_server(home: Path, roots: Path, port: int, **settings: str) -> subprocess.Popen:
    env = {"MEMEX_MODEL_CACHE": str(Path.home() / ".memex" / "models"),  # ONNX export reused
           **os.environ, "MEMEX_HOME": str(home), "MEMEX_ALLOWED_ROOTS": str(roots),
           "MEMEX_RATE_LIMIT_PER_MINUTE": "0", "MEMEX_LOG_LEVEL": "WARNING", **settings}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                            env=env)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready")


class Syncer(threading.Thread):
    """Keeps corpus ``bg`` syncing: edit a few files, start a sync, wait, repeat."""

    def __init__(self, url: str, root: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.root = url, root
        self.stop = threading.Event()
        self.syncs, self.failures = 0, 0

    def run(self) -> None:
        rng = random.Random(0)
        with Client(self.url, timeout=300) as c:
            while not self.stop.is_set():
                for f in rng.sample(sorted(self.root.glob("*.txt")), 3):
                    f.write_text(f"Revision {rng.random():.6f} of the notes.\n" * 20)
                job = c.sync("bg")
                done = c.wait_for_job(job["id"], timeout=600, poll=0.3)
                self.syncs += done["status"] == "succeeded"
                self.failures += done["status"] != "succeeded"


async def request(c: AsyncClient, kind: str, query: str) -> None:
    if kind == "search":
        await c.search("lib", query, k=10)
    elif kind == "neighbors":
        raise_for_problem(await c.http.post("/v1/corpora/lib/neighbors",
                                            json={"text": query, "k": 2}))
    else:
        raise_for_problem(await c.http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": f"In one line: {query}?"}],
            "max_tokens": 8}))


async def level(url: str, queries: list[str], concurrency: int, seconds: float,
                max_requests: int, mix: dict[str, int]) -> dict:
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {k: [] for k in mix}
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds
    sent = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with AsyncClient(url, timeout=120, limits=limits) as c:

        async def worker(seed: int) -> None:
            nonlocal sent
            rng = random.Random(seed)
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                kind = rng.choices(list(mix), weights=list(mix.values()))[0]
                t0 = time.perf_counter()
                try:
                    await request(c, kind, rng.choice(queries))
                    latencies.append(time.perf_counter() - t0)
                    by_kind[kind].append(time.perf_counter() - t0)
                except (APIError, httpx.HTTPError) as exc:
                    key = getattr(exc, "code", type(exc).__name__)
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*[worker(concurrency * 1000 + i) for i in range(concurrency)])
        wall = time.perf_counter() - t0
    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")

    return {"concurrency": concurrency, "ok": len(latencies), "errors": errors,
            "throughput": len(latencies) / wall,
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
            "kinds": {k: (len(v), pct(v, 50), pct(v, 99)) for k, v in by_kind.items()}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--levels", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-requests", type=int, default=400)
    ap.add_argument("--mix", default="search=8,neighbors=1,chat=1")
    args = ap.parse_args()
    mix = {k: int(w) for k, _, w in (p.partition("=") for p in args.mix.split(","))} \
        if "=" in args.mix else {args.mix: 1}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lib, queries = extract(tmp / "roots", args.files)
        bg = tmp / "roots" / "bg"
        bg.mkdir(parents=True)
        for i in range(12):
            (bg / f"n{i:02}.txt").write_text(f"Background note {i}.\n" * 20)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        server = start_server(tmp / "home", tmp / "roots", port)
        try:
            with Client(url, timeout=600) as c:
                t0 = time.perf_counter()
                job = c.create_corpus("lib", directory=str(lib))["job_id"]
                result = c.wait_for_job(job, timeout=1800)["result"]
                print(f"indexed lib: {result['passages_added']} passages from {args.files} files "
                      f"in {time.perf_counter() - t0:.0f}s; {len(queries)} queries")
                c.wait_for_job(c.create_corpus("bg", directory=str(bg))["job_id"], timeout=600)
                if "neighbors" in mix:
                    job = raise_for_problem(c.http.post("/v1/corpora/lib/chunkdb"))["id"]
                    assert c.wait_for_job(job, timeout=1800)["status"] == "succeeded"

                async def warm_up() -> None:  # model loads stay out of the measurements
                    async with AsyncClient(url, timeout=600) as a:
                        for kind in mix:
                            await request(a, kind, queries[0])

                asyncio.run(warm_up())
            syncer = Syncer(url, bg)
            syncer.start()
            rows = []
            for conc in (int(x) for x in args.levels.split(",")):
                rows.append(asyncio.run(level(url, queries, conc, args.seconds,
                                              args.max_requests, mix)))
                r = rows[-1]
                kinds = "  ".join(f"{k} {n} p50 {p50:.0f} p99 {p99:.0f}"
                                  for k, (n, p50, p99) in r["kinds"].items())
                print(f"c={conc:>3}  {r['throughput']:6.2f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                      f"p99 {r['p99_ms']:7.1f} ms  ok {r['ok']}  errors {r['errors'] or 0}  "
                      f"[{kinds}]", flush=True)
            syncer.stop.set()
            syncer.join(600)
        finally:
            server.terminate()
            server.wait(60)
    base = rows[0]
    print("\n| concurrency | req/s | ×c=1 | p50 ms | p99 ms | p50 ×c=1 | ok | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['throughput']:.2f} | "
              f"{r['throughput'] / base['throughput']:.2f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['p50_ms'] / base['p50_ms']:.2f} | {r['ok']} | "
              f"{sum(r['errors'].values())} |")
    if len(mix) > 1:
        print("\n| concurrency | " + " | ".join(f"{k} n / p50 / p99 ms" for k in mix) + " |")
        print("|---|" + "---|" * len(mix))
        for r in rows:
            print(f"| {r['concurrency']} | " + " | ".join(
                f"{n} / {p50:.0f} / {p99:.0f}" for n, p50, p99 in r["kinds"].values()) + " |")
    print(f"\nbackground syncs completed during the run: {syncer.syncs}, failed: {syncer.failures}")
    total_errors = sum(sum(r["errors"].values()) for r in rows) + syncer.failures
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
