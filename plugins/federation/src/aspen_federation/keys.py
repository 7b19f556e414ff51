"""Where the plugin keeps its state in the cluster (all under ``/_aspen/federation/``)."""

from __future__ import annotations

__all__ = [
    "GRANTS",
    "IDENTITY",
    "PEERS",
    "REQUESTS",
    "SHARES",
    "grants",
    "peer",
    "request",
    "share",
]

ROOT = b"/_aspen/federation/"
#: The sealed cluster key and its identity document.
IDENTITY = ROOT + b"identity"
#: ``peers/<key hex>`` -> a remote cluster's trust record.
PEERS = ROOT + b"peers/"
#: ``requests/<key hex>`` -> a pending trust request (its signed identity document).
REQUESTS = ROOT + b"requests/"
#: ``grants/<key hex>/<token id>`` -> a read token granted to a remote cluster.
GRANTS = ROOT + b"grants/"
#: ``shares/<kind>/<name>`` -> a resource's federation mode and allow-list.
SHARES = ROOT + b"shares/"


def peer(public: bytes) -> bytes:
    """The trust record's key of a remote cluster."""
    return PEERS + public.hex().encode()


def grants(public: bytes) -> bytes:
    """The prefix of the grants made to a remote cluster."""
    return GRANTS + public.hex().encode() + b"/"


def request(public: bytes) -> bytes:
    """The pending trust request's key of a remote cluster."""
    return REQUESTS + public.hex().encode()


def share(resource: str) -> bytes:
    """A resource's share record key (``forge:OWNER/NAME`` -> ``shares/forge/OWNER/NAME``)."""
    kind, _, name = resource.partition(":")
    return SHARES + f"{kind}/{name}".encode()
