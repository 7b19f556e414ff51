"""The base of every secrets engine: a table of routes (path patterns and operations).

An engine subclass decorates async methods with :func:`route`; a method receives the
:class:`~aspen_secrets.logical.Request` and the pattern's named groups as keyword
arguments, and returns a :class:`~aspen_secrets.logical.Response`, a plain ``dict`` (the
response data) or ``None`` (an empty success, HTTP 204).

```python
class Echo(Engine):
    type_name = "echo"

    @route(r"echo/(?P<name>[^/]+)", Operation.READ)
    async def read_echo(self, request, name):
        return {"name": name}
```
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aspen_secrets.logical import (
    Operation,
    Request,
    Response,
    UnsupportedOperationError,
    UnsupportedPathError,
)
from aspen_secrets.store import Store

__all__ = ["Engine", "Mount", "route"]

Handler = Callable[..., Awaitable[Response | dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Mount:
    """A mounted engine: where (``path``, ending in ``/``), what (``type``), its own id
    (its state lives under ``mounts/<uuid>/``), and Vault's mount fields."""

    path: str
    type: str
    uuid: str
    description: str = ""
    options: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The mount as ``sys/mounts`` shows it (also how the mount table stores it)."""
        return {
            "type": self.type,
            "uuid": self.uuid,
            "description": self.description,
            "options": dict(self.options),
            "config": dict(self.config),
        }


def route(pattern: str, *operations: Operation) -> Callable[[Handler], Handler]:
    """Serve ``operations`` on paths that fully match the regular expression ``pattern``."""

    def mark(func: Handler) -> Handler:
        marks = getattr(func, "_aspen_routes", [])
        marks.append((re.compile(pattern), frozenset(operations)))
        func._aspen_routes = marks  # type: ignore[attr-defined]
        return func

    return mark


class Engine:
    """A secrets engine mounted at one path, with its state in ``store``."""

    #: The engine type as ``sys/mounts`` names it (``kv``, ``transit``, ``pki``).
    type_name: ClassVar[str] = ""
    _routes: ClassVar[list[tuple[re.Pattern[str], frozenset[Operation], str]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = []
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for pattern, ops in getattr(value, "_aspen_routes", ()):
                    table.append((pattern, ops, attr))
        cls._routes = table

    def __init__(self, store: Store, mount: Mount) -> None:
        self.store = store
        self.mount = mount

    async def initialize(self) -> None:
        """Called once after the engine is mounted on a node (before its first request)."""

    async def handle(self, request: Request) -> Response:
        """Route ``request`` to the matching method and normalise its answer."""
        path_matched = False
        for pattern, ops, attr in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            path_matched = True
            if request.operation not in ops:
                continue
            result = await getattr(self, attr)(request, **match.groupdict())
            if isinstance(result, Response):
                return result
            return Response(data=result)
        if path_matched:
            raise UnsupportedOperationError(
                f"{request.operation} is not supported on {self.mount.path}{request.path}"
            )
        raise UnsupportedPathError(f"unsupported path: {self.mount.path}{request.path}")
