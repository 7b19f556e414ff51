"""Hash algorithms by Vault's names, digests and HMACs."""

from __future__ import annotations

import hmac as std_hmac

from cryptography.hazmat.primitives import hashes

from aspen.errors import InvalidArgumentError

__all__ = ["DIGESTS", "SIGNING_HASHES", "algorithm", "digest", "mac"]

_ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha2-224": hashes.SHA224,
    "sha2-256": hashes.SHA256,
    "sha2-384": hashes.SHA384,
    "sha2-512": hashes.SHA512,
    "sha3-224": hashes.SHA3_224,
    "sha3-256": hashes.SHA3_256,
    "sha3-384": hashes.SHA3_384,
    "sha3-512": hashes.SHA3_512,
}
#: Algorithms of the ``hash`` endpoint.
DIGESTS = tuple(name for name in _ALGORITHMS if name != "sha1")
#: Algorithms for ``hmac``, ``sign`` and ``verify``.
SIGNING_HASHES = tuple(_ALGORITHMS)


def algorithm(name: str, allowed: tuple[str, ...] = SIGNING_HASHES) -> hashes.HashAlgorithm:
    """The hash called ``name`` if it is in ``allowed``."""
    if name not in allowed:
        raise InvalidArgumentError(
            f"unsupported hash algorithm {name!r}; valid: {', '.join(allowed)}"
        )
    return _ALGORITHMS[name]()


def digest(name: str, data: bytes, allowed: tuple[str, ...] = DIGESTS) -> bytes:
    """The ``name`` digest of ``data``."""
    hasher = hashes.Hash(algorithm(name, allowed))
    hasher.update(data)
    return hasher.finalize()


def mac(name: str, key: bytes, data: bytes) -> bytes:
    """HMAC-``name`` of ``data`` under ``key``."""
    return std_hmac.new(key, data, algorithm(name).name).digest()
