"""When a new certificate is valid: the TTL asked (or the default), capped by the maximum
TTL and by the issuing CA's own expiry (each cap adds a warning, as Vault does)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.fields import format_duration, get_duration, get_str, parse_duration

__all__ = ["Validity", "mount_max_ttl", "utcnow", "validity"]


def utcnow() -> datetime:
    """The current time, in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(slots=True)
class Validity:
    """A certificate's validity window and the warnings computing it produced."""

    not_before: datetime
    not_after: datetime
    warnings: list[str] = field(default_factory=list)


def mount_max_ttl(config: Mapping[str, Any]) -> int:
    """A mount's maximum TTL: its ``max_lease_ttl`` setting, else the PKI default."""
    value = config.get("max_lease_ttl")
    seconds = parse_duration(value, "max_lease_ttl") if value not in (None, "", 0) else 0
    return seconds or limits.PKI_DEFAULT_MAX_TTL_SECONDS


def validity(
    data: Mapping[str, Any],
    *,
    now: datetime,
    default_ttl: int,
    max_ttl: int,
    ca_not_after: datetime | None,
    not_before_skew: int = limits.PKI_NOT_BEFORE_SKEW_SECONDS,
) -> Validity:
    """The window for a request's ``ttl`` (or RFC 3339 ``not_after``) field."""
    fields = dict(data)
    ttl = get_duration(fields, "ttl", 0) or default_ttl or limits.PKI_DEFAULT_TTL_SECONDS
    if ttl > limits.PKI_MAX_TTL_SECONDS:
        raise InvalidArgumentError(f"ttl is longer than {limits.PKI_MAX_TTL_SECONDS} seconds")
    not_after = now + timedelta(seconds=ttl)
    explicit = get_str(fields, "not_after", "")
    if explicit:
        not_after = _parse_time(explicit)
        if not_after <= now:
            raise InvalidArgumentError("not_after must be in the future")
    warnings: list[str] = []
    if max_ttl and not_after > now + timedelta(seconds=max_ttl):
        warnings.append(
            f"TTL {format_duration(int((not_after - now).total_seconds()))} is longer than "
            f"the maximum TTL {format_duration(max_ttl)}, so the maximum is used"
        )
        not_after = now + timedelta(seconds=max_ttl)
    if ca_not_after is not None:
        if ca_not_after <= now:
            raise InvalidArgumentError(f"the CA certificate expired at {ca_not_after.isoformat()}")
        if not_after > ca_not_after:
            warnings.append(
                f"the requested expiry is past the CA certificate's "
                f"({ca_not_after.isoformat()}), so it was cut to the CA's"
            )
            not_after = ca_not_after
    return Validity(now - timedelta(seconds=not_before_skew), not_after, warnings)


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgumentError(f"not_after {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
