"""The method registry: names, duplicates, description."""

from __future__ import annotations

from typing import Any

import pytest

from aspen.errors import InvalidArgumentError
from aspen.limits import MAX_METHOD_NAME_BYTES
from aspen.plugins.types import RpcHandler
from aspen.rpc import DuplicateMethodError, MethodRegistry


async def handler(ctx: Any, params: dict[str, Any]) -> Any:
    """A do-nothing handler."""
    return None


def test_add_get_names_describe() -> None:
    registry = MethodRegistry()
    registry.add(RpcHandler("kv.put", handler, doc="Write a key.", plugin="core"))
    registry.add(RpcHandler("kv.watch", handler, streaming=True, plugin="core"))
    registry.add(RpcHandler("secrets.kv.read", handler, plugin="secrets"))
    assert registry.get("kv.put").doc == "Write a key."
    assert registry.get("kv.nope") is None
    assert "kv.watch" in registry and len(registry) == 3
    assert registry.names() == ["kv.put", "kv.watch", "secrets.kv.read"]
    assert registry.describe()[1] == {
        "name": "kv.watch",
        "plugin": "core",
        "streaming": True,
        "doc": "",
    }


def test_duplicate_is_refused_naming_both_plugins() -> None:
    registry = MethodRegistry([RpcHandler("jobs.run", handler, plugin="jobs")])
    with pytest.raises(DuplicateMethodError, match=r"jobs\.run.*'jobs'.*'rogue'"):
        registry.add(RpcHandler("jobs.run", handler, plugin="rogue"))
    assert registry.get("jobs.run").plugin == "jobs"


@pytest.mark.parametrize(
    "name",
    ["put", ".put", "kv.", "Kv.put", "kv put", "9kv.put", "a." + "x" * MAX_METHOD_NAME_BYTES],
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        MethodRegistry().add(RpcHandler(name, handler))


def test_non_handlers_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        MethodRegistry().add(("kv.put", handler))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="not callable"):
        MethodRegistry().add(RpcHandler("kv.put", "nope"))  # type: ignore[arg-type]
