"""What the KV v2 engine stores, and how Vault shows it.

Storage layout of a mount (every entry bounded):

* ``config`` — the mount's :class:`Config`;
* ``meta/<path>`` — one :class:`SecretMeta` per secret: its settings, custom metadata and
  the state of every retained version (at most ``limits.KV2_MAX_VERSIONS``);
* ``ver/<path>/<n>`` — the ``data`` map of version ``n`` (gone once the version is
  destroyed or pruned).

Times are integer nanoseconds since the epoch, shown as RFC 3339 with nanoseconds the way
Vault (Go) prints them: ``2018-03-22T02:24:06.945319214Z``, trailing zeros dropped.

"Effective" settings (what the engine *does*): ``max_versions`` is the secret's own
value, else the mount's, else :data:`aspen.limits.KV2_DEFAULT_MAX_VERSIONS`;
``delete_version_after`` is the smaller non-zero one of the secret's and the mount's
(Vault's rule; a negative mount value disables it everywhere). Responses show the
*stored* settings as Vault does (``max_versions: 0`` / ``delete_version_after: "0s"``
when the secret sets none); the effective ``delete_version_after`` shows up as each
version's ``deletion_time``, and the effective ``max_versions`` in ``oldest_version``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aspen_secrets import limits
from aspen_secrets.fields import format_duration

__all__ = [
    "Config",
    "SecretMeta",
    "VersionInfo",
    "format_signed_duration",
    "format_time",
    "meta_key",
    "version_key",
]

_NS = 1_000_000_000


def meta_key(path: str) -> str:
    """Where the metadata of secret ``path`` is stored."""
    return f"meta/{path}"


def version_key(path: str, version: int) -> str:
    """Where the data of version ``version`` of secret ``path`` is stored."""
    return f"ver/{path}/{version}"


def format_time(ns: int | None) -> str:
    """RFC 3339 UTC with up to nine fractional digits, as Go prints it; ``""`` for none."""
    if ns is None:
        return ""
    secs, frac = divmod(ns, _NS)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def format_signed_duration(seconds: int) -> str:
    """Go-style duration text that also shows negative values (``"-1s"``)."""
    return "-" + format_duration(-seconds) if seconds < 0 else format_duration(seconds)


@dataclass(slots=True)
class Config:
    """A mount's settings (``config``): 0 means unset; a negative ``delete_version_after``
    disables automatic deletion for every secret of the mount."""

    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0

    @classmethod
    def from_value(cls, value: Any) -> Config:
        """Rebuild from the stored value (``None`` → defaults)."""
        if not value:
            return cls()
        return cls(value["max_versions"], value["cas_required"], value["delete_version_after"])

    def to_value(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": self.delete_version_after,
        }

    def to_json(self) -> dict[str, Any]:
        """As ``GET config`` shows it."""
        return {
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": format_signed_duration(self.delete_version_after),
        }


@dataclass(slots=True)
class VersionInfo:
    """The state of one version; it reads as deleted once ``deletion_time`` has passed."""

    created_time: int
    deletion_time: int | None = None
    destroyed: bool = False

    def is_deleted(self, now: int) -> bool:
        """Whether the version is soft-deleted at ``now`` (ns)."""
        return self.deletion_time is not None and self.deletion_time <= now

    def is_readable(self, now: int) -> bool:
        """Whether its data can be returned at ``now``."""
        return not self.destroyed and not self.is_deleted(now)

    def to_json(self) -> dict[str, Any]:
        """As the ``versions`` map of ``GET metadata/<path>`` shows it."""
        return {
            "created_time": format_time(self.created_time),
            "deletion_time": format_time(self.deletion_time),
            "destroyed": self.destroyed,
        }


@dataclass(slots=True)
class SecretMeta:
    """Everything about one secret except its data (``meta/<path>``)."""

    created_time: int
    updated_time: int
    current_version: int = 0
    oldest_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None
    versions: dict[int, VersionInfo] = field(default_factory=dict)

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> SecretMeta:
        """Rebuild from the stored value."""
        versions = {
            int(n): VersionInfo(created, deleted, destroyed)
            for n, (created, deleted, destroyed) in value["versions"].items()
        }
        return cls(
            created_time=value["created_time"],
            updated_time=value["updated_time"],
            current_version=value["current_version"],
            oldest_version=value["oldest_version"],
            max_versions=value["max_versions"],
            cas_required=value["cas_required"],
            delete_version_after=value["delete_version_after"],
            custom_metadata=value["custom_metadata"],
            versions=versions,
        )

    def to_value(self) -> dict[str, Any]:
        """The stored form (version numbers as text: msgpack map keys must be strings)."""
        return {
            "created_time": self.created_time,
            "updated_time": self.updated_time,
            "current_version": self.current_version,
            "oldest_version": self.oldest_version,
            "max_versions": self.max_versions,
            "cas_required": self.cas_required,
            "delete_version_after": self.delete_version_after,
            "custom_metadata": self.custom_metadata,
            "versions": {
                str(n): [v.created_time, v.deletion_time, v.destroyed]
                for n, v in self.versions.items()
            },
        }

    def to_json(self) -> dict[str, Any]:
        """As ``GET metadata/<path>`` shows it (stored settings, like Vault)."""
        return {
            "cas_required": self.cas_required,
            "created_time": format_time(self.created_time),
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": format_signed_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": format_time(self.updated_time),
            "versions": {str(n): v.to_json() for n, v in sorted(self.versions.items())},
        }

    def version_json(self, version: int) -> dict[str, Any]:
        """One version's metadata as data reads and writes show it."""
        info = self.versions[version]
        return {
            "created_time": format_time(info.created_time),
            "custom_metadata": self.custom_metadata,
            "deletion_time": format_time(info.deletion_time),
            "destroyed": info.destroyed,
            "version": version,
        }

    def cas_required_by(self, config: Config) -> bool:
        """Whether writes must carry ``options.cas`` (secret or mount says so)."""
        return self.cas_required or config.cas_required

    def effective_max_versions(self, config: Config) -> int:
        """Versions kept: the secret's setting, else the mount's, else Vault's default."""
        return self.max_versions or config.max_versions or limits.KV2_DEFAULT_MAX_VERSIONS

    def effective_delete_after(self, config: Config) -> int:
        """Seconds a new (or undeleted) version lives before it reads as deleted; 0 = never."""
        if config.delete_version_after < 0:
            return 0
        candidates = [s for s in (self.delete_version_after, config.delete_version_after) if s]
        return min(candidates, default=0)

    def deletion_time_from(self, start: int, config: Config) -> int | None:
        """When a version made live at ``start`` (ns) becomes deleted, if ever."""
        after = self.effective_delete_after(config)
        return start + after * _NS if after else None

    def add_version(self, now: int, config: Config) -> tuple[int, list[int]]:
        """Record a new version created at ``now``; drop the ones beyond the effective
        ``max_versions``. Returns the new number and the dropped numbers whose data
        entries still exist (to delete in the same commit)."""
        number = self.current_version + 1
        self.current_version = number
        self.versions[number] = VersionInfo(now, self.deletion_time_from(now, config))
        self.updated_time = now
        first_kept = number - self.effective_max_versions(config) + 1
        dropped: list[int] = []
        if first_kept > self.oldest_version:
            for old in sorted(n for n in self.versions if n < first_kept):
                if not self.versions.pop(old).destroyed:
                    dropped.append(old)
            self.oldest_version = first_kept
        return number, dropped
