#!/usr/bin/env bash
# The main job on embedded defaults: set up, index this repository's docs, search them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MEMEX_HOME=${MEMEX_HOME:-$PWD/.memex}
memex index docs --name memex-docs
for q in "how do I start the server" "what happens when a sync crashes" "search several corpora at once"; do
  echo; echo "\$ memex search \"$q\" -k 3"
  memex search "$q" --corpus memex-docs -k 3
done
echo; echo "Next: memex serve  (REST API on http://127.0.0.1:8765, docs at /docs)"
