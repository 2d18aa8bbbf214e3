"""Cartridges on disk: ``<root>/<id>/cartridge.safetensors`` plus ``info.json``.

``info.json`` is what listings read (no tensor is loaded to list); it is
replaced atomically. ``<root>/<id>/work/`` holds the resumable training state
until the cartridge is ready.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from cartridges.config import CartridgeConfig
from cartridges.fileformat import read_cartridge
from indexer.errors import InvalidInput, NotFound

STATUSES = ("queued", "training", "ready", "failed", "cancelled")
_ID = re.compile(r"^[0-9a-f]{32}$")


class CartridgeStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, cartridge_id: str) -> Path:
        if not _ID.match(cartridge_id or ""):
            raise NotFound(f"cartridge {cartridge_id!r} does not exist")
        return self.root / cartridge_id

    def create(self, corpus_id: str, corpus_version: int, config: CartridgeConfig) -> dict:
        """Register a cartridge to train; returns its info (status ``queued``)."""
        cartridge_id = uuid.uuid4().hex
        info = {"id": cartridge_id, "status": "queued", "corpus_id": corpus_id,
                "corpus_version": corpus_version, "model": config.model, "p": config.p,
                "bytes": None, "config": config.to_dict(), "training": None, "error": None,
                "created_at": datetime.now(timezone.utc).isoformat()}
        (self.root / cartridge_id).mkdir()
        self._write(cartridge_id, info)
        return info

    def _write(self, cartridge_id: str, info: dict) -> None:
        path = self._dir(cartridge_id) / "info.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def info(self, cartridge_id: str) -> dict:
        path = self._dir(cartridge_id) / "info.json"
        if not path.exists():
            raise NotFound(f"cartridge {cartridge_id!r} does not exist")
        return json.loads(path.read_text())

    def update(self, cartridge_id: str, **fields) -> dict:
        if "status" in fields and fields["status"] not in STATUSES:
            raise InvalidInput(f"unknown status {fields['status']!r}")
        info = {**self.info(cartridge_id), **fields}
        self._write(cartridge_id, info)
        return info

    def list(self, corpus_id: str | None = None) -> list[dict]:
        infos = []
        for d in sorted(self.root.iterdir()):
            if _ID.match(d.name) and (d / "info.json").exists():
                info = json.loads((d / "info.json").read_text())
                if corpus_id is None or info["corpus_id"] == corpus_id:
                    infos.append(info)
        return sorted(infos, key=lambda i: i["created_at"])

    def work_dir(self, cartridge_id: str) -> Path:
        return self._dir(cartridge_id) / "work"

    def file(self, cartridge_id: str) -> Path:
        """Path of a ready cartridge's file."""
        info = self.info(cartridge_id)
        path = self._dir(cartridge_id) / "cartridge.safetensors"
        if info["status"] != "ready" or not path.exists():
            raise NotFound(f"cartridge {cartridge_id!r} is not ready (status {info['status']})")
        return path

    def finish(self, cartridge_id: str, trained: Path) -> dict:
        """Move a finished training's file into place, mark ready, drop the work dir."""
        target = self._dir(cartridge_id) / "cartridge.safetensors"
        header = read_cartridge(trained).header  # verify before publishing
        os.replace(trained, target)
        shutil.rmtree(self.work_dir(cartridge_id), ignore_errors=True)
        return self.update(cartridge_id, status="ready", bytes=target.stat().st_size,
                           training={k: v for k, v in header["training"].items() if k != "config"})

    def delete(self, cartridge_id: str) -> None:
        path = self._dir(cartridge_id)
        if not path.exists():
            raise NotFound(f"cartridge {cartridge_id!r} does not exist")
        shutil.rmtree(path)
