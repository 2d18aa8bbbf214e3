"""API keys: hashed at rest, scoped to corpora with a role (read < write < admin).

A key reads ``mx_<key_id>_<secret>``. Only ``key_id`` (to find the row) and
SHA-256 of the whole token are stored: the secret is 32 random bytes, so a fast
hash is enough (no password stretching needed) and a stolen database yields no
usable key. ``corpora`` is a list of corpus names, or ``["*"]`` for all.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from indexer.database import ApiKey, utcnow
from indexer.errors import InvalidInput, NotFound

ROLES = ("read", "write", "admin")
TOKEN_RE = re.compile(r"^mx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id, role and corpus scope (``None`` = auth off)."""

    key_id: str | None
    role: str
    corpora: tuple[str, ...]

    def allows(self, corpus: str | None, role: str) -> bool:
        """``corpus=None`` asks for a global right (e.g. creating corpora)."""
        if ROLES.index(self.role) < ROLES.index(role):
            return False
        if "*" in self.corpora:
            return True
        return corpus is not None and corpus in self.corpora


ANONYMOUS = Principal(None, "admin", ("*",))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def create(self, name: str, role: str, corpora: list[str]) -> tuple[ApiKey, str]:
        """Returns the row and the token; the token is shown once and never stored."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {ROLES}")
        if not corpora:
            raise InvalidInput("scope the key to at least one corpus, or '*'")
        key_id = secrets.token_hex(6)
        token = f"mx_{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(id=key_id, name=name, hash=token_digest(token), role=role,
                     corpora=sorted(set(corpora)))
        with self.sessions.begin() as s:
            s.add(row)
        return row, token

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        with self.sessions() as s:
            q = select(ApiKey).order_by(ApiKey.created_at)
            if not include_revoked:
                q = q.where(ApiKey.revoked_at.is_(None))
            return list(s.scalars(q))

    def revoke(self, key_id: str) -> ApiKey:
        with self.sessions.begin() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
            row.revoked_at = row.revoked_at or utcnow()
            return cast(ApiKey, row)

    def active_count(self) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).where(ApiKey.revoked_at.is_(None))) or 0

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; ``None`` otherwise."""
        m = TOKEN_RE.match(token or "")
        if not m:
            return None
        with self.sessions() as s:
            row = s.get(ApiKey, m.group(1))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.hash, token_digest(token)):
            return None
        return Principal(row.id, row.role, tuple(row.corpora))
