"""Issues as op logs: what each op means (:func:`apply`, pure) and what it may carry
(:func:`check`, against the current state).

Ops: ``create {title, body, labels}``, ``comment {body}``, ``edit {title?, body?}``,
``label {add, remove}``, ``assign {add, remove}``, ``close {reason}`` (``completed``,
``not_planned``, ``duplicate``), ``reopen {}``. An op that does not fit the state it is
folded onto (a second ``close``, which two clusters may both propose) changes nothing.
"""

from __future__ import annotations

from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_forge import limits
from aspen_forge.collab import fields, thread
from aspen_forge.collab.fields import StateError
from aspen_forge.collab.oplog import Op

__all__ = ["CLOSE_REASONS", "KIND", "OP_TYPES", "apply", "check", "initial", "summary"]

#: The object kind (keys, events: ``forge.issue``).
KIND = "issue"
#: Why an issue may be closed.
CLOSE_REASONS = ("completed", "not_planned", "duplicate")
#: The op types an issue's log holds.
OP_TYPES = ("create", "comment", "edit", "label", "assign", "close", "reopen")


def initial(number: int) -> dict[str, Any]:
    """The state before any op."""
    return thread.initial(number, close_reason="", labels=[], assignees=[])


def _change_set(current: list[str], body: dict[str, Any]) -> list[str]:
    return sorted((set(current) | set(body.get("add", ()))) - set(body.get("remove", ())))


def apply(state: dict[str, Any], op: Op) -> dict[str, Any]:
    """``state`` after ``op`` (mutated in place and returned)."""
    body, kind = op.body, op.type
    if kind == "create":
        if state["state"]:
            return state
        state.update(
            title=body.get("title", ""),
            body=body.get("body", ""),
            labels=sorted(body.get("labels", ())),
            state="open",
            author=op.actor,
            created=op.time,
        )
    elif not state["state"]:
        return state  # nothing applies before the issue exists
    elif kind in thread.OP_TYPES:
        thread.apply(state, op)
    elif kind == "label":
        state["labels"] = _change_set(state["labels"], body)
    elif kind == "assign":
        state["assignees"] = _change_set(state["assignees"], body)
    elif kind == "close" and state["state"] == "open":
        state.update(state="closed", close_reason=body.get("reason", "completed"))
    elif kind == "reopen" and state["state"] == "closed":
        state.update(state="open", close_reason="")
    else:
        return state
    return thread.touched(state, op)


def check(state: dict[str, Any], kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The validated body of a new ``kind`` op on ``state`` (typed errors otherwise)."""
    if kind == "create":
        return {
            "title": fields.title(body.get("title")),
            "body": fields.text(body.get("body"), "body"),
            "labels": fields.names(body.get("labels"), "labels"),
        }
    if kind in thread.OP_TYPES:
        return thread.check(kind, body)
    if kind in ("label", "assign"):
        field = "labels" if kind == "label" else "assignees"
        add, remove = fields.names(body.get("add"), field), fields.names(body.get("remove"), field)
        if len(_change_set(state[field], {"add": add, "remove": remove})) > limits.MAX_LABELS:
            raise InvalidArgumentError(
                f"too many {field}: over MAX_LABELS ({limits.MAX_LABELS})", field=field
            )
        return {"add": add, "remove": remove}
    if kind == "close":
        if state["state"] != "open":
            raise StateError(f"issue #{state['number']} is {state['state']} already")
        reason = body.get("reason") or "completed"
        if reason not in CLOSE_REASONS:
            raise InvalidArgumentError(
                f"close reason is one of {', '.join(CLOSE_REASONS)}", field="reason"
            )
        return {"reason": reason}
    if kind == "reopen":
        if state["state"] != "closed":
            raise StateError(f"issue #{state['number']} is {state['state']}, not closed")
        return {}
    raise InvalidArgumentError(f"unknown issue op {kind!r}", field="type")


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """What a list shows: the state without its comments (their count instead)."""
    out = {k: v for k, v in state.items() if k not in ("comments", "body")}
    out["comment_count"] = len(state["comments"])
    return out
