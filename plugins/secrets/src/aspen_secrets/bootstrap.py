"""Bootstrapping secrets from a SOPS file given at start-up (``--secrets-file``).

The file is decrypted with the age identities of ``--age-key-file`` (default
``$SOPS_AGE_KEY_FILE``). Its top-level entry ``aspen_root_key``, if present, is the root
key that seals the keyring (it must be stored encrypted: a cleartext one is refused, as the
SOPS MAC does not cover key names); every other top-level entry ``name`` is written to KV v2 at
``secret/<name>``: a map as the secret's data, a scalar (or list) as ``{"value": v}``.
A secret is written only when its data differs from the latest version, so restarts
do not pile up versions; the write carries ``options.cas`` = the version read, so nodes
importing the same file at once add one version between them (a node that loses the race
re-reads and finds the data already there).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aspen.errors import CompareFailedError, InvalidArgumentError, NotFoundError
from aspen_secrets import limits
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
    encrypted: set[tuple[str, ...]] = set()
    doc = sops.decrypt_file(path, identities, encrypted_paths=encrypted)
    if not isinstance(doc, dict):
        raise InvalidArgumentError(f"secrets file {path} must hold a map at its top level")
    if ROOT_KEY_ENTRY in doc and (ROOT_KEY_ENTRY,) not in encrypted:
        # the SOPS MAC covers values, not key names: a cleartext value could have been
        # renamed to aspen_root_key by anyone able to edit the file
        raise InvalidArgumentError(
            f"secrets file {path}: {ROOT_KEY_ENTRY} is not encrypted (not an ENC[...] "
            "value); refusing it as the root key: encrypt it with sops"
        )
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
    same data; returns ``{"written": [...], "unchanged": [...]}``. Runs before the plugin
    is ready (its requests are internal)."""
    written: list[str] = []
    unchanged: list[str] = []
    for name, value in entries.items():
        check_path(name)
        if await _import_one(dispatcher, name, secret_data(value)):
            written.append(name)
        else:
            unchanged.append(name)
    return {"written": written, "unchanged": unchanged}


async def _import_one(dispatcher: Dispatcher, name: str, data: dict[str, Any]) -> bool:
    """Write ``data`` as the new version of ``secret/<name>`` (check-and-set on the version
    read) unless it is the latest already; True if this call wrote it."""
    path = f"{BOOTSTRAP_MOUNT}/data/{name.strip('/')}"
    for _ in range(limits.SECRETS_MAX_WRITE_ATTEMPTS):
        current, version = await _current(dispatcher, path)
        if current == data:
            return False
        body = {"data": data, "options": {"cas": version}}
        try:
            await dispatcher.dispatch(path, Request(Operation.WRITE, path, body), internal=True)
        except CompareFailedError:
            continue  # another node wrote first: read again
        return True
    raise CompareFailedError(f"importing {path} raced other writers; restart to retry")


async def _current(dispatcher: Dispatcher, path: str) -> tuple[dict[str, Any] | None, int]:
    """The data of the latest version at ``path`` (None if missing or deleted) and the
    secret's current version number (0 if it has none)."""
    try:
        response = await dispatcher.dispatch(path, Request(Operation.READ, path, {}), internal=True)
    except NotFoundError:
        return None, 0
    body = response.data or {}
    version = int((body.get("metadata") or {}).get("version") or 0)
    if response.status is not None and response.status >= 400:
        return None, version
    return body.get("data"), version
