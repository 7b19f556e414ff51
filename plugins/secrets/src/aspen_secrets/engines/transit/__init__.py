"""Vault-compatible Transit secrets engine: named, versioned keys for encryption,
signing, HMAC, data keys, hashing and random bytes (see :mod:`.engine`)."""

from __future__ import annotations

from aspen_secrets.engines.transit.engine import TransitEngine

__all__ = ["TransitEngine"]
