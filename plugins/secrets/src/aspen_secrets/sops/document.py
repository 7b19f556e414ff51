"""Decrypting (with MAC verification) and encrypting whole SOPS documents."""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

from aspen_secrets.limits import SOPS_MAX_FILE_BYTES
from aspen_secrets.sops.age import unwrap_data_key, wrap_data_key
from aspen_secrets.sops.errors import SopsError, SopsMacMismatchError
from aspen_secrets.sops.metadata import DEFAULT_UNENCRYPTED_SUFFIX, FORMAT_VERSION, Metadata
from aspen_secrets.sops.stores import (
    check_format,
    check_shape,
    emit_encrypted,
    format_for_path,
    parse_encrypted,
    parse_plain,
)
from aspen_secrets.sops.tree import MacWalker, aad_for
from aspen_secrets.sops.values import DATA_KEY_BYTES, Comment, decrypt_value, encrypt_value

__all__ = ["decrypt_bytes", "decrypt_file", "encrypt_bytes", "encrypt_document", "read_bounded"]


def read_bounded(path: str | PathLike[str]) -> bytes:
    """The bytes of the file at ``path``, at most ``SOPS_MAX_FILE_BYTES``; raises
    :class:`SopsError` when it is missing, unreadable or too large."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(SOPS_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SopsError(f"cannot read {file}: {exc.strerror}") from None
    _check_size(data)
    return data


def _check_size(data: bytes) -> None:
    if len(data) > SOPS_MAX_FILE_BYTES:
        raise SopsError(f"the SOPS file is larger than {SOPS_MAX_FILE_BYTES} bytes")


def _where(path: tuple[str, ...]) -> str:
    return "value at " + (":".join(path) or "<top>")


def decrypt_bytes(
    data: bytes,
    format: str,
    identities: Sequence[Any],
    *,
    encrypted_paths: set[tuple[str, ...]] | None = None,
) -> Any:
    """The typed cleartext document of SOPS file ``data`` (without its ``sops``
    section), after checking its MAC.

    ``encrypted_paths``, when given, receives the key path of every value that was stored
    encrypted (``ENC[...]``) — the MAC covers values, not key names, so a caller that
    trusts a value *because of its key* must check that it was encrypted.

    ``format``: ``yaml``, ``json``, ``dotenv``, ``ini`` or ``binary``; ``identities``: age
    identities (:func:`~aspen_secrets.sops.load_age_identities`). Raises
    :class:`SopsError` for malformed input or when no identity opens the data key, and
    :class:`SopsMacMismatchError` when the content was changed."""
    _check_size(data)
    parsed = parse_encrypted(data, check_format(format))
    metadata = Metadata.from_raw(parsed.metadata)
    key = unwrap_data_key(metadata.age, identities)

    def leaf(value: Any, path: tuple[str, ...], encrypted: bool) -> tuple[Any, Any]:
        if not encrypted:
            return value, value
        if encrypted_paths is not None:
            encrypted_paths.add(path)
        clear = decrypt_value(value, key, aad_for(path), where=_where(path))
        if isinstance(clear, Comment):
            raise SopsError(f"{_where(path)}: a comment where a value belongs")
        return clear, clear

    walker = MacWalker(metadata, numbers_as_float=parsed.numbers_as_float)
    document = walker.walk(parsed.document, leaf)
    stored = decrypt_value(metadata.mac, key, metadata.mac_aad, where="sops mac")
    if not isinstance(stored, str) or not hmac.compare_digest(
        stored.encode("utf-8", "replace"), walker.mac.encode()
    ):
        raise SopsMacMismatchError("MAC mismatch: the file's values changed after it was written")
    return document


def decrypt_file(
    path: str | PathLike[str],
    identities: Sequence[Any],
    *,
    format: str | None = None,
    encrypted_paths: set[tuple[str, ...]] | None = None,
) -> Any:
    """:func:`decrypt_bytes` of the file at ``path``; the format defaults to the one its
    extension implies (.yaml/.yml, .json, .env, .ini, anything else binary)."""
    return decrypt_bytes(
        read_bounded(path),
        format or format_for_path(path),  # type: ignore[arg-type]
        identities,
        encrypted_paths=encrypted_paths,
    )


def encrypt_document(
    document: Any,
    format: str,
    recipients: Sequence[str],
    *,
    unencrypted_suffix: str | None = None,
    encrypted_suffix: str | None = None,
    unencrypted_regex: str | None = None,
    encrypted_regex: str | None = None,
    mac_only_encrypted: bool = False,
    lastmodified: datetime | None = None,
) -> bytes:
    """A SOPS file of ``document`` for the age ``recipients``.

    YAML/JSON take a map (nested maps, lists, str/int/float/bool/None), dotenv a flat map
    of strings, INI ``{section: {key: str}}``, binary ``{"data": str}`` (or the text or
    bytes themselves). At most one of the four rules picks the encrypted values (default:
    keys ending ``_unencrypted`` stay clear). A fresh data key and IVs every call."""
    check_format(format)
    if format == "binary" and isinstance(document, str | bytes):
        document = {"data": document}
    if not isinstance(document, dict):
        raise SopsError("the document to encrypt must be a map")
    if "sops" in document:
        raise SopsError("the document already has a 'sops' key (is it encrypted already?)")
    check_shape(document, format)
    rules = {
        "unencrypted_suffix": unencrypted_suffix,
        "encrypted_suffix": encrypted_suffix,
        "unencrypted_regex": unencrypted_regex,
        "encrypted_regex": encrypted_regex,
    }
    chosen = [(name, value) for name, value in rules.items() if value]
    if len(chosen) > 1:
        raise SopsError("use at most one of " + ", ".join(rules))
    rule, pattern = chosen[0] if chosen else ("unencrypted_suffix", DEFAULT_UNENCRYPTED_SUFFIX)
    data_key = os.urandom(DATA_KEY_BYTES)
    stanzas = wrap_data_key(data_key, recipients)
    moment = lastmodified or datetime.now(UTC)
    metadata = Metadata(
        stanzas, moment, "", rule, pattern, mac_only_encrypted, version=FORMAT_VERSION
    )

    def leaf(value: Any, path: tuple[str, ...], encrypted: bool) -> tuple[Any, Any]:
        if isinstance(value, Comment) or not isinstance(value, str | bytes | int | float):
            raise SopsError(f"{_where(path)}: cannot encrypt a {type(value).__name__}")
        return (encrypt_value(value, data_key, aad_for(path)) if encrypted else value), value

    walker = MacWalker(metadata, numbers_as_float=format in ("json", "binary"))
    encrypted_document = walker.walk(document, leaf)
    metadata.mac = encrypt_value(walker.mac, data_key, metadata.mac_aad)
    out = emit_encrypted(encrypted_document, metadata.to_raw(), format)
    _check_size(out)
    return out


def encrypt_bytes(
    data: bytes,
    format: str,
    recipients: Sequence[str],
    **options: Any,
) -> bytes:
    """:func:`encrypt_document` of a cleartext file's bytes (parsed as ``format``)."""
    _check_size(data)
    return encrypt_document(parse_plain(data, check_format(format)), format, recipients, **options)
