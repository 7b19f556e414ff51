"""Certificate subjects from Vault's fields (``common_name``, ``organization``, ``ou``…)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.fields import get_list

__all__ = ["SUBJECT_FIELDS", "build_subject", "read_subject_fields"]

#: Vault's subject fields (lists of strings) and their X.509 attributes, in subject order.
SUBJECT_FIELDS: dict[str, x509.ObjectIdentifier] = {
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "street_address": NameOID.STREET_ADDRESS,
    "postal_code": NameOID.POSTAL_CODE,
    "organization": NameOID.ORGANIZATION_NAME,
    "ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
}


def read_subject_fields(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """The subject fields of a request (each a list, possibly empty)."""
    found = {}
    for name in SUBJECT_FIELDS:
        values = get_list(dict(data), name)
        if len(values) > limits.PKI_MAX_ROLE_LIST_ITEMS:
            raise InvalidArgumentError(
                f"field {name!r} has more than {limits.PKI_MAX_ROLE_LIST_ITEMS} items"
            )
        found[name] = values
    return found


def build_subject(common_name: str, fields: Mapping[str, Sequence[str]]) -> x509.Name:
    """The subject: the fields in order, then the CN (if any). Values X.509 does not
    accept (a CN over 64 characters, a country that is not two letters) are a 400."""
    attributes = []
    try:
        for name, oid in SUBJECT_FIELDS.items():
            for value in fields.get(name, ()):
                attributes.append(x509.NameAttribute(oid, value))
        if common_name:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid subject: {exc}") from None
    return x509.Name(attributes)
