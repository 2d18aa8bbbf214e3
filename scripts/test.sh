#!/usr/bin/env bash
# Set up, lint (ruff), type-check (mypy; its scope is in pyproject.toml), then run the whole
# test suite: unit tests, doctests, the API against a real uvicorn, and the store against a
# real PostgreSQL on loopback (Debian's package, installed when missing and we are root;
# without it those tests skip and say so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -z "${MEMEX_TEST_POSTGRES_URL:-}" ]; then
  if pg=$(bash scripts/ci_postgres.sh); then
    eval "$pg"
    trap 'bash scripts/ci_postgres.sh stop "$MEMEX_TEST_PG_DIR"' EXIT
  else
    echo "test.sh: no PostgreSQL available; tests/test_postgres.py will skip" >&2
  fi
fi
# `docker-compose config` for tests/test_packaging.py (Debian's package; best effort).
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null 2>&1 || true
fi
# Lint and types first: seconds, and a failure there needs no test run to find.
ruff check .
mypy
# Seconds: fails when a hot kernel runs > 5x slower than float32 on this CPU (bench/RESULTS.md).
python -m bench.cliff_guard
python -m pytest "$@"
