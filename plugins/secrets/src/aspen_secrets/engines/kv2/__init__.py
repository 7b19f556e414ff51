"""The KV version 2 secrets engine (mount type ``kv``): see :mod:`.engine` for the API and
:mod:`.model` for the storage layout and what responses show."""

from __future__ import annotations

from aspen_secrets.engines.kv2.engine import KvV2Engine

__all__ = ["KvV2Engine"]
