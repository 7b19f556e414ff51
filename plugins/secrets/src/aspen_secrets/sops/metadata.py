"""The ``sops`` metadata section: what it holds, which values are encrypted, and the
flat ``key__list_0__map_field`` form the dotenv and INI stores use.

Exactly one rule decides which values are encrypted (SOPS defaults to
``unencrypted_suffix: _unencrypted``); a rule applies to a value when it applies to any key
on its path: ``unencrypted_suffix``/``unencrypted_regex`` leave it in clear text,
``encrypted_suffix``/``encrypted_regex`` encrypt only such values. Regexes are searched,
not anchored (Go's ``regexp.Match``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aspen_secrets.sops.age import AgeStanza
from aspen_secrets.sops.errors import SopsError

__all__ = [
    "DEFAULT_UNENCRYPTED_SUFFIX",
    "FORMAT_VERSION",
    "MAC_ONLY_ENCRYPTED_INIT",
    "Metadata",
    "flatten_metadata",
    "format_lastmodified",
    "unflatten_metadata",
]

#: The suffix SOPS leaves in clear text when a file names no rule.
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
#: The SOPS version written into files we encrypt (the format ``mac_only_encrypted`` needs).
FORMAT_VERSION = "3.9.0"
#: The bytes the MAC starts with when ``mac_only_encrypted`` is set: sha256(b"sops").
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()

_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
_UNSUPPORTED = ("unencrypted_comment_regex", "encrypted_comment_regex")
_MAP_SEP = "__map_"
_LIST_SEP = "__list_"


def format_lastmodified(moment: datetime) -> str:
    """``moment`` as Go's ``time.RFC3339`` layout: whole seconds, ``Z`` for UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_lastmodified(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or "T" not in value:
        raise SopsError("sops metadata: 'lastmodified' is not an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SopsError("sops metadata: 'lastmodified' is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise SopsError("sops metadata: 'lastmodified' has no time zone")
    return moment


def _str_field(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SopsError(f"sops metadata: {name!r} is not a string")
    return value


def _age_stanzas(entries: Any, where: str) -> list[AgeStanza]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise SopsError(f"sops metadata: {where} is not a list")
    stanzas = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise SopsError(f"sops metadata: an entry of {where} is not a map")
        recipient, enc = entry.get("recipient"), entry.get("enc")
        if not isinstance(recipient, str) or not isinstance(enc, str):
            raise SopsError(f"sops metadata: an entry of {where} lacks 'recipient' or 'enc'")
        stanzas.append((recipient, enc))
    return stanzas


def _key_stanzas(raw: dict[str, Any]) -> list[AgeStanza]:
    stanzas = _age_stanzas(raw.get("age"), "'age'")
    groups = raw.get("key_groups")
    if stanzas or not groups:
        return stanzas
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
        raise SopsError("sops metadata: several key groups (Shamir sharing) are not supported")
    return _age_stanzas(groups[0].get("age"), "'key_groups[0].age'")


@dataclass
class Metadata:
    """The ``sops`` section of a file, as far as age-based SOPS needs it."""

    age: list[AgeStanza]
    lastmodified: datetime
    mac: str
    rule: str = "unencrypted_suffix"
    pattern: str = DEFAULT_UNENCRYPTED_SUFFIX
    mac_only_encrypted: bool = False
    version: str = FORMAT_VERSION
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise SopsError(f"unknown SOPS encryption rule {self.rule!r}")
        if self.rule.endswith("_regex"):
            try:
                self._regex = re.compile(self.pattern)
            except re.error as exc:
                raise SopsError(f"sops metadata: bad {self.rule} {self.pattern!r}: {exc}") from None

    @classmethod
    def from_raw(cls, raw: Any) -> Metadata:
        """Validate the (unflattened) ``sops`` map of a file."""
        if not isinstance(raw, dict):
            raise SopsError("sops metadata is not a map")
        for name in _UNSUPPORTED:
            if raw.get(name):
                raise SopsError(f"sops metadata: {name} is not supported")
        rules = [(name, _str_field(raw, name)) for name in _RULES if _str_field(raw, name)]
        if len(rules) > 1:
            raise SopsError("sops metadata: more than one of " + ", ".join(_RULES))
        rule, pattern = rules[0] if rules else ("unencrypted_suffix", DEFAULT_UNENCRYPTED_SUFFIX)
        if not isinstance(raw.get("mac"), str) or not raw["mac"]:
            raise SopsError("sops metadata: no 'mac'")
        mac_only = raw.get("mac_only_encrypted", False)
        if isinstance(mac_only, str):
            mac_only = mac_only == "true"
        if not isinstance(mac_only, bool):
            raise SopsError("sops metadata: 'mac_only_encrypted' is not a boolean")
        return cls(
            age=_key_stanzas(raw),
            lastmodified=_parse_lastmodified(raw.get("lastmodified")),
            mac=raw["mac"],
            rule=rule,
            pattern=pattern,
            mac_only_encrypted=mac_only,
            version=str(raw.get("version") or ""),
        )

    @property
    def mac_aad(self) -> str:
        """The additional data of the encrypted MAC: ``lastmodified`` in RFC 3339."""
        return format_lastmodified(self.lastmodified)

    def encrypts(self, path: Sequence[str]) -> bool:
        """Whether the value at ``path`` (its keys, outermost first) is encrypted."""
        if self.rule == "unencrypted_suffix":
            return not any(key.endswith(self.pattern) for key in path)
        if self.rule == "encrypted_suffix":
            return any(key.endswith(self.pattern) for key in path)
        assert self._regex is not None
        matched = any(self._regex.search(key) for key in path)
        return matched if self.rule == "encrypted_regex" else not matched

    def to_raw(self) -> dict[str, Any]:
        """The ``sops`` map as written into a YAML or JSON file."""
        raw: dict[str, Any] = {
            "age": [{"recipient": r, "enc": enc} for r, enc in self.age],
            "lastmodified": self.mac_aad,
            "mac": self.mac,
            self.rule: self.pattern,
        }
        if self.mac_only_encrypted:
            raw["mac_only_encrypted"] = True
        raw["version"] = self.version
        return raw


def flatten_metadata(raw: dict[str, Any]) -> dict[str, str]:
    """``raw`` flattened as the dotenv/INI stores write it: nested keys joined with
    ``__map_<key>`` and ``__list_<index>``, newlines as ``\\n``, booleans as text."""
    flat: dict[str, str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}{_MAP_SEP}{key}" if prefix else key, item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(f"{prefix}{_LIST_SEP}{index}", item)
        elif isinstance(value, bool):
            flat[prefix] = "true" if value else "false"
        elif value is not None:
            flat[prefix] = str(value).replace("\n", "\\n")

    visit("", raw)
    return flat


_TOKEN_RE = re.compile(r"(__map_|__list_)")


def unflatten_metadata(flat: dict[str, str]) -> dict[str, Any]:
    """The inverse of :func:`flatten_metadata` (``\\n`` decoded back to newlines)."""
    root: dict[str, Any] = {}
    for name, value in flat.items():
        parts = _TOKEN_RE.split(name)
        tokens: list[str | int] = [parts[0]]
        for sep, token in zip(parts[1::2], parts[2::2], strict=True):
            if sep == _LIST_SEP:
                if not token.isdigit() or int(token) > 1000:
                    raise SopsError(f"sops metadata: bad flattened key {name!r}")
                tokens.append(int(token))
            else:
                tokens.append(token)
        node: Any = root
        for token, following in zip(tokens, [*tokens[1:], None], strict=True):
            leaf = value.replace("\\n", "\n") if following is None else None
            empty: Any = [] if isinstance(following, int) else {}
            if isinstance(token, int):
                if not isinstance(node, list):
                    raise SopsError(f"sops metadata: bad flattened key {name!r}")
                node.extend([None] * (token + 1 - len(node)))
                if following is None:
                    node[token] = leaf
                elif node[token] is None:
                    node[token] = empty
                node = node[token]
            else:
                if not isinstance(node, dict):
                    raise SopsError(f"sops metadata: bad flattened key {name!r}")
                if following is None:
                    node[token] = leaf
                else:
                    node = node.setdefault(token, empty)
    return root
