"""Membership changes: their entry encoding and what each one does to a ``ConfState``.

Changes are one at a time (no joint consensus): add a learner, promote a learner to voter,
remove a member. They take effect when the driver *applies* the CONF_CHANGE entry
(``RawNode.apply_conf_change``), on every node in log order, so every node walks through
the same sequence of configurations.

Entry data is the msgpack array ``[type, node_id, context]``.
"""

from __future__ import annotations

import msgpack

from aspen.raft.types import ConfChange, ConfChangeType, ConfState

__all__ = ["apply_to_conf", "conf_change_problem", "decode_conf_change", "encode_conf_change"]


def encode_conf_change(change: ConfChange) -> bytes:
    """ConfChange -> CONF_CHANGE entry data."""
    data: bytes = msgpack.packb(
        [change.type.value, change.node_id, change.context], use_bin_type=True
    )
    return data


def decode_conf_change(data: bytes) -> ConfChange:
    """CONF_CHANGE entry data -> ConfChange; ``ValueError`` when malformed."""
    try:
        kind, node_id, context = msgpack.unpackb(data, raw=False)
        change = ConfChange(ConfChangeType(kind), node_id, context)
    except Exception as exc:
        raise ValueError(f"malformed conf change entry: {exc}") from None
    if not isinstance(node_id, str) or not isinstance(context, bytes):
        raise ValueError("malformed conf change entry: bad node id or context")
    return change


def conf_change_problem(conf: ConfState, change: ConfChange) -> str | None:
    """Why ``change`` cannot apply to ``conf`` (None when it can)."""
    if not isinstance(change, ConfChange) or not isinstance(change.type, ConfChangeType):
        return "not a ConfChange"
    node = change.node_id
    if not isinstance(node, str) or not node:
        return "the node id must be a non-empty string"
    if change.type == ConfChangeType.ADD_LEARNER:
        if node in conf.voters:
            return f"{node} is already a voter"
        if node in conf.learners:
            return f"{node} is already a learner"
    elif change.type == ConfChangeType.PROMOTE:
        if node not in conf.learners:
            return f"{node} is not a learner (add it as a learner first)"
    elif node in conf.voters:
        if len(conf.voters) == 1:
            return f"{node} is the last voter; removing it would leave no quorum"
    elif node not in conf.learners:
        return f"{node} is not a member"
    return None


def apply_to_conf(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after ``change`` (which must pass :func:`conf_change_problem`)."""
    voters, learners = set(conf.voters), set(conf.learners)
    node = change.node_id
    if change.type == ConfChangeType.ADD_LEARNER:
        learners.add(node)
    elif change.type == ConfChangeType.PROMOTE:
        learners.discard(node)
        voters.add(node)
    else:
        voters.discard(node)
        learners.discard(node)
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
