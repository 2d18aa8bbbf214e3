"""Run the real ``memex`` CLI in a subprocess on a given data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_memex(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``memex ARGS`` with ``MEMEX_HOME=home`` and ``env`` over this environment."""
    full = {**os.environ, "MEMEX_HOME": str(home), **env}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, env=full, timeout=300)
