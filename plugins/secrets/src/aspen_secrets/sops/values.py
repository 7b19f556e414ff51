"""One SOPS value: Go-compatible text forms of scalars and the ``ENC[AES256_GCM,...]`` cipher.

SOPS encrypts each leaf with AES-256-GCM under the file's data key, a fresh 32-byte IV, and
the leaf's path as additional data, and writes
``ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<str|int|float|bool|bytes|comment>]``.
The plaintext of a scalar is its Go text form (:func:`scalar_bytes`): ints in decimal,
floats as Go's ``strconv.FormatFloat(f, 'f', -1, 64)`` (shortest round-trip digits, never an
exponent), booleans as ``True``/``False``. The same text forms feed the MAC.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aspen_secrets.sops.errors import SopsError, SopsMacMismatchError

__all__ = [
    "DATA_KEY_BYTES",
    "Comment",
    "decrypt_value",
    "encrypt_value",
    "format_go_float",
    "is_encrypted_value",
    "scalar_bytes",
    "utf8",
]

#: Size of a SOPS data key (AES-256).
DATA_KEY_BYTES = 32
#: Size of the IV SOPS uses for every value.
_IV_BYTES = 32
_TAG_BYTES = 16
_ENC_RE = re.compile(
    r"ENC\[AES256_GCM,data:([A-Za-z0-9+/=]*),iv:([A-Za-z0-9+/=]+),"
    r"tag:([A-Za-z0-9+/=]+),type:([a-z0-9]+)\]"
)
_INT_RE = re.compile(r"[-+]?[0-9]+")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, lone surrogates (possible in JSON input) as U+FFFD, as Go does."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


class Comment(str):
    """A decrypted comment (``type:comment``): not part of the document nor of the MAC."""


def format_go_float(value: float) -> str:
    """``value`` as Go's ``strconv.FormatFloat(value, 'f', -1, 64)``: the shortest digits
    that round-trip, in positional notation (``1234568000``, ``25.4``, ``1e-07`` →
    ``0.0000001``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def scalar_bytes(value: Any, *, numbers_as_float: bool = False) -> bytes:
    """The bytes SOPS hashes (and encrypts) for a scalar. ``numbers_as_float``: the JSON
    stores, whose Go decoder reads every number as a float64."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        if numbers_as_float:
            try:
                return format_go_float(float(value)).encode()
            except OverflowError:
                raise SopsError(f"number too large for a SOPS JSON document: {value}") from None
        return str(value).encode()
    if isinstance(value, float):
        return format_go_float(value).encode()
    if isinstance(value, str):
        return utf8(value)
    if isinstance(value, bytes):
        return value
    raise SopsError(f"unsupported value type in a SOPS document: {type(value).__name__}")


def _type_name(value: Any) -> str:
    if isinstance(value, Comment):
        return "comment"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, str):
        return "str"
    raise SopsError(f"cannot encrypt a value of type {type(value).__name__}")


def is_encrypted_value(value: Any) -> bool:
    """Whether ``value`` is an ``ENC[AES256_GCM,...]`` string."""
    return isinstance(value, str) and _ENC_RE.fullmatch(value) is not None


def encrypt_value(value: Any, key: bytes, aad: str, *, iv: bytes | None = None) -> Any:
    """``value`` encrypted as SOPS does (an empty string stays empty)."""
    if isinstance(value, str | bytes) and len(value) == 0:
        return value
    type_name = _type_name(value)
    iv = os.urandom(_IV_BYTES) if iv is None else iv
    sealed = AESGCM(key).encrypt(iv, scalar_bytes(value), utf8(aad))
    data, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(data).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(tag).decode()},type:{type_name}]"
    )


def decrypt_value(text: Any, key: bytes, aad: str, *, where: str) -> Any:
    """The typed cleartext of one ``ENC[...]`` value (an empty string stays empty).

    ``where`` names the value in errors. A value that does not authenticate (changed, or
    moved to another path) raises :class:`SopsMacMismatchError`."""
    if text == "":
        return ""
    if not isinstance(text, str):
        raise SopsError(f"{where}: expected an encrypted value, found {type(text).__name__}")
    match = _ENC_RE.fullmatch(text)
    if match is None:
        raise SopsError(f"{where}: not a SOPS ENC[AES256_GCM,...] value")
    try:
        data, iv, tag = (base64.b64decode(part, validate=True) for part in match.group(1, 2, 3))
    except (binascii.Error, ValueError):
        raise SopsError(f"{where}: bad base64 in the encrypted value") from None
    if len(tag) != _TAG_BYTES or not 8 <= len(iv) <= 128:
        raise SopsError(f"{where}: bad IV or tag length in the encrypted value")
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, utf8(aad))
    except InvalidTag:
        raise SopsMacMismatchError(
            f"{where}: the value does not authenticate (changed, or moved from another key)"
        ) from None
    return _typed(plain, match.group(4), where)


def _typed(plain: bytes, type_name: str, where: str) -> Any:
    if type_name == "bytes":
        return plain
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        if type_name == "str":
            return plain
        raise SopsError(f"{where}: the cleartext is not UTF-8") from None
    if type_name == "str":
        return text
    if type_name == "comment":
        return Comment(text)
    if type_name in ("int", "int64") and _INT_RE.fullmatch(text):
        return int(text)
    if type_name == "float":
        try:
            return float(text)
        except ValueError:
            pass
    if type_name == "bool" and (text in _GO_TRUE or text in _GO_FALSE):
        return text in _GO_TRUE
    raise SopsError(f"{where}: bad cleartext for type {type_name!r}")
