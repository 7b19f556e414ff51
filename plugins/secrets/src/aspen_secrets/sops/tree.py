"""Walking a SOPS document: every value with its path, in document order, and the MAC.

Rules (checked against files written by SOPS 3.7):

- A value's AES-GCM additional data is the keys on its path joined with ``:`` plus a
  trailing ``:`` (``app2:db:user:``). List items share their list's path (no index).
- The MAC is SHA-512 over the Go text form of every non-null value in document order,
  clear-text ones included (only the encrypted ones, after a fixed prefix, when
  ``mac_only_encrypted``), written as upper-case hex; it is stored encrypted with
  ``lastmodified`` (RFC 3339) as additional data. Comments and nulls are not in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aspen_secrets.limits import SOPS_MAX_DEPTH, SOPS_MAX_VALUES
from aspen_secrets.sops.errors import SopsError
from aspen_secrets.sops.metadata import MAC_ONLY_ENCRYPTED_INIT, Metadata
from aspen_secrets.sops.values import scalar_bytes

__all__ = ["LeafFn", "MacWalker", "aad_for"]

#: ``(value, path, encrypted) -> (new value, cleartext value)``.
LeafFn = Callable[[Any, tuple[str, ...], bool], tuple[Any, Any]]


class MacWalker:
    """Rebuilds a document by mapping each leaf through a function, hashing the leaves'
    cleartext for the MAC as it goes."""

    def __init__(self, metadata: Metadata, *, numbers_as_float: bool) -> None:
        self._metadata = metadata
        self._numbers_as_float = numbers_as_float
        self._hash = hashlib.sha512()
        self._values = 0
        if metadata.mac_only_encrypted:
            self._hash.update(MAC_ONLY_ENCRYPTED_INIT)

    @property
    def mac(self) -> str:
        """The MAC over the leaves walked so far (upper-case hex SHA-512)."""
        return self._hash.hexdigest().upper()

    def walk(self, document: dict[str, Any], leaf: LeafFn) -> dict[str, Any]:
        """``document`` with every leaf replaced by ``leaf(value, path, encrypted)[0]``."""
        return self._node(document, (), leaf, 0)

    def _node(self, node: Any, path: tuple[str, ...], leaf: LeafFn, depth: int) -> Any:
        if depth > SOPS_MAX_DEPTH:
            raise SopsError(f"the document is nested deeper than {SOPS_MAX_DEPTH} levels")
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    raise SopsError(f"only string keys are supported (found {key!r})")
                out[key] = self._node(value, (*path, key), leaf, depth + 1)
            return out
        if isinstance(node, list):
            return [self._node(item, path, leaf, depth + 1) for item in node]
        if node is None:
            return None
        self._values += 1
        if self._values > SOPS_MAX_VALUES:
            raise SopsError(f"the document holds more than {SOPS_MAX_VALUES} values")
        encrypted = self._metadata.encrypts(path)
        new, clear = leaf(node, path, encrypted)
        if encrypted or not self._metadata.mac_only_encrypted:
            self._hash.update(scalar_bytes(clear, numbers_as_float=self._numbers_as_float))
        return new


def aad_for(path: tuple[str, ...]) -> str:
    """The additional data of the value at ``path``: ``a:b:c:``."""
    return ":".join(path) + ":"
