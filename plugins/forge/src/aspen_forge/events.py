"""Where forge changes are published for automation (hooks, CI).

:func:`push_event_ops` is the one place a push publishes ``forge.push`` to the core's
durable event journal (docs/events.md). It returns the txn op to add to the push's own
ref-update transaction, so the event commits with the change it reports, or not at all;
hooks then match it with ``--on 'forge.push:OWNER/*'``.

Event ``forge.push``, subject ``<owner>/<name>``, payload ``{"repo", "pusher",
"updates": [{"ref", "old", "new"}]}`` (ids as 40-hex strings, ``0`` * 40 for
absent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aspen_forge.refs import RefUpdate
    from aspen_forge.repos import Repo

__all__ = ["PUSH_EVENT", "push_event_ops", "push_payload"]

#: The name of the event a push publishes.
PUSH_EVENT = "forge.push"


def push_payload(repo: Repo, pusher: str, updates: list[RefUpdate]) -> dict[str, Any]:
    """The payload of a ``forge.push`` event for ``updates`` of ``repo``."""
    return {
        "repo": repo.full,
        "pusher": pusher,
        "updates": [
            {"ref": u.ref.decode(errors="replace"), "old": u.old.decode(), "new": u.new.decode()}
            for u in updates
        ],
    }


def push_event_ops(
    events: Any, repo: Repo, pusher: str, updates: list[RefUpdate]
) -> list[dict[str, Any]]:
    """The txn op that publishes ``forge.push`` for ``updates`` in the push's own commit
    (``events`` is the node's ``node.events``)."""
    return [events.op(PUSH_EVENT, repo.full, push_payload(repo, pusher, updates))]
