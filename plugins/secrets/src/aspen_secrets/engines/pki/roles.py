"""PKI roles: the fields Vault's ``roles/<name>`` takes, their defaults, and validation.

A role is stored as the plain dict :func:`parse_role` returns (every field present), so
reading it back is exactly Vault's role answer. A WRITE replaces the role (missing fields
take their defaults); a PATCH overlays the fields given on the stored role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.pki.keys import key_spec
from aspen_secrets.engines.pki.names import NamePolicy
from aspen_secrets.engines.pki.subject import SUBJECT_FIELDS, build_subject
from aspen_secrets.engines.pki.usage import (
    DEFAULT_KEY_USAGE,
    check_ext_key_usage,
    check_key_usage,
)
from aspen_secrets.fields import get_bool, get_duration, get_int, get_list, get_str

__all__ = ["check_role_name", "name_policy", "parse_role"]

_BOOLS: dict[str, bool] = {
    "allow_localhost": True,
    "allow_bare_domains": False,
    "allow_subdomains": False,
    "allow_glob_domains": False,
    "allow_wildcard_certificates": True,
    "allow_any_name": False,
    "enforce_hostnames": True,
    "allow_ip_sans": True,
    "server_flag": True,
    "client_flag": True,
    "code_signing_flag": False,
    "email_protection_flag": False,
    "use_csr_common_name": True,
    "use_csr_sans": True,
    "generate_lease": False,
    "no_store": False,
    "require_cn": True,
    "basic_constraints_valid_for_non_ca": False,
}
_LISTS: dict[str, tuple[str, ...]] = {
    "allowed_domains": (),
    "allowed_uri_sans": (),
    "key_usage": DEFAULT_KEY_USAGE,
    "ext_key_usage": (),
    **{name: () for name in SUBJECT_FIELDS},
}
_DURATIONS: dict[str, int] = {"ttl": 0, "max_ttl": 0, "not_before_duration": 30}
_INTS: dict[str, int] = {"key_bits": 0, "signature_bits": 0}
_KEY_TYPES = ("rsa", "ec", "ed25519", "any")
_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")


def check_role_name(name: str) -> str:
    """A role name: letters, digits, ``_.@-``, bounded length."""
    if len(name) > limits.PKI_MAX_ROLE_NAME_CHARS or not _ROLE_NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"invalid role name {name!r}: use letters, digits and '_.@-' "
            f"(at most {limits.PKI_MAX_ROLE_NAME_CHARS} characters)"
        )
    return name


def parse_role(data: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stored form of a role from request ``data``; fields ``data`` lacks come from
    ``base`` (PATCH) or the defaults (WRITE)."""
    fields = dict(data)
    defaults: dict[str, Any] = {
        **_BOOLS,
        **{k: list(v) for k, v in _LISTS.items()},
        **_DURATIONS,
        **_INTS,
        "key_type": "rsa",
    }
    if base is not None:
        defaults.update(base)
    role: dict[str, Any] = {}
    for name in _BOOLS:
        role[name] = get_bool(fields, name, defaults[name])
    for name in _LISTS:
        values = get_list(fields, name, defaults[name])
        if len(values) > limits.PKI_MAX_ROLE_LIST_ITEMS:
            raise InvalidArgumentError(
                f"field {name!r} has more than {limits.PKI_MAX_ROLE_LIST_ITEMS} items"
            )
        role[name] = values
    for name in _DURATIONS:
        role[name] = get_duration(fields, name, defaults[name])
    for name in _INTS:
        role[name] = get_int(fields, name, defaults[name], min=0)
    role["key_type"] = get_str(fields, "key_type", defaults["key_type"], choices=_KEY_TYPES)
    _validate(role)
    return role


def _validate(role: dict[str, Any]) -> None:
    if role["key_type"] != "any":
        role["key_bits"] = key_spec(role["key_type"], role["key_bits"]).bits
    build_subject("", {name: role[name] for name in SUBJECT_FIELDS})  # e.g. country = 2 letters
    check_key_usage(role["key_usage"])
    check_ext_key_usage(role["ext_key_usage"])
    for name in ("ttl", "max_ttl"):
        if role[name] > limits.PKI_MAX_TTL_SECONDS:
            raise InvalidArgumentError(
                f"field {name!r} is longer than {limits.PKI_MAX_TTL_SECONDS} seconds"
            )
    if role["max_ttl"] and role["ttl"] > role["max_ttl"]:
        raise InvalidArgumentError("ttl cannot be larger than max_ttl")


def name_policy(role: Mapping[str, Any]) -> NamePolicy:
    """The name rules of a stored role."""
    return NamePolicy(
        allowed_domains=tuple(role["allowed_domains"]),
        allow_bare_domains=role["allow_bare_domains"],
        allow_subdomains=role["allow_subdomains"],
        allow_glob_domains=role["allow_glob_domains"],
        allow_wildcard_certificates=role["allow_wildcard_certificates"],
        allow_localhost=role["allow_localhost"],
        allow_any_name=role["allow_any_name"],
        enforce_hostnames=role["enforce_hostnames"],
    )
