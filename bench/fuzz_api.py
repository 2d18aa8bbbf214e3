"""Fuzz the OpenAPI schema with schemathesis against a real server; bounded in time.

    python -m bench.fuzz_api [--max-time 90] [--max-examples 30] [--seed 1]

Starts ``memex serve`` on a fresh data dir (loopback, no keys) with a small
corpus ``a`` so generated paths reach real data, runs schemathesis with the
checks the issue demands (no 5xx, responses match their documented schemas and
content types), and exits non-zero on any failure. Prints the summary.

Chat runs with ``MEMEX_MAX_CHAT_TOKENS=32``: generation on a 2-core CPU makes
about 10 tokens/s, so a fuzzed ``max_tokens`` of 1024 (the default cap) would
outlast the 30 s request timeout, and chats queue at their gate (one at a time).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_load import start_server  # one way to start a bench server

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-time", type=int, default=90)
    ap.add_argument("--max-examples", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "roots" / "proj").mkdir(parents=True)
        (tmp / "roots" / "proj" / "a.md").write_text("Fuzzing finds bugs.\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(tmp / "home", tmp / "roots", port, MEMEX_MAX_CHAT_TOKENS="32")
        url = f"http://127.0.0.1:{port}"
        try:
            httpx.post(f"{url}/v1/corpora", json={"name": "a", "documents": [
                {"id": "a", "text": "Schemathesis generates requests from a schema."}]},
                timeout=60).raise_for_status()
            cmd = ["schemathesis", "run", f"{url}/openapi.json", "--checks", CHECKS,
                   "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
                   "--seed", str(args.seed), "--workers", "2", "--request-timeout", "30",
                   "--phases", "examples,coverage,fuzzing", "--generation-deterministic"]
            print("$", " ".join(cmd), flush=True)
            t0 = time.time()
            rc = subprocess.run(cmd, timeout=args.max_time * 3 + 120).returncode
            print(f"schemathesis exit code {rc} after {time.time() - t0:.0f}s "
                  f"(server still alive: {server.poll() is None})")
            return rc if server.poll() is None else 1
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
