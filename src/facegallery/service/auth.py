"""API keys: made at random, shown once, stored only as SHA-256 hashes, compared in constant time.

A key file holds one key per line as ``<label> sha256:<hex>`` (``#`` comments allowed); the label says
whose key it is (a camera, an app) and is what the server may name, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from facegallery.errors import InvalidInput, NotFound

PREFIX = "fg_"


def new_key() -> str:
    """A fresh random key (32 bytes of randomness, URL-safe)."""
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_key(path: str | os.PathLike, label: str) -> str:
    """Make a key, append its hash under ``label`` to the key file (created owner-only) and return the
    key itself: the only time it exists in the clear."""
    if not label or any(c.isspace() for c in label) or not label.isprintable():
        raise InvalidInput(f"{label!r}: a key label is one word without spaces or control characters")
    path = Path(path)
    ring = KeyRing.load(path) if path.exists() else KeyRing([])
    if label in ring.labels:
        raise InvalidInput(f"{label!r}: {path} already has a key with this label")
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{label} {key_hash(key)}\n")
    return key


@dataclass
class KeyRing:
    """The hashes a server accepts."""

    entries: list[tuple[str, str]]  # (label, "sha256:<hex>")

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.entries]

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeyRing:
        """Read a key file; a missing file or a malformed line is a one-line error naming it."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise NotFound(f"{path}: no such key file (make one with `facegallery key --file {path}`)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"{path}: cannot read the key file ({e})") from None
        entries = []
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].startswith("sha256:") or len(parts[1]) != 7 + 64:
                raise InvalidInput(f"{path}:{n}: expected '<label> sha256:<64 hex digits>'")
            entries.append((parts[0], parts[1]))
        if not entries:
            raise InvalidInput(f"{path}: holds no key")
        return cls(entries)

    def check(self, presented: str | None) -> str | None:
        """The label of the key ``presented``, or None. Every stored hash is compared, each in constant
        time, so the answer's timing says nothing about which key came close."""
        if not presented:
            return None
        digest = key_hash(presented)
        found = None
        for label, stored in self.entries:
            if hmac.compare_digest(digest.encode(), stored.encode()):
                found = label
        return found
