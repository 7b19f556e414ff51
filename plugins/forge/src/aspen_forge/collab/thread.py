"""What issues and patches share: their discussion thread (the fields of :func:`initial`),
the ``comment {body}`` and ``edit {title?, body?}`` ops (checked by :func:`check`, folded by
:func:`apply`), and the bookkeeping every applied op does (:func:`touched`)."""

from __future__ import annotations

from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_forge.collab import fields
from aspen_forge.collab.oplog import Op

__all__ = ["OP_TYPES", "apply", "check", "initial", "touched"]

#: The op types this module checks and applies.
OP_TYPES = ("comment", "edit")


def initial(number: int, **fields: Any) -> dict[str, Any]:
    """The state of issue or patch ``number`` before any op: the thread's own fields,
    then ``fields`` (those of its kind, e.g. ``labels=[]``)."""
    return {
        "number": number,
        "title": "",
        "body": "",
        "state": "",
        "author": "",
        "created": 0.0,
        "updated": 0.0,
        "comments": [],
        "ops": 0,
        **fields,
    }


def check(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The validated body of a new ``comment`` or ``edit`` op (typed errors otherwise)."""
    if kind == "comment":
        comment = fields.text(body.get("body"), "body")
        if not comment.strip():
            raise InvalidArgumentError("a comment needs a body", field="body")
        return {"body": comment}
    if kind != "edit":
        raise ValueError(f"{kind!r} is no thread op")
    out: dict[str, Any] = {}
    if body.get("title") is not None:
        out["title"] = fields.title(body["title"])
    if body.get("body") is not None:
        out["body"] = fields.text(body["body"], "body")
    if not out:
        raise InvalidArgumentError("an edit changes the title or the body", field="title")
    return out


def apply(state: dict[str, Any], op: Op) -> None:
    """Fold a ``comment`` or ``edit`` op onto ``state`` (in place)."""
    if op.type == "comment":
        state["comments"].append(
            {"id": op.id, "actor": op.actor, "time": op.time, "body": op.body.get("body", "")}
        )
    elif op.type == "edit":
        state.update({k: op.body[k] for k in ("title", "body") if k in op.body})
    else:
        raise ValueError(f"{op.type!r} is no thread op")


def touched(state: dict[str, Any], op: Op) -> dict[str, Any]:
    """``state`` after ``op`` changed it: its update time and op count moved on."""
    state["updated"] = max(state["updated"], op.time)
    state["ops"] += 1
    return state
