"""The secrets engine types a mount can have, imported only when mounted."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from aspen.errors import InvalidArgumentError

if TYPE_CHECKING:
    from aspen_secrets.engines.base import Engine

__all__ = ["ENGINE_TYPES", "engine_class"]

#: Mount type → ``module:class`` of its engine.
ENGINE_TYPES = {
    "kv": "aspen_secrets.engines.kv2:KvV2Engine",
    "transit": "aspen_secrets.engines.transit:TransitEngine",
    "pki": "aspen_secrets.engines.pki:PkiEngine",
}


def engine_class(type_name: str) -> type[Engine]:
    """The engine class for a mount type; ``invalid_argument`` for an unknown one."""
    target = ENGINE_TYPES.get(type_name)
    if target is None:
        known = ", ".join(sorted(ENGINE_TYPES))
        raise InvalidArgumentError(f"unknown secrets engine type {type_name!r}; known: {known}")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
