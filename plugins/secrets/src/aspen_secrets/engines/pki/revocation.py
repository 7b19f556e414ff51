"""Revoking certificates (``revoke``) and clearing out expired ones (``tidy``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aspen.errors import InvalidArgumentError, ResourceExhaustedError
from aspen_secrets import limits
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.pki.certs import format_serial, parse_serial
from aspen_secrets.engines.pki.crl import crl_write, read_revocations, rotate_crl
from aspen_secrets.engines.pki.issuer import require_issuer
from aspen_secrets.engines.pki.pem import parse_cert
from aspen_secrets.engines.pki.records import (
    CERTS,
    REVOKED,
    cert_path,
    revoked_path,
    unix,
)
from aspen_secrets.engines.pki.validity import utcnow
from aspen_secrets.fields import get_bool, get_duration, get_str
from aspen_secrets.logical import Response
from aspen_secrets.store import ABSENT, Store, Write, modify

__all__ = ["revoke", "revoked_answer", "tidy"]


def revoked_answer(revocation_time: int) -> dict[str, Any]:
    """Vault's answer about a revocation time (0 = not revoked)."""
    rfc3339 = (
        datetime.fromtimestamp(revocation_time, UTC).isoformat().replace("+00:00", "Z")
        if revocation_time
        else ""
    )
    return {"revocation_time": revocation_time, "revocation_time_rfc3339": rfc3339}


def _requested_serial(data: Mapping[str, Any]) -> tuple[str, str | None]:
    """The serial to revoke (from ``serial_number`` or a PEM ``certificate``) and that PEM."""
    fields = dict(data)
    serial = get_str(fields, "serial_number", "")
    pem = get_str(fields, "certificate", "")
    if bool(serial) == bool(pem):
        raise InvalidArgumentError("give exactly one of 'serial_number' and 'certificate'")
    if pem:
        return format_serial(parse_cert(pem).serial_number), pem
    return parse_serial(serial or ""), None


async def revoke(store: Store, mount: Mount, data: Mapping[str, Any]) -> Response:
    """``revoke``: add a certificate to the CRL (and rebuild it)."""
    serial, pem = _requested_serial(data)

    async def compute() -> tuple[list[Write], Any]:
        issuer = await require_issuer(store, mount.path)
        if any(format_serial(c.serial_number) == serial for c in issuer.chain):
            raise InvalidArgumentError(
                f"{serial} is the CA's own certificate; it cannot be revoked"
            )
        cert_entry = await store.get(cert_path(serial))
        if cert_entry is None:
            raise InvalidArgumentError(f"certificate with serial {serial} not found")
        if (
            pem is not None
            and parse_cert(pem).serial_number
            != parse_cert(cert_entry.value["certificate"]).serial_number
        ):
            raise InvalidArgumentError("the certificate does not match the stored one")
        snapshot = await read_revocations(store)
        known = snapshot.revoked
        if serial in known:
            return [], (known[serial]["revocation_time"], ())
        now = utcnow()
        if cert_entry.value["not_after"] <= unix(now):
            return [], (0, (f"certificate {serial} has already expired; it was not revoked",))
        if len(known) >= limits.PKI_MAX_REVOKED_CERTS:
            raise ResourceExhaustedError(
                f"{mount.path} already holds {limits.PKI_MAX_REVOKED_CERTS} revocations; "
                "run tidy (tidy_revoked_certs) to drop expired ones"
            )
        record = {
            "revocation_time": unix(now),
            "not_after": cert_entry.value["not_after"],
            "issuer_id": cert_entry.value["issuer_id"],
        }
        writes = [Write(revoked_path(serial), record, expect_revision=ABSENT)]
        add = {serial: unix(now)} if record["issuer_id"] == issuer.issuer_id else {}
        writes.append(crl_write(issuer, now, snapshot, add=add))
        return writes, (unix(now), ())

    when, warnings = await modify(store, compute)
    return Response(
        {**revoked_answer(when), "state": "revoked" if when else "expired"},
        warnings=tuple(warnings),
    )


async def _delete_expired(store: Store, paths: Sequence[str], cutoff: int) -> int:
    """Delete the entries among ``paths`` whose ``not_after`` is before ``cutoff``
    (re-read, so entries changed meanwhile are judged again); how many were deleted."""

    async def compute() -> tuple[list[Write], int]:
        writes = []
        for path in paths:
            entry = await store.get(path)
            if entry is not None and entry.value.get("not_after", 0) < cutoff:
                writes.append(Write(path, delete=True, expect_revision=entry.revision))
        return writes, len(writes)

    return await modify(store, compute)


async def _tidy_prefix(store: Store, prefix: str, cutoff: int, also: str | None) -> int:
    """Tidy the expired entries under ``prefix`` (and, for each, the same serial under
    ``also``) in batches; how many entries under ``prefix`` went."""
    found = await store.scan(prefix, limit=limits.SECRETS_MAX_LIST_KEYS)
    expired = [path for path, entry in found if entry.value.get("not_after", 0) < cutoff]
    removed = 0
    batch = limits.PKI_TIDY_BATCH // 2 if also else limits.PKI_TIDY_BATCH
    for start in range(0, len(expired), batch):
        chunk = expired[start : start + batch]
        removed += await _delete_expired(store, chunk, cutoff)
        if also is not None:
            await _delete_expired(store, [also + p[len(prefix) :] for p in chunk], cutoff)
    return removed


async def tidy(store: Store, mount: Mount, data: Mapping[str, Any]) -> Response:
    """``tidy``: remove certificates (``tidy_cert_store``) and revocations
    (``tidy_revoked_certs``, which also drops them from the CRL) that expired more than
    ``safety_buffer`` ago. Runs to completion before answering (Vault answers 202 and
    works in the background)."""
    fields = dict(data)
    cert_store = get_bool(fields, "tidy_cert_store")
    revoked = get_bool(fields, "tidy_revoked_certs")
    buffer = get_duration(fields, "safety_buffer", limits.PKI_TIDY_DEFAULT_SAFETY_BUFFER_SECONDS)
    if not (cert_store or revoked):
        raise InvalidArgumentError(
            "tidy needs at least one of 'tidy_cert_store' and 'tidy_revoked_certs'"
        )
    now = utcnow()
    cutoff = unix(now - timedelta(seconds=buffer or 0))
    revoked_count = await _tidy_prefix(store, REVOKED, cutoff, CERTS) if revoked else 0
    cert_count = await _tidy_prefix(store, CERTS, cutoff, None) if cert_store else 0
    if revoked_count:
        await rotate_crl(store)
    answer = {
        "safety_buffer": buffer,
        "tidy_cert_store": cert_store,
        "tidy_revoked_certs": revoked,
        "cert_store_deleted_count": cert_count,
        "revoked_cert_deleted_count": revoked_count,
        "state": "Finished",
    }
    return Response(answer, warnings=("Tidy operation finished.",), status=202)
