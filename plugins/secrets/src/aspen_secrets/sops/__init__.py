"""SOPS files with age keys: decrypt (verifying the MAC) and encrypt, in Python.

Reads and writes the file formats of `getsops/sops <https://github.com/getsops/sops>`_
(YAML, JSON, dotenv, INI, binary) for age X25519 recipients, without the ``sops`` binary.
The age implementation used is **pyrage** (bindings of the Rust ``rage`` crate); values are
AES-256-GCM (``cryptography``), the MAC SHA-512. Not supported: PGP/KMS/Vault key types,
Shamir key groups, comment-regex rules, multi-document YAML; comments are not kept.

Public API: :func:`load_age_identities`, :func:`decrypt_file`, :func:`decrypt_bytes`,
:func:`encrypt_document`, :func:`encrypt_bytes`, :class:`SopsError`,
:class:`SopsMacMismatchError`, :data:`FORMATS`.
"""

from __future__ import annotations

from aspen_secrets.sops.age import load_age_identities
from aspen_secrets.sops.document import (
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_document,
)
from aspen_secrets.sops.errors import SopsError, SopsMacMismatchError
from aspen_secrets.sops.stores import FORMATS

__all__ = [
    "FORMATS",
    "SopsError",
    "SopsMacMismatchError",
    "decrypt_bytes",
    "decrypt_file",
    "encrypt_bytes",
    "encrypt_document",
    "load_age_identities",
]
