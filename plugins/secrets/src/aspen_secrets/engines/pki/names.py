"""Which names a role lets a certificate carry (Vault's policy, rule by rule).

A name is a DNS name (possibly a wildcard, ``*.example.com``) or an email address (its
domain is what is checked). In order:

1. ``enforce_hostnames``: the (domain part of the) name must be a valid hostname, and a
   wildcard must be a whole or partial first label (``*.a.com``, ``w*.a.com``).
   Wildcards need ``allow_wildcard_certificates``; emails cannot be wildcards.
2. ``allow_any_name`` allows everything else.
3. ``allow_localhost``: ``localhost``/``localdomain`` (and their subdomains with
   ``allow_subdomains``).
4. Each of ``allowed_domains``: ``allow_bare_domains`` allows the domain itself;
   ``allow_subdomains`` allows ``<anything>.<domain>`` (and ``*.<domain>``);
   ``allow_glob_domains`` lets a domain with ``*`` match as a glob (``*`` spans dots).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits

__all__ = ["NamePolicy", "check_names", "is_valid_hostname", "uri_allowed"]

_LABEL = r"(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?", re.IGNORECASE)
_WILDCARD_LABEL = re.compile(r"[a-z0-9\-*]+", re.IGNORECASE)
_LOCAL = ("localhost", "localdomain")


@dataclass(frozen=True, slots=True)
class NamePolicy:
    """The name fields of a role."""

    allowed_domains: tuple[str, ...] = ()
    allow_bare_domains: bool = False
    allow_subdomains: bool = False
    allow_glob_domains: bool = False
    allow_wildcard_certificates: bool = True
    allow_localhost: bool = True
    allow_any_name: bool = False
    enforce_hostnames: bool = True


def is_valid_hostname(name: str, *, allow_wildcard: bool = False) -> bool:
    """Whether ``name`` is a syntactically valid DNS name (IDNA names are converted first;
    ``allow_wildcard`` accepts a leading ``*.``)."""
    if allow_wildcard and name.startswith("*."):
        name = name[2:]
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_name) <= 253 and _HOSTNAME.fullmatch(ascii_name) is not None


@dataclass(frozen=True, slots=True)
class _Parsed:
    name: str
    reduced: str  # the domain being judged (an email's domain, a wildcard's base)
    is_email: bool
    wildcard_label: str | None


def _parse(name: str) -> _Parsed | None:
    reduced, is_email = name.lower(), False
    if "@" in reduced:
        parts = reduced.split("@")
        if len(parts) != 2 or not parts[0]:
            return None
        reduced, is_email = parts[1], True
    label = None
    if "*" in reduced:
        label, dot, rest = reduced.partition(".")
        if not dot or "*" in rest or label.count("*") != 1 or is_email:
            return None
        reduced = rest
    return _Parsed(name, reduced, is_email, label)


def _allowed(p: _Parsed, policy: NamePolicy) -> bool:
    if p.wildcard_label is not None and not policy.allow_wildcard_certificates:
        return False
    if policy.enforce_hostnames:
        if p.reduced and not is_valid_hostname(p.reduced):
            return False
        if p.wildcard_label is not None and not _WILDCARD_LABEL.fullmatch(p.wildcard_label):
            return False
    if policy.allow_any_name:
        return True
    wildcard = p.wildcard_label is not None
    if policy.allow_localhost:
        if not wildcard and p.reduced in _LOCAL:
            return True
        if policy.allow_subdomains and any(
            p.reduced.endswith("." + local) or (wildcard and p.reduced == local) for local in _LOCAL
        ):
            return True
    full = p.name.lower()
    for domain in (d.lower() for d in policy.allowed_domains if d):
        if policy.allow_bare_domains and (full == domain or (p.is_email and p.reduced == domain)):
            return True
        if policy.allow_subdomains and (
            p.reduced.endswith("." + domain) or (wildcard and p.reduced == domain)
        ):
            return True
        if policy.allow_glob_domains and "*" in domain and _glob(domain, full):
            return True
    return False


def _glob(pattern: str, name: str) -> bool:
    """Vault's glob: ``*`` matches any run of characters (dots included); nothing else is
    special."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def check_names(names: Iterable[str], policy: NamePolicy, what: str = "name") -> None:
    """Raise ``invalid_argument`` naming the first name the policy does not allow
    (``what`` says which kind it is: ``common name``, ``subject alternative name``)."""
    for name in names:
        if len(name) > limits.PKI_MAX_NAME_CHARS:
            raise InvalidArgumentError(
                f"name is longer than {limits.PKI_MAX_NAME_CHARS} characters"
            )
        parsed = _parse(name)
        if parsed is None or not _allowed(parsed, policy):
            raise InvalidArgumentError(f"{what} {name} not allowed by this role")


def uri_allowed(uri: str, patterns: Iterable[str]) -> bool:
    """Whether a URI SAN matches one of a role's ``allowed_uri_sans`` globs."""
    return any(_glob(pattern, uri) for pattern in patterns)
