"""Bootstrapping secrets from a SOPS file given at start-up (``--secrets-file``).

The file is decrypted with the age identities of ``--age-key-file`` (default
``$SOPS_AGE_KEY_FILE``). Its top-level entry ``aspen_root_key``, if present, is the root
key that seals the keyring; every other top-level entry ``name`` is written to KV v2 at
``secret/<name>``: a map as the secret's data, a scalar (or list) as ``{"value": v}``.
A secret is written only when its data differs from the latest version, so restarts
do not pile up versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen_secrets.keyring import RootKey, parse_root_key
from aspen_secrets.logical import Operation, Request
from aspen_secrets.store import check_path

if TYPE_CHECKING:
    from aspen_secrets.dispatch import Dispatcher

__all__ = [
    "BOOTSTRAP_MOUNT",
    "ROOT_KEY_ENTRY",
    "import_secrets",
    "load_secrets_file",
    "secret_data",
    "split_root_key",
]

#: The top-level SOPS entry holding the root key.
ROOT_KEY_ENTRY = "aspen_root_key"
#: The KV v2 mount bootstrap secrets are written to.
BOOTSTRAP_MOUNT = "secret"


def load_secrets_file(path: Path, age_key_file: str | Path | None) -> dict[str, Any]:
    """Decrypt a SOPS file (MAC verified) into its document (a map)."""
    try:
        from aspen_secrets import sops
    except ImportError as exc:
        raise InvalidArgumentError(
            f"cannot read {path}: SOPS support is unavailable: {exc}"
        ) from exc
    if not age_key_file:
        raise InvalidArgumentError(
            f"cannot decrypt {path}: no age key file (give --age-key-file or set SOPS_AGE_KEY_FILE)"
        )
    identities = sops.load_age_identities(age_key_file)
    doc = sops.decrypt_file(path, identities)
    if not isinstance(doc, dict):
        raise InvalidArgumentError(f"secrets file {path} must hold a map at its top level")
    return doc


def split_root_key(doc: dict[str, Any], path: Path) -> tuple[RootKey | None, dict[str, Any]]:
    """``(root key or None, the other entries)`` of a decrypted secrets document."""
    rest = {str(k): v for k, v in doc.items() if k != ROOT_KEY_ENTRY}
    raw = doc.get(ROOT_KEY_ENTRY)
    if raw is None:
        return None, rest
    if not isinstance(raw, str | bytes):
        raise InvalidArgumentError(f"{path}: {ROOT_KEY_ENTRY} must be a string")
    key = parse_root_key(raw, f"{path}: {ROOT_KEY_ENTRY}")
    return RootKey(key, f"secrets file {path}"), rest


def secret_data(value: Any) -> dict[str, Any]:
    """The KV v2 data a bootstrap entry becomes (a map as is, anything else as ``value``)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {"value": value}


async def import_secrets(dispatcher: Dispatcher, entries: dict[str, Any]) -> dict[str, Any]:
    """Write each entry to ``secret/<name>`` unless its latest version already holds the
    same data; returns ``{"written": [...], "unchanged": [...]}``."""
    written: list[str] = []
    unchanged: list[str] = []
    for name, value in entries.items():
        check_path(name)
        data = secret_data(value)
        path = f"{BOOTSTRAP_MOUNT}/data/{name.strip('/')}"
        if await _current_data(dispatcher, path) == data:
            unchanged.append(name)
            continue
        await dispatcher.dispatch(path, Request(Operation.WRITE, path, {"data": data}))
        written.append(name)
    return {"written": written, "unchanged": unchanged}


async def _current_data(dispatcher: Dispatcher, path: str) -> dict[str, Any] | None:
    """The data of the latest version at ``path`` (None if missing or deleted)."""
    try:
        response = await dispatcher.dispatch(path, Request(Operation.READ, path, {}))
    except NotFoundError:
        return None
    if response.status is not None and response.status >= 400:
        return None
    return (response.data or {}).get("data")
