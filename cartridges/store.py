"""Cartridges on disk: ``<root>/<id>/cartridge.safetensors`` plus ``info.json``.

``info.json`` is what listings read (no tensor is loaded to list); it is
replaced atomically and durably (``indexer/durable.py``). ``<root>/<id>/work/``
holds the resumable training state until the cartridge is ready. A cartridge
whose ``info.json`` cannot be read is listed with status ``corrupt`` instead of
failing the whole listing.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cartridges.config import CartridgeConfig
from cartridges.fileformat import read_cartridge
from indexer import durable
from indexer.errors import IndexCorrupt, InvalidInput, NotFound

STATUSES = ("queued", "training", "ready", "failed", "cancelled")
CORRUPT = "corrupt"  # listed, never stored: info.json is unreadable
log = logging.getLogger("memex.cartridges")
_ID = re.compile(r"^[0-9a-f]{32}$")


def is_stale(info: dict, corpus_version: int, corpus_created_at: str) -> bool:
    """Whether the corpus changed since ``info``'s cartridge was trained on it.

    Versions restart when a corpus is deleted and created again, so the version
    alone cannot tell; the corpus's creation time identifies the incarnation
    (recorded at training time, else: a cartridge older than the corpus is stale)."""
    if info["corpus_version"] != corpus_version:
        return True
    recorded = info.get("corpus_created_at")
    if recorded is not None:
        return recorded != corpus_created_at
    return datetime.fromisoformat(info["created_at"]) < datetime.fromisoformat(corpus_created_at)


class CartridgeStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        durable.make_dirs(self.root)

    def _dir(self, cartridge_id: str) -> Path:
        if not _ID.match(cartridge_id or ""):
            raise NotFound(f"cartridge {cartridge_id!r} does not exist")
        return self.root / cartridge_id

    def create(self, corpus_id: str, corpus_version: int, config: CartridgeConfig,
               corpus_created_at: str | None = None) -> dict:
        """Register a cartridge to train; returns its info (status ``queued``).

        ``corpus_created_at`` identifies this incarnation of the corpus: versions
        restart when a corpus is deleted and created again under the same name."""
        cartridge_id = uuid.uuid4().hex
        info = {"id": cartridge_id, "status": "queued", "corpus_id": corpus_id,
                "corpus_version": corpus_version, "corpus_created_at": corpus_created_at,
                "model": config.model, "p": config.p,
                "bytes": None, "config": config.to_dict(), "training": None, "error": None,
                "created_at": datetime.now(UTC).isoformat()}
        durable.make_dirs(self.root / cartridge_id)
        self._write(cartridge_id, info)
        return info

    def _write(self, cartridge_id: str, info: dict) -> None:
        durable.write_json(self._dir(cartridge_id) / "info.json", info, indent=2, sort_keys=True)

    def info(self, cartridge_id: str) -> dict:
        path = self._dir(cartridge_id) / "info.json"
        if not path.exists():
            raise NotFound(f"cartridge {cartridge_id!r} does not exist")
        try:
            info = json.loads(path.read_text())
            if not isinstance(info, dict) or info.get("id") != cartridge_id:
                raise ValueError("not this cartridge's info")
        except (OSError, ValueError) as e:
            raise IndexCorrupt(f"cartridge {cartridge_id!r}: unreadable info.json ({e})") from e
        return info

    def update(self, cartridge_id: str, **fields) -> dict:
        """Change some fields; read-modify-write under the cartridge's lock (the job
        thread and a request may update one cartridge at once)."""
        if "status" in fields and fields["status"] not in STATUSES:
            raise InvalidInput(f"unknown status {fields['status']!r}")
        self.info(cartridge_id)  # NotFound before the lock file would be made
        with durable.exclusive_lock(self._dir(cartridge_id)):
            info = {**self.info(cartridge_id), **fields}
            self._write(cartridge_id, info)
        return info

    def list(self, corpus_id: str | None = None) -> list[dict]:
        infos = []
        for d in sorted(self.root.iterdir()):
            if _ID.match(d.name) and (d / "info.json").exists():
                try:
                    info = self.info(d.name)
                except IndexCorrupt as e:
                    log.warning("%s", e.message)
                    info = self._corrupt(d.name, e.message)
                if corpus_id is None or info["corpus_id"] == corpus_id:
                    infos.append(info)
        return sorted(infos, key=lambda i: i["created_at"])

    def _corrupt(self, cartridge_id: str, error: str) -> dict:
        """What a listing shows for an unreadable info.json: the id, to inspect or delete."""
        return {"id": cartridge_id, "status": CORRUPT, "corpus_id": "", "corpus_version": 0,
                "corpus_created_at": None, "model": "", "p": 0, "bytes": None, "config": {},
                "training": None, "error": error, "created_at": ""}

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
        """Move a finished training's file into place, mark ready, drop the work dir.

        In this order, each step durable: a power loss before the status says
        ready leaves the work dir, from which a resumed run finishes again."""
        target = self._dir(cartridge_id) / "cartridge.safetensors"
        header = read_cartridge(trained).header  # verify before publishing
        durable.replace(trained, target)
        info = self.update(cartridge_id, status="ready", bytes=target.stat().st_size, p=header["p"],
                           training={k: v for k, v in header["training"].items() if k != "config"})
        durable.remove(self.work_dir(cartridge_id))
        return info

    def delete(self, cartridge_id: str) -> None:
        path = self._dir(cartridge_id)
        if not path.exists():
            raise NotFound(f"cartridge {cartridge_id!r} does not exist")
        durable.remove(path)
