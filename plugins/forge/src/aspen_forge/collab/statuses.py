"""Commit statuses: one record per (commit, context) — what CI says about a commit.

``status/<repo id>/<commit>/<context>`` holds ``{context, state, description, target_url,
actor, time}``; a new status for the same context replaces the old one. Setting one
publishes ``forge.status`` (subject ``owner/name``) in the same transaction. Branch
protection's ``required_status`` asks each listed context to be ``success`` on the commit
a merge lands.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgpack

from aspen.client.leader import LeaderCaller
from aspen.errors import InvalidArgumentError, ResourceExhaustedError
from aspen.kv import paging
from aspen_forge import keys, limits
from aspen_forge.collab import fields
from aspen_forge.repos import Repo

__all__ = ["STATES", "STATUS_EVENT", "list_statuses", "set_status", "validate_commit"]

#: The states a status may be in.
STATES = ("pending", "success", "failure", "error")
#: The event setting a status publishes.
STATUS_EVENT = "forge.status"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def validate_commit(commit: Any) -> str:
    """A 40-hex commit id (lower-cased)."""
    if not isinstance(commit, str) or not _HEX40.match(commit.lower()):
        raise InvalidArgumentError("commit is a 40-hex object id", field="commit")
    return commit.lower()


async def list_statuses(node: Any, repo: Repo, commit: str) -> list[dict[str, Any]]:
    """Every status of ``commit``, by context."""
    records, _, _ = await paging.collect(
        node.call,
        keys.status_prefix(repo.id, validate_commit(commit)),
        most=limits.MAX_STATUSES_PER_COMMIT,
        local=True,
    )
    return [msgpack.unpackb(kv["value"], raw=False) for kv in records]


async def set_status(
    node: Any,
    writer: LeaderCaller,
    repo: Repo,
    commit: str,
    context: str,
    state: str,
    actor: str,
    *,
    description: str = "",
    target_url: str = "",
) -> dict[str, Any]:
    """Record ``state`` for (``commit``, ``context``); the record written."""
    commit = validate_commit(commit)
    context = fields.text(
        context, "context", limits.MAX_STATUS_CONTEXT_BYTES, name="MAX_STATUS_CONTEXT_BYTES"
    ).strip()
    if not context or any(ord(c) < 0x20 for c in context):
        raise InvalidArgumentError("a status context is a non-empty line", field="context")
    if state not in STATES:
        raise InvalidArgumentError(f"status state is one of {', '.join(STATES)}", field="state")
    record = {
        "commit": commit,
        "context": context,
        "state": state,
        "description": fields.text(
            description, "description", limits.MAX_STATUS_TEXT_BYTES, name="MAX_STATUS_TEXT_BYTES"
        ),
        "target_url": fields.text(
            target_url, "target_url", limits.MAX_STATUS_TEXT_BYTES, name="MAX_STATUS_TEXT_BYTES"
        ),
        "actor": actor,
        "time": time.time(),
    }
    existing = await list_statuses(node, repo, commit)
    if len(existing) >= limits.MAX_STATUSES_PER_COMMIT and context not in {
        s["context"] for s in existing
    }:
        raise ResourceExhaustedError(
            f"commit {commit} has MAX_STATUSES_PER_COMMIT ({limits.MAX_STATUSES_PER_COMMIT}) "
            "contexts"
        )
    payload = {k: record[k] for k in ("commit", "context", "state", "actor")}
    await writer.call(
        "kv.txn",
        {
            "compare": [],
            "success": [
                {
                    "put": {
                        "key": keys.status_key(repo.id, commit, context),
                        "value": msgpack.packb(record, use_bin_type=True),
                    }
                },
                node.events.op(STATUS_EVENT, repo.full, {"repo": repo.full, **payload}),
            ],
            "failure": [],
        },
    )
    return record
