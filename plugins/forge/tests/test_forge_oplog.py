"""The op-log fold is pure and deterministic: the state depends only on the set of ops,
never on the order they arrive in — also for two branches of a log (two clusters'
concurrent ops, as federation will merge them)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aspen_forge.collab import issues, patches
from aspen_forge.collab.oplog import Op, fold, heads, make_op, ordered

_ISSUE_OPS = st.sampled_from(
    [
        ("comment", {"body": "a"}),
        ("comment", {"body": "b"}),
        ("edit", {"title": "renamed"}),
        ("edit", {"title": "other"}),
        ("label", {"add": ["bug"], "remove": []}),
        ("label", {"add": [], "remove": ["bug"]}),
        ("assign", {"add": ["ann"], "remove": []}),
        ("close", {"reason": "completed"}),
        ("close", {"reason": "duplicate"}),
        ("reopen", {}),
    ]
)


def _dag(steps: list[tuple[int, tuple[str, dict[str, Any]]]]) -> list[Op]:
    """A log that branches: each step's op names as parent the head of one of two
    chains (``chain`` 0 or 1), both growing from one ``create``."""
    root = make_op("create", "root", 1.0, (), {"title": "t", "body": "", "labels": []})
    ops, tips = [root], [root.id, root.id]
    for i, (chain, (kind, body)) in enumerate(steps):
        op = make_op(kind, f"actor{chain}", 2.0 + i % 3, (tips[chain],), body)
        ops.append(op)
        tips[chain] = op.id
    return ops


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), _ISSUE_OPS), max_size=12),
    st.randoms(use_true_random=False),
)
def test_issue_fold_ignores_arrival_order(steps: Any, rnd: Any) -> None:
    ops = _dag(steps)
    shuffled = list(ops)
    rnd.shuffle(shuffled)
    first = fold(ops, issues.apply, issues.initial(1))
    second = fold(shuffled, issues.apply, issues.initial(1))
    assert first == second
    assert [o.id for o in ordered(ops)] == [o.id for o in ordered(shuffled)]
    assert heads(ops) == heads(shuffled)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1),
            st.sampled_from(
                [
                    ("revision", {"head": "b" * 40, "base": ""}),
                    ("revision", {"head": "c" * 40, "base": ""}),
                    ("review", {"revision": 1, "verdict": "approve", "body": "", "comments": []}),
                    ("close", {}),
                    ("reopen", {}),
                    ("merged", {"commit": "d" * 40, "strategy": "ff", "revision": 1}),
                ]
            ),
        ),
        max_size=10,
    ),
    st.randoms(use_true_random=False),
)
def test_patch_fold_ignores_arrival_order(steps: Any, rnd: Any) -> None:
    create = {"title": "t", "source": "f", "target": "main", "head": "a" * 40, "base": ""}
    root = make_op("create", "root", 1.0, (), create)
    ops, tips = [root], [root.id, root.id]
    for i, (chain, (kind, body)) in enumerate(steps):
        op = make_op(kind, f"actor{chain}", 2.0 + i, (tips[chain],), body)
        ops.append(op)
        tips[chain] = op.id
    shuffled = list(reversed(ops))
    rnd.shuffle(shuffled)
    assert fold(ops, patches.apply, patches.initial(3)) == fold(
        shuffled, patches.apply, patches.initial(3)
    )


def test_an_op_follows_its_parents_and_ties_go_by_id() -> None:
    root = make_op("create", "root", 5.0, (), {"title": "t"})
    a = make_op("comment", "x", 1.0, (root.id,), {"body": "a"})  # an earlier clock, still after
    b = make_op("comment", "y", 1.0, (root.id,), {"body": "b"})
    merge = make_op("comment", "z", 0.0, (a.id, b.id), {"body": "m"})
    order = [o.id for o in ordered([merge, b, a, root])]
    assert order[0] == root.id and order[-1] == merge.id
    assert order[1:3] == sorted([a.id, b.id])
    assert heads([root, a, b]) == sorted([a.id, b.id])
    assert Op.from_value(merge.to_value()) == merge


def test_conflicting_closes_apply_once() -> None:
    root = make_op("create", "root", 1.0, (), {"title": "t"})
    one = make_op("close", "a", 2.0, (root.id,), {"reason": "completed"})
    two = make_op("close", "b", 2.0, (root.id,), {"reason": "duplicate"})
    state = fold([two, one, root], issues.apply, issues.initial(1))
    first = min(one, two, key=lambda o: o.id)
    assert state["state"] == "closed" and state["close_reason"] == first.body["reason"]
