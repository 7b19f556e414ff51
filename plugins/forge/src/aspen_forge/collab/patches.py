"""Patches as op logs: a source branch proposed into a target branch, with revisions and
reviews. :func:`apply` is pure (the fold), :func:`check` validates a new op.

States and transitions (as Gitea/GitHub pull requests): ``draft`` → ``open`` (``ready``),
``open`` → ``draft`` (``draft``), ``draft|open`` → ``closed`` (``close``), ``closed`` →
``open`` (``reopen``), ``draft|open`` → ``merged`` (``merged``: a server merge, or a push
that landed the head on the target). ``merged`` is final.

Ops: ``create {title, body, source, target, draft, head, base}`` (revision 1),
``revision {head, base}`` (a push to the source), ``review {revision, verdict, body,
comments: [{path, line, body}]}`` (verdict ``approve``, ``request_changes``, ``comment``),
``comment {body}``, ``edit {title?, body?}``, ``ready``, ``draft``, ``close``, ``reopen``,
``merged {commit, strategy, revision, via}``.
"""

from __future__ import annotations

from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_forge import limits
from aspen_forge.collab import fields, thread
from aspen_forge.collab.fields import StateError
from aspen_forge.collab.oplog import Op

__all__ = [
    "KIND",
    "STRATEGIES",
    "VERDICTS",
    "apply",
    "approvals",
    "check",
    "initial",
    "summary",
]

#: The object kind (keys, events: ``forge.patch``).
KIND = "patch"
#: What a review says.
VERDICTS = ("approve", "request_changes", "comment")
#: How a patch is merged.
STRATEGIES = ("ff", "merge", "squash")
_LIVE = ("draft", "open")


def initial(number: int) -> dict[str, Any]:
    """The state before any op."""
    return thread.initial(number, source="", target="", revisions=[], merged=None)


def _revision(op: Op, number: int) -> dict[str, Any]:
    return {
        "number": number,
        "id": op.id,
        "head": op.body.get("head", ""),
        "base": op.body.get("base", ""),
        "actor": op.actor,
        "time": op.time,
        "reviews": [],
    }


def apply(state: dict[str, Any], op: Op) -> dict[str, Any]:
    """``state`` after ``op`` (mutated in place and returned); an op that does not fit
    the state changes nothing."""
    body, kind, current = op.body, op.type, state["state"]
    if kind == "create":
        if current:
            return state
        state.update(
            title=body.get("title", ""),
            body=body.get("body", ""),
            source=body.get("source", ""),
            target=body.get("target", ""),
            state="draft" if body.get("draft") else "open",
            author=op.actor,
            created=op.time,
            revisions=[_revision(op, 1)],
        )
    elif not current:
        return state
    elif kind == "revision" and current in _LIVE:
        if state["revisions"] and state["revisions"][-1]["head"] == body.get("head"):
            return state
        state["revisions"].append(_revision(op, len(state["revisions"]) + 1))
    elif kind == "review":
        index = int(body.get("revision", 0)) - 1
        if not 0 <= index < len(state["revisions"]):
            return state
        state["revisions"][index]["reviews"].append(
            {
                "id": op.id,
                "actor": op.actor,
                "time": op.time,
                "verdict": body.get("verdict", "comment"),
                "body": body.get("body", ""),
                "comments": list(body.get("comments", ())),
            }
        )
    elif kind in thread.OP_TYPES:
        thread.apply(state, op)
    elif kind == "ready" and current == "draft":
        state["state"] = "open"
    elif kind == "draft" and current == "open":
        state["state"] = "draft"
    elif kind == "close" and current in _LIVE:
        state["state"] = "closed"
    elif kind == "reopen" and current == "closed":
        state["state"] = "open"
    elif kind == "merged" and current in _LIVE:
        state["state"] = "merged"
        state["merged"] = {
            "commit": body.get("commit", ""),
            "strategy": body.get("strategy", ""),
            "revision": body.get("revision", 0),
            "via": body.get("via", ""),
            "actor": op.actor,
            "time": op.time,
        }
    else:
        return state
    return thread.touched(state, op)


