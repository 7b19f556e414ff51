"""Branch protection: glob rules on branch names, checked for every ref a push updates.

A rule (stored with the repository's others under ``protect/<repo id>``, one msgpack list)
matches branches by ``fnmatch`` pattern (``main``, ``release/*``) and may forbid force
pushes (an update whose old tip is not an ancestor of the new), deletion, and pushes by
anyone not on ``push_allow`` (token ids; ``root`` for the root token).

``required_approvals``, ``required_status`` and ``dismiss_stale`` govern patches: a server
merge into a matching branch needs that many approvals (on the latest revision only when
``dismiss_stale``; none of the reviewers' last verdicts may request changes) and every
required status context ``success`` on the patch head (:func:`merge_blockers`). A branch
requiring approvals takes no direct push: its changes arrive through merged patches.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from aspen.client.leader import LeaderCaller
from aspen.errors import InvalidArgumentError, ResourceExhaustedError
from aspen_forge import keys, limits
from aspen_forge.refs import RefUpdate

__all__ = ["Rule", "check_update", "load_rules", "merge_blockers", "remove_rule", "save_rule"]

_HEADS = b"refs/heads/"


@dataclass(frozen=True)
class Rule:
    """One protection rule for the branches ``pattern`` matches."""

    pattern: str
    no_force_push: bool = True
    no_delete: bool = True
    push_allow: tuple[str, ...] = ()
    required_approvals: int = 0
    required_status: tuple[str, ...] = ()
    dismiss_stale: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def matches(self, branch: str) -> bool:
        """Whether this rule covers branch ``branch`` (short name, ``main``)."""
        return fnmatch.fnmatchcase(branch, self.pattern)

    def to_wire(self) -> dict[str, Any]:
        """A JSON/msgpack-able map."""
        data = asdict(self)
        data["push_allow"] = list(self.push_allow)
        data["required_status"] = list(self.required_status)
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Rule:
        """The rule of a map written by :meth:`to_wire` (unknown fields kept in ``extra``)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "extra"}
        known["push_allow"] = tuple(known.get("push_allow", ()))
        known["required_status"] = tuple(known.get("required_status", ()))
        extra = {k: v for k, v in data.items() if k not in cls.__dataclass_fields__}
        return cls(**known, extra={**data.get("extra", {}), **extra})

    @classmethod
    def validated(cls, pattern: object, **options: Any) -> Rule:
        """A rule from user input (``invalid_argument`` naming the bad field)."""
        if not isinstance(pattern, str) or not pattern or len(pattern) > limits.MAX_REF_BYTES:
            raise InvalidArgumentError(
                f"a protection pattern is a non-empty string of at most MAX_REF_BYTES "
                f"({limits.MAX_REF_BYTES}) bytes",
                field="pattern",
            )
        if any(ord(c) < 0x20 for c in pattern) or pattern.startswith("refs/"):
            raise InvalidArgumentError(
                "a protection pattern names branches (main, release/*), without refs/heads/",
                field="pattern",
            )
        allow = tuple(str(a) for a in options.pop("push_allow", ()) or ())
        if len(allow) > limits.MAX_PUSH_ALLOW:
            raise InvalidArgumentError(
                f"push allow-list is over MAX_PUSH_ALLOW ({limits.MAX_PUSH_ALLOW})",
                field="push_allow",
            )
        return cls(pattern, push_allow=allow, **options)


async def load_rules(node: Any, repo_id: str) -> list[Rule]:
    """The protection rules of ``repo_id`` (linearizable read)."""
    kvs = (await node.call("kv.range", {"key": keys.protect_key(repo_id)}))["kvs"]
    if not kvs:
        return []
    return [Rule.from_wire(r) for r in msgpack.unpackb(kvs[0]["value"], raw=False)]


