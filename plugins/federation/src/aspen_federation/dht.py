"""The Mainline DHT backend of :class:`aspen_federation.discovery.Discovery`: a libtorrent
session speaking BEP-44 mutable items. libtorrent is imported only here.

libtorrent runs its own network thread; its Python calls return at once and results come
back as alerts. One daemon thread (:meth:`DhtDiscovery._pump`) pops the alerts and hands
each answer to the request waiting for it; callers wait in a worker thread
(``anyio.to_thread``), never on the event loop.

**Private networks** (tests): with ``private=True`` the session has no routers, and the
DoS limits that break a loopback network are raised — every node shares 127.0.0.1, which
the per-IP blocker would otherwise blacklist, node ids are not enforced against the IP,
and routing/search IP restrictions are off. Contacts are added with ``add_dht_node``,
which is a single ping: :meth:`add_contact` remembers them and :meth:`_pump` re-pings
them while the routing table is small. (Router endpoints never enter the routing table,
so a private network must be joined through nodes, not routers.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio

from aspen.errors import UnavailableError
from aspen_federation import limits
from aspen_federation.discovery import SALT
from aspen_federation.identity import ClusterKey, expanded_secret

__all__ = ["DEFAULT_ROUTERS", "DhtDiscovery"]

#: The public routers a production node bootstraps from (libtorrent's defaults).
DEFAULT_ROUTERS = (
    "dht.libtorrent.org:25401,router.bittorrent.com:6881,"
    "router.utorrent.com:6881,dht.transmissionbt.com:6881"
)


class _Waiter:
    """One outstanding get or put: the alerts that answer it, and when it is done."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None
        self.seq = -1
        self.stored = 0
        #: When the first value arrived (``time.monotonic``), 0 before.
        self.first_value_at = 0.0

    def wait_value(self, attempt: float, settle: float) -> bool:
        """Block until the answer is authoritative, or a value arrived ``settle`` seconds
        ago (a higher seq may follow it), or ``attempt`` seconds passed; whether it was
        authoritative."""
        deadline = time.monotonic() + attempt
        while not self.done.wait(min(limits.DHT_ALERT_POLL_SECONDS, attempt)):
            now = time.monotonic()
            if now >= deadline or (self.first_value_at and now - self.first_value_at >= settle):
                return False
        return True