def approvals(state: dict[str, Any], *, latest_only: bool) -> tuple[list[str], list[str]]:
    """``(approvers, requesting_changes)``: each reviewer's last approve/request-changes
    verdict, on the latest revision only (``latest_only``: stale approvals dismissed) or
    on any revision. The patch's author is no reviewer of it (as on GitHub and Gitea):
    their verdicts are kept in the log and count for nothing here."""
    revisions = state["revisions"][-1:] if latest_only else state["revisions"]
    last: dict[str, str] = {}
    for revision in revisions:
        for review in revision["reviews"]:
            if review["verdict"] != "comment" and review["actor"] != state["author"]:
                last[review["actor"]] = review["verdict"]
    approvers = sorted(a for a, v in last.items() if v == "approve")
    blocking = sorted(a for a, v in last.items() if v == "request_changes")
    return approvers, blocking


def _line_comments(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgumentError("comments is a list of {path, line, body}", field="comments")
    if len(value) > limits.MAX_LINE_COMMENTS:
        raise InvalidArgumentError(
            f"{len(value)} line comments, over MAX_LINE_COMMENTS ({limits.MAX_LINE_COMMENTS})",
            field="comments",
        )
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("line"), int):
            raise InvalidArgumentError(
                "a line comment is {path, line (int), body}", field="comments"
            )
        path = fields.text(item.get("path"), "path", limits.MAX_PATH_BYTES, name="MAX_PATH_BYTES")
        if not path or item["line"] < 1:
            raise InvalidArgumentError("a line comment names a path and a line >= 1", field="path")
        out.append(
            {"path": path, "line": item["line"], "body": fields.text(item.get("body"), "body")}
        )
    return out


def _require(state: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    if state["state"] not in allowed:
        raise StateError(f"patch #{state['number']} is {state['state']}: cannot {what}")


def check(state: dict[str, Any], kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The validated body of a new ``kind`` op on ``state`` (typed errors otherwise)."""
    if kind == "create":
        return {
            "title": fields.title(body.get("title")),
            "body": fields.text(body.get("body"), "body"),
            "source": body["source"],
            "target": body["target"],
            "draft": bool(body.get("draft")),
            "head": body["head"],
            "base": body["base"],
        }
    if kind == "revision":
        return {"head": body["head"], "base": body.get("base", "")}
    if kind == "review":
        verdict = body.get("verdict") or "comment"
        if verdict not in VERDICTS:
            raise InvalidArgumentError(f"verdict is one of {', '.join(VERDICTS)}", field="verdict")
        _require(state, _LIVE, "review")
        latest = len(state["revisions"])
        revision = body.get("revision") or latest
        if not isinstance(revision, int) or not 1 <= revision <= latest:
            raise InvalidArgumentError(
                f"patch #{state['number']} has revisions 1..{latest}", field="revision"
            )
        return {
            "revision": revision,
            "verdict": verdict,
            "body": fields.text(body.get("body"), "body"),
            "comments": _line_comments(body.get("comments")),
        }
    if kind in thread.OP_TYPES:
        return thread.check(kind, body)
    transitions = {
        "ready": (("draft",), "mark ready"),
        "draft": (("open",), "convert to draft"),
        "close": (_LIVE, "close"),
        "reopen": (("closed",), "reopen"),
        "merged": (_LIVE, "merge"),
    }
    if kind in transitions:
        allowed, what = transitions[kind]
        _require(state, allowed, what)
        return dict(body)
    raise InvalidArgumentError(f"unknown patch op {kind!r}", field="type")


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """What a list shows: no comments or reviews, the latest revision's head."""
    out = {k: v for k, v in state.items() if k not in ("comments", "body", "revisions")}
    latest = state["revisions"][-1] if state["revisions"] else {}
    out["revision_count"] = len(state["revisions"])
    out["head"] = latest.get("head", "")
    out["comment_count"] = len(state["comments"])
    return out
