"""Client authentication: the root token every connection must present in its hello, and
the node's :class:`~aspen.auth.service.TokenService` that checks it and capability tokens.

A single node without a cluster CA makes a legacy ``aspen_...`` token (plain TCP). A cluster
(``aspen cluster init``, :func:`aspen.transport.join.init_cluster`) writes an
``aspen1.<ca-public-key>.<secret>`` token: clients then use TLS and pin the CA key, and
the server compares only the secret.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aspen.auth.service import REVOKED_PREFIX, TokenService
from aspen.auth.tokens import TokenSigner
from aspen.kv.state_machine import KVStateMachine
from aspen.transport.datadir import ROOT_TOKEN_FILE
from aspen.transport.identity import write_private_file
from aspen.transport.tls import NodeCredentials

__all__ = ["load_or_create_root_token", "revoked_ids", "token_service"]

#: Prefix of generated tokens, so a leaked one is recognisable in logs and scanners.
TOKEN_PREFIX = "aspen_"


def load_or_create_root_token(data_dir: Path) -> str:
    """Return the node's root token, creating ``<data-dir>/root-token`` (0600) on first start."""
    path = data_dir / ROOT_TOKEN_FILE
    if not path.exists():
        write_private_file(path, (TOKEN_PREFIX + secrets.token_urlsafe(32) + "\n").encode())
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty; delete it to have a new root token created")
    return token


def token_service(creds: NodeCredentials, root_token: str, node_id: str) -> TokenService:
    """The node's :class:`~aspen.auth.service.TokenService`: the root token, and capability
    tokens signed with the key derived from the cluster CA key every member holds."""
    if creds.ca.private_key is None:
        raise ValueError("this node's copy of the cluster CA has no key: it cannot check tokens")
    signer = TokenSigner.from_ca(creds.ca.private_key, creds.cluster_id)
    return TokenService(signer, root_token, node_id=node_id)


def revoked_ids(state_machine: KVStateMachine) -> list[str]:
    """Every revoked id in the local state (start-up, after a snapshot), page by page."""
    from aspen.kv.commands import RangeRequest
    from aspen.kv.keys import prefix_end
    from aspen.limits import MAX_RANGE_LIMIT

    ids: list[str] = []
    key, end = REVOKED_PREFIX, prefix_end(REVOKED_PREFIX)
    while True:
        request = RangeRequest(key, end, limit=MAX_RANGE_LIMIT, keys_only=True)
        page = state_machine.range(None, request)
        ids += [kv["key"][len(REVOKED_PREFIX) :].decode("utf-8", "replace") for kv in page["kvs"]]
        if not page.get("more") or not page["kvs"]:
            return ids
        key = page["kvs"][-1]["key"] + b"\0"