async def _rewrite(
    node: Any,
    writer: LeaderCaller,
    repo_id: str,
    change: Callable[[list[Rule]], list[Rule]],
) -> list[Rule]:
    key = keys.protect_key(repo_id)
    for _ in range(limits.MAX_CAS_ATTEMPTS):
        kvs = (await node.call("kv.range", {"key": key}))["kvs"]
        revision = kvs[0]["mod_revision"] if kvs else 0
        rules = (
            [Rule.from_wire(r) for r in msgpack.unpackb(kvs[0]["value"], raw=False)] if kvs else []
        )
        rules = change(rules)
        if len(rules) > limits.MAX_PROTECTION_RULES:
            raise ResourceExhaustedError(
                f"repository has MAX_PROTECTION_RULES ({limits.MAX_PROTECTION_RULES}) rules"
            )
        value = msgpack.packb([r.to_wire() for r in rules], use_bin_type=True)
        answer = await writer.call(
            "kv.txn",
            {
                "compare": [{"key": key, "target": "mod_revision", "op": "==", "value": revision}],
                "success": [{"put": {"key": key, "value": value}}],
                "failure": [],
            },
        )
        if answer["succeeded"]:
            return rules
    raise ResourceExhaustedError(
        "protection rules kept changing: gave up after MAX_CAS_ATTEMPTS "
        f"({limits.MAX_CAS_ATTEMPTS})"
    )


async def save_rule(node: Any, writer: LeaderCaller, repo_id: str, rule: Rule) -> list[Rule]:
    """Add ``rule``, replacing one with the same pattern; return every rule."""
    return await _rewrite(
        node,
        writer,
        repo_id,
        lambda rules: [r for r in rules if r.pattern != rule.pattern] + [rule],
    )


async def remove_rule(node: Any, writer: LeaderCaller, repo_id: str, pattern: str) -> list[Rule]:
    """Drop the rule for ``pattern`` (no error if there is none); return the rest."""
    return await _rewrite(
        node, writer, repo_id, lambda rules: [r for r in rules if r.pattern != pattern]
    )


def check_update(
    rules: list[Rule],
    update: RefUpdate,
    pusher: set[str],
    is_ancestor: Callable[[bytes, bytes], bool],
) -> str | None:
    """Why ``update`` is refused by a rule (the text git shows after ``[remote rejected]``),
    or ``None``. ``pusher``: the names the pusher goes by (token ids, ``root``);
    ``is_ancestor(old, new)``: whether ``old`` is reachable from ``new`` (blocking)."""
    if not update.ref.startswith(_HEADS):
        return None
    branch = update.ref[len(_HEADS) :].decode(errors="replace")
    for rule in rules:
        if not rule.matches(branch):
            continue
        if rule.push_allow and not pusher & set(rule.push_allow):
            return f"protected branch {branch}: pushing is limited to its allow-list"
        if rule.required_approvals and not update.is_delete:
            return (
                f"protected branch {branch}: changes go through a merged patch "
                f"({rule.required_approvals} approval(s) required)"
            )
        if update.is_delete:
            if rule.no_delete:
                return f"protected branch {branch}: deletion is not allowed"
        elif (
            not update.is_create and rule.no_force_push and not is_ancestor(update.old, update.new)
        ):
            return f"protected branch {branch}: force push is not allowed"
    return None


def merge_blockers(
    rules: list[Rule],
    branch: str,
    pusher: set[str],
    approvals: Callable[[bool], tuple[list[str], list[str]]],
    statuses: dict[str, str],
) -> list[str]:
    """Why a server merge into ``branch`` is refused (empty: it may go ahead).
    ``approvals(latest_only)`` gives ``(approvers, requesting_changes)``; ``statuses`` maps
    each context to its state on the commit being merged."""
    reasons: list[str] = []
    for rule in rules:
        if not rule.matches(branch):
            continue
        if rule.push_allow and not pusher & set(rule.push_allow):
            reasons.append(f"protected branch {branch}: merging is limited to its allow-list")
        if rule.required_approvals:
            approvers, blocking = approvals(rule.dismiss_stale)
            if len(approvers) < rule.required_approvals:
                where = "the latest revision" if rule.dismiss_stale else "the patch"
                reasons.append(
                    f"protected branch {branch}: {len(approvers)} of "
                    f"{rule.required_approvals} required approval(s) on {where}"
                )
            if blocking:
                reasons.append(f"changes requested by {', '.join(blocking)}")
        for context in rule.required_status:
            state = statuses.get(context, "missing")
            if state != "success":
                reasons.append(f"protected branch {branch}: required status {context} is {state}")
    return list(dict.fromkeys(reasons))
