"""Shared fixtures: the real bundled encoder (loaded once) and fresh data directories."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

# One model cache for the whole run (CLI subprocesses included): the ONNX export is made once.
os.environ.setdefault("MEMEX_MODEL_CACHE", str(Path.home() / ".memex" / "models"))

from indexer.corpus import Corpora
from indexer.encoding.encoder import ColBERTEncoder
from tests.helpers.server import LiveServer, free_port  # noqa: F401 - free_port: tests import it from here too


@pytest.fixture(scope="session")
def encoder() -> ColBERTEncoder:
    return ColBERTEncoder.load()


@pytest.fixture
def corpora(tmp_path: Path, encoder: ColBERTEncoder) -> Corpora:
    return Corpora(tmp_path / "home", encoder=encoder)


SAMPLE_FILES = {
    "math/geometry.py": (
        "def circle_area(radius):\n"
        '    """Area of a circle."""\n'
        "    return 3.14159 * radius * radius\n"
    ),
    "net/http_client.py": (
        "import socket\n\n"
        "def fetch_url(url, timeout=10):\n"
        "    # open a TCP connection and send an HTTP GET request\n"
        "    sock = socket.create_connection((url, 80), timeout)\n"
        "    sock.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "    return sock.recv(65536)\n"
    ),
    "docs/cooking.md": (
        "# Bread\n\nKnead the dough for ten minutes, let it rise, then bake at 220 degrees.\n"
    ),
}


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel, text in SAMPLE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def live_server(tmp_path: Path, sample_dir: Path):
    from service.api.app import create_app
    from service.settings import Settings

    settings = Settings(home=tmp_path / "server-home", allowed_roots=[sample_dir.parent],
                        max_request_bytes=2_000_000)
    with LiveServer(create_app(settings)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client
