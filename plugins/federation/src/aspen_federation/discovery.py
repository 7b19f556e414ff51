"""Finding a cluster by its key: the :class:`Discovery` interface and its in-memory
backend (for unit tests of the logic). The Mainline DHT backend is
:mod:`aspen_federation.dht`.

A backend stores and fetches opaque announcement bytes under a cluster key (BEP-44: a
mutable item under the key with the fixed :data:`SALT`); verifying them is the caller's
job (:meth:`aspen_federation.announce.Announcement.decode`), so a lying backend cannot
make a bad announcement pass.
"""

from __future__ import annotations

from typing import Protocol

from aspen_federation.identity import ClusterKey

__all__ = ["SALT", "Discovery", "MemoryDiscovery", "MemoryNetwork"]

#: The BEP-44 salt every Aspen announcement is stored under.
SALT = b"aspen-federation/v1"


class Discovery(Protocol):
    """Where announcements are published and looked up."""

    async def publish(self, key: ClusterKey, value: bytes) -> int:
        """Store ``value`` under ``key``; the number of nodes that took it."""
        ...

    async def lookup(self, public: bytes) -> bytes | None:
        """The newest value stored under ``public``, or ``None`` if none is found."""
        ...

    def add_contact(self, host: str, port: int) -> None:
        """Add a node to reach the network through."""
        ...

    def node_count(self) -> int:
        """How many nodes this backend knows (the DHT's routing-table size)."""
        ...

    def listen_port(self) -> int:
        """The port this backend listens on (0 if none)."""
        ...

    def close(self) -> None:
        """Stop."""
        ...


class MemoryNetwork:
    """A shared in-memory "DHT": ``key -> (seq, value)``; what one backend publishes,
    every backend on the same network finds."""

    def __init__(self) -> None:
        self.items: dict[bytes, tuple[int, bytes]] = {}
        self.members = 0


class MemoryDiscovery:
    """A :class:`Discovery` over a :class:`MemoryNetwork` (unit tests)."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        network.members += 1

    async def publish(self, key: ClusterKey, value: bytes) -> int:
        """Store with the next sequence number, as BEP-44 does."""
        seq = self.network.items.get(key.public, (0, b""))[0] + 1
        self.network.items[key.public] = (seq, value)
        return self.network.members

    async def lookup(self, public: bytes) -> bytes | None:
        """The stored value, if any."""
        found = self.network.items.get(public)
        return found[1] if found else None

    def add_contact(self, host: str, port: int) -> None:
        """Nothing to join: the network is shared memory."""

    def node_count(self) -> int:
        """Every backend on the network, but this one."""
        return self.network.members - 1

    def listen_port(self) -> int:
        """No socket."""
        return 0

    def close(self) -> None:
        """Leave the network."""
        self.network.members -= 1
