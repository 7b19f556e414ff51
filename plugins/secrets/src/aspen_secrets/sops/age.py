"""age keys for SOPS: identity files, recipients, and the wrapped data key.

The age implementation used is `pyrage <https://github.com/woodruffw/pyrage>`_ (Python
bindings of the Rust ``rage`` crate), X25519 identities and recipients only. SOPS stores
the 32-byte data key once per recipient, each as an ASCII-armored age file.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import pyrage

from aspen.errors import InvalidArgumentError
from aspen_secrets.limits import SOPS_MAX_FILE_BYTES
from aspen_secrets.sops.errors import SopsError
from aspen_secrets.sops.values import DATA_KEY_BYTES

__all__ = [
    "AgeStanza",
    "load_age_identities",
    "parse_age_identities",
    "parse_recipients",
    "unwrap_data_key",
    "wrap_data_key",
]

_SECRET_PREFIX = "AGE-SECRET-KEY-1"

#: One ``age`` entry of the metadata: ``(recipient, armored encrypted data key)``.
AgeStanza = tuple[str, str]


def parse_age_identities(text: str, *, source: str = "key file") -> list[Any]:
    """The X25519 identities in an age key file's text (``#`` comments and blank lines
    are skipped). Raises :class:`InvalidArgumentError` on any other line."""
    identities = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(_SECRET_PREFIX):
            raise InvalidArgumentError(
                f"{source}, line {number}: not an age X25519 identity (AGE-SECRET-KEY-1...)"
            )
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:  # pyrage raises its own IdentityError/ValueError
            raise InvalidArgumentError(f"{source}, line {number}: bad age identity") from None
    if not identities:
        raise InvalidArgumentError(f"{source}: no age identity in it")
    return identities


def load_age_identities(path: str | PathLike[str]) -> list[Any]:
    """The X25519 identities of the age key file at ``path`` (``AGE-SECRET-KEY-1...``
    lines; comments allowed). Raises :class:`InvalidArgumentError` when the file is
    missing, unreadable, too large, or holds anything else."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(SOPS_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read age key file {file}: {exc.strerror}") from None
    if len(data) > SOPS_MAX_FILE_BYTES:
        raise InvalidArgumentError(f"age key file {file} is larger than {SOPS_MAX_FILE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"age key file {file} is not UTF-8 text") from None
    return parse_age_identities(text, source=f"age key file {file}")


def parse_recipients(recipients: Sequence[str]) -> list[Any]:
    """age X25519 recipients (``age1...``) as pyrage objects; raises :class:`SopsError`."""
    if not recipients:
        raise SopsError("at least one age recipient is needed")
    parsed = []
    for recipient in recipients:
        try:
            parsed.append(pyrage.x25519.Recipient.from_str(recipient.strip()))
        except Exception:  # pyrage raises RecipientError/ValueError
            raise SopsError(f"not an age X25519 recipient: {recipient!r}") from None
    return parsed


def wrap_data_key(data_key: bytes, recipients: Sequence[str]) -> list[AgeStanza]:
    """One armored age file of ``data_key`` per recipient, as SOPS stores them."""
    parsed = parse_recipients(recipients)
    stanzas = []
    for text, recipient in zip(recipients, parsed, strict=True):
        armored = pyrage.encrypt(data_key, [recipient], armored=True)
        stanzas.append((text.strip(), armored.decode("ascii")))
    return stanzas


def unwrap_data_key(stanzas: Sequence[AgeStanza], identities: Sequence[Any]) -> bytes:
    """The data key, from the first stanza one of ``identities`` opens. Raises
    :class:`SopsError` naming the recipients when none does."""
    if not stanzas:
        raise SopsError("the file has no age recipients (other key types are not supported)")
    for _recipient, armored in stanzas:
        try:
            key = pyrage.decrypt(armored.encode("ascii", "replace"), list(identities))
        except Exception:  # pyrage.DecryptError for "not for us" and for malformed input
            continue
        if len(key) != DATA_KEY_BYTES:
            raise SopsError(f"the age-encrypted data key is {len(key)} bytes, not 32")
        return bytes(key)
    names = ", ".join(recipient for recipient, _ in stanzas)
    raise SopsError(f"no age identity given opens the data key; the file's recipients: {names}")
