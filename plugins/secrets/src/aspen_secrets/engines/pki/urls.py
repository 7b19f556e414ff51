"""``config/urls``: the issuing-certificate, CRL and OCSP URLs put into issued certificates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.pki.certs import Urls
from aspen_secrets.fields import get_list
from aspen_secrets.store import ABSENT, Entry, Store, Write, modify

__all__ = ["URLS_PATH", "load_urls", "parse_urls", "update_urls", "urls_json"]

#: Where the URL configuration lives.
URLS_PATH = "config/urls"
_FIELDS = ("issuing_certificates", "crl_distribution_points", "ocsp_servers")


def parse_urls(data: Mapping[str, Any], current: Urls) -> Urls:
    """New URLs from request ``data``; fields it lacks keep their ``current`` value."""
    fields = dict(data)
    values = {}
    for name in _FIELDS:
        urls = get_list(fields, name, list(getattr(current, name)))
        if len(urls) > limits.PKI_MAX_ROLE_LIST_ITEMS:
            raise InvalidArgumentError(
                f"field {name!r} has more than {limits.PKI_MAX_ROLE_LIST_ITEMS} items"
            )
        for url in urls:
            if "://" not in url or len(url) > limits.PKI_MAX_NAME_CHARS:
                raise InvalidArgumentError(f"field {name!r}: {url!r} is not a URL")
        values[name] = tuple(urls)
    return Urls(**values)


def urls_json(urls: Urls) -> dict[str, Any]:
    """The answer of ``config/urls`` (also the stored form)."""
    return {name: list(getattr(urls, name)) for name in _FIELDS} | {"enable_templating": False}


def _urls_of(entry: Entry | None) -> Urls:
    if entry is None:
        return Urls()
    return Urls(**{name: tuple(entry.value.get(name, ())) for name in _FIELDS})


async def load_urls(store: Store) -> Urls:
    """The configured URLs (none by default)."""
    return _urls_of(await store.get(URLS_PATH))


async def update_urls(store: Store, data: Mapping[str, Any]) -> Urls:
    """Apply the fields of ``data`` to the stored URLs (the others are kept), as one
    read-compute-commit expecting the revision read, so concurrent updates both land."""

    async def compute() -> tuple[list[Write], Urls]:
        entry = await store.get(URLS_PATH)
        urls = parse_urls(data, _urls_of(entry))
        expect = entry.revision if entry is not None else ABSENT
        return [Write(URLS_PATH, urls_json(urls), expect_revision=expect)], urls

    return await modify(store, compute)
