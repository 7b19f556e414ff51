"""Federation tests: node DHT sessions on loopback, a private network (no public routers)."""

from __future__ import annotations
