"""Where forge changes are published for automation (hooks, CI).

The durable event journal is a core primitive being built separately; until it is merged,
:func:`push_event_ops` is the one place a push publishes ``forge.push``. It returns the
txn ops to add to the push's own ref-update transaction (so the event commits with the
change it reports, or not at all); today that is nothing.

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


def push_event_ops(repo: Repo, pusher: str, updates: list[RefUpdate]) -> list[dict[str, Any]]:
    """The txn ops that publish ``forge.push`` for ``updates`` in the push's own commit.

    TODO(events): return ``node.events`` journal ops (name ``PUSH_EVENT``, subject
    ``repo.full``, payload :func:`push_payload`) once the core journal lands."""
    return []
