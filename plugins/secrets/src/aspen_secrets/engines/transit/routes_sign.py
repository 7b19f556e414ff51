"""Authentication routes: ``hmac``, ``sign`` and ``verify`` (signatures or HMACs)."""

from __future__ import annotations

from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.base import route
from aspen_secrets.engines.transit import hashes as transit_hashes
from aspen_secrets.engines.transit import params
from aspen_secrets.engines.transit.batch import inherit, run
from aspen_secrets.engines.transit.keystore import KeyStore
from aspen_secrets.engines.transit.signing import SignOptions
from aspen_secrets.fields import get_bool, get_str
from aspen_secrets.logical import Operation, Request, Response

__all__ = ["SigningRoutes", "sign_options"]

_NAME_ALGORITHM = r"/(?P<name>[^/]+)(?:/(?P<algorithm>[^/]+))?"
#: Request-level fields a batch item inherits when it does not set them.
_SHARED = ("context", "key_version")
_MAX_VALUE_CHARS = limits.TRANSIT_MAX_CONTEXT_BYTES


def _algorithm(data: dict[str, Any], from_path: str | None, *names: str) -> str:
    """The hash algorithm: from the path, else the first of ``names`` set, else sha2-256."""
    if from_path:
        return from_path
    for name in names:
        value = get_str(data, name)
        if value:
            return value
    return "sha2-256"


def sign_options(data: dict[str, Any], algorithm: str | None) -> SignOptions:
    """The signing options of a request (validated)."""
    return SignOptions(
        hash_algorithm=_algorithm(data, algorithm, "hash_algorithm", "algorithm"),
        prehashed=get_bool(data, "prehashed"),
        signature_algorithm=get_str(data, "signature_algorithm", "pss") or "pss",
        marshaling=get_str(data, "marshaling_algorithm", "asn1") or "asn1",
        salt_length=get_str(data, "salt_length", "auto") or "auto",
    )


class SigningRoutes:
    """HMACs with any key's HMAC key; signatures with asymmetric keys."""

    keystore: KeyStore

    @route(r"hmac" + _NAME_ALGORITHM, Operation.WRITE)
    async def hmac(self, request: Request, name: str, algorithm: str | None) -> Response:
        """``vault:vN:`` HMAC of ``input`` (or of every ``batch_input`` item)."""
        digest = _algorithm(request.data, algorithm, "algorithm", "hash_algorithm")
        transit_hashes.algorithm(digest)
        handle = await self.keystore.require(params.key_name(name))

        def one(item: dict[str, Any]) -> dict[str, Any]:
            item = inherit(request.data, item, _SHARED)
            mac = handle.hmac(params.input_bytes(item), digest, params.key_version(item))
            return {"hmac": mac}

        return await run(request.data, one, cheap=True)  # HMAC-SHA2 of a small input

    @route(r"sign" + _NAME_ALGORITHM, Operation.WRITE)
    async def sign(self, request: Request, name: str, algorithm: str | None) -> Response:
        """``vault:vN:`` signature of ``input`` (or of every ``batch_input`` item)."""
        options = sign_options(request.data, algorithm)
        handle = await self.keystore.require(params.key_name(name))

        def one(item: dict[str, Any]) -> dict[str, Any]:
            item = inherit(request.data, item, _SHARED)
            signature, version = handle.sign(
                params.input_bytes(item),
                options,
                context=params.context(item),
                key_version=params.key_version(item),
            )
            return {"signature": signature, "key_version": version}

        return await run(request.data, one)

    @route(r"verify" + _NAME_ALGORITHM, Operation.WRITE)
    async def verify(self, request: Request, name: str, algorithm: str | None) -> Response:
        """``{"valid": bool}`` for a ``signature`` or an ``hmac`` of ``input``."""
        options = sign_options(request.data, algorithm)
        handle = await self.keystore.require(params.key_name(name))

        def one(item: dict[str, Any]) -> dict[str, Any]:
            item = inherit(request.data, item, ("context",))
            signature = get_str(item, "signature", max_len=_MAX_VALUE_CHARS)
            mac = get_str(item, "hmac", max_len=_MAX_VALUE_CHARS)
            if (signature is None) == (mac is None):
                raise InvalidArgumentError("exactly one of 'signature' or 'hmac' must be given")
            data = params.input_bytes(item)
            if mac is not None:
                valid = handle.verify_hmac(data, mac, options.hash_algorithm)
            else:
                valid = handle.verify(data, signature, options, context=params.context(item))
            return {"valid": valid}

        return await run(request.data, one)