class DhtDiscovery:
    """A libtorrent session on ``listen`` (``host:port``) as a discovery backend."""

    def __init__(self, listen: str, *, routers: str = DEFAULT_ROUTERS, private: bool = False):
        import libtorrent as lt

        self._lt = lt
        settings: dict[str, Any] = {
            "enable_dht": True,
            "listen_interfaces": listen,
            "dht_bootstrap_nodes": "" if private else routers,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "alert_queue_size": limits.DHT_ALERT_QUEUE_SIZE,
            "alert_mask": lt.alert_category.dht | lt.alert_category.error,
        }
        if private:
            settings.update(
                dht_restrict_routing_ips=False,
                dht_restrict_search_ips=False,
                dht_block_ratelimit=limits.PRIVATE_DHT_BLOCK_RATELIMIT,
                dht_enforce_node_id=False,
                dht_ignore_dark_internet=False,
                dht_prefer_verified_node_ids=False,
            )
        self._session = lt.session(settings)  # type: ignore[call-overload]
        self._lock = threading.Lock()
        self._gets: dict[bytes, list[_Waiter]] = {}
        self._puts: dict[bytes, list[_Waiter]] = {}
        self._contacts: list[tuple[str, int]] = []
        self._nodes = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="federation-dht", daemon=True)
        self._thread.start()

    # -- the Discovery interface -------------------------------------------------------

    async def publish(self, key: ClusterKey, value: bytes) -> int:
        """Put ``value`` under ``key`` + :data:`SALT`; how many nodes stored it."""
        waiter = _Waiter()
        with self._lock:
            self._puts.setdefault(key.public, []).append(waiter)
        self._session.dht_put_mutable_item(expanded_secret(key.seed), key.public, value, SALT)
        await anyio.to_thread.run_sync(waiter.done.wait, limits.DHT_OPERATION_TIMEOUT_SECONDS)
        with self._lock:
            self._drop(self._puts, key.public, waiter)
        if not waiter.done.is_set():
            raise UnavailableError(
                "DHT put timed out after DHT_OPERATION_TIMEOUT_SECONDS "
                f"({limits.DHT_OPERATION_TIMEOUT_SECONDS})"
            )
        return waiter.stored

    async def lookup(self, public: bytes) -> bytes | None:
        """Get the item under ``public`` + :data:`SALT`: the newest seq any node gave by
        the time the traversal ends, or ``DHT_LOOKUP_SETTLE_SECONDS`` after a first value
        came (a traversal waits out every slow or dead node it asked, up to libtorrent's
        15 s timeout). An attempt that ends with nothing after
        ``DHT_LOOKUP_ATTEMPT_SECONDS`` is retried (``DHT_LOOKUP_ATTEMPTS`` in all)."""
        for _ in range(limits.DHT_LOOKUP_ATTEMPTS):
            value, authoritative = await anyio.to_thread.run_sync(self._get_once, public)
            if value is not None or authoritative:
                return value
        return None

    def _get_once(self, public: bytes) -> tuple[bytes | None, bool]:
        """One get (blocking: a worker thread): its value and whether it was authoritative."""
        waiter = _Waiter()
        with self._lock:
            self._gets.setdefault(public, []).append(waiter)
        self._session.dht_get_mutable_item(public, SALT)
        try:
            authoritative = waiter.wait_value(
                limits.DHT_LOOKUP_ATTEMPT_SECONDS, limits.DHT_LOOKUP_SETTLE_SECONDS
            )
        finally:
            with self._lock:
                self._drop(self._gets, public, waiter)
        return waiter.value, authoritative

    def add_contact(self, host: str, port: int) -> None:
        """Ping ``host:port`` now and again while the routing table is small."""
        with self._lock:
            if (host, port) not in self._contacts:
                if len(self._contacts) >= limits.MAX_DHT_CONTACTS:
                    self._contacts.pop(0)
                self._contacts.append((host, port))
        self._session.add_dht_node((host, port))

    def node_count(self) -> int:
        """Nodes in the routing table (as of the last stats alert)."""
        return self._nodes

    def listen_port(self) -> int:
        """The UDP/TCP port the session listens on."""
        return int(self._session.listen_port())

    def close(self) -> None:
        """Stop the alert thread and the session."""
        self._closed.set()
        self._thread.join(timeout=5)
        with self._lock:
            for waiters in (*self._gets.values(), *self._puts.values()):
                for waiter in waiters:
                    waiter.done.set()
        self._session.pause()
        del self._session

    # -- the alert thread --------------------------------------------------------------

    @staticmethod
    def _drop(table: dict[bytes, list[_Waiter]], key: bytes, waiter: _Waiter) -> None:
        waiters = table.get(key, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            table.pop(key, None)

    def _pump(self) -> None:
        """Pop alerts, answer waiters, keep stats fresh, re-ping contacts."""
        lt = self._lt
        next_ping = next_stats = 0.0
        while not self._closed.is_set():
            now = time.monotonic()
            if now >= next_stats:
                self._session.post_dht_stats()
                next_stats = now + 1.0
            if now >= next_ping and self._nodes < limits.CONTACT_PING_BELOW_NODES:
                with self._lock:
                    contacts = list(self._contacts)
                for contact in contacts:
                    self._session.add_dht_node(contact)
                next_ping = now + limits.CONTACT_PING_SECONDS
            self._session.wait_for_alert(int(limits.DHT_ALERT_POLL_SECONDS * 1000))
            for alert in self._session.pop_alerts():
                if isinstance(alert, lt.dht_stats_alert):
                    self._nodes = sum(int(b["num_nodes"]) for b in alert.routing_table)
                elif isinstance(alert, lt.dht_mutable_item_alert):
                    self._on_item(alert)
                elif isinstance(alert, lt.dht_put_alert):
                    self._on_put(alert)

    def _on_item(self, alert: Any) -> None:
        """A get's answer: keep the highest seq; an authoritative one finishes it."""
        if bytes(alert.salt) != SALT:
            return
        item = alert.item
        # an empty item is "nothing stored here" (or one libtorrent refused: a bad signature)
        value = item if isinstance(item, bytes) and item else None
        with self._lock:
            for waiter in self._gets.get(bytes(alert.key), []):
                if value is not None and int(alert.seq) > waiter.seq:
                    waiter.seq, waiter.value = int(alert.seq), value
                    waiter.first_value_at = waiter.first_value_at or time.monotonic()
                if alert.authoritative:
                    waiter.done.set()

    def _on_put(self, alert: Any) -> None:
        """A put finished: how many nodes stored it."""
        if bytes(alert.salt) != SALT:
            return
        with self._lock:
            for waiter in self._puts.get(bytes(alert.public_key), []):
                waiter.stored = int(alert.num_success)
                waiter.done.set()
