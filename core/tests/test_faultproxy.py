"""The fault-injecting TCP proxy, over real sockets on 127.0.0.x."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from aspen.testing.faultproxy import FaultProxy, ProxyStats
from aspen.testing.waiting import free_port, wait_for

DEADLINE = 5.0


class _Echo(socketserver.BaseRequestHandler):
    """Echo until the client half-closes, then close."""

    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A threaded echo server on 127.0.0.1."""
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[:2]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    """A proxy in front of the echo server."""
    with FaultProxy(target=echo) as p:
        yield p


def connect(p: FaultProxy) -> socket.socket:
    """A client socket connected through ``p``."""
    return socket.create_connection((p.host, p.port), timeout=DEADLINE)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes or fail (EOF, reset or the socket's timeout)."""
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def roundtrip(p: FaultProxy, payload: bytes = b"ping") -> bytes:
    """Send ``payload`` through a fresh connection and read the echo."""
    with connect(p) as sock:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload))


def is_cut(sock: socket.socket) -> bool:
    """True once the connection was closed or reset by the other end."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except OSError:
        return True


def test_forwards_both_ways_and_counts(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, several chunks
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join(DEADLINE)
        sock.shutdown(socket.SHUT_WR)  # the half-close reaches the server, whose close comes back
        assert sock.recv(1) == b""
    stats = wait_for(lambda: (s := proxy.stats()).active == 0 and s, DEADLINE)
    assert isinstance(stats, ProxyStats)
    assert stats.accepted == 1 and stats.bytes_up == stats.bytes_down == len(payload)
    assert stats.refused == stats.resets == stats.upstream_failures == 0
    assert proxy.address == f"127.0.0.1:{proxy.port}" and stats.partitioned is None


def test_partition_resets_existing_and_new_connections_until_healed(proxy: FaultProxy) -> None:
    existing = connect(proxy)
    existing.sendall(b"hello")
    assert recv_exactly(existing, 5) == b"hello"
    proxy.partition()
    assert proxy.stats().partitioned == "reset"
    wait_for(lambda: is_cut(existing), DEADLINE)
    existing.close()
    with pytest.raises((OSError, EOFError)):
        roundtrip(proxy)
    assert proxy.stats().refused >= 1
    proxy.heal()
    assert roundtrip(proxy) == b"ping"


def test_blackhole_stalls_traffic_until_healed(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"before")
        assert recv_exactly(sock, 6) == b"before"
        proxy.partition("blackhole")
        sock.sendall(b"during")
        late = connect(proxy)  # accepted, but not forwarded either
        late.sendall(b"late")
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert proxy.stats().bytes_down == 6
        proxy.heal()
        sock.settimeout(DEADLINE)
        assert recv_exactly(sock, 6) == b"during"
        with late:
            assert recv_exactly(late, 4) == b"late"


def test_delay_holds_chunks_but_keeps_their_order(proxy: FaultProxy) -> None:
    proxy.delay(0.15)
    assert proxy.stats().delay == 0.15
    with connect(proxy) as sock:
        started = time.monotonic()
        for n in range(20):
            sock.sendall(b"%03d" % n)
        assert recv_exactly(sock, 60) == b"".join(b"%03d" % n for n in range(20))
        assert time.monotonic() - started >= 0.15  # each direction adds at least the delay
        proxy.delay(0)
        sock.sendall(b"now")
        assert recv_exactly(sock, 3) == b"now"
    with pytest.raises(ValueError):
        proxy.delay(-1)


def test_drop_rate_resets_connections_reproducibly(echo: tuple[str, int]) -> None:
    def outcomes(seed: int) -> list[bool]:
        with FaultProxy(target=echo) as p:
            p.drop_rate(0.5, seed=seed)
            results = []
            for _ in range(12):
                try:
                    results.append(roundtrip(p, b"a") == b"a")
                except (OSError, EOFError):
                    results.append(False)
            assert p.stats().resets == results.count(False)
            return results

    first = outcomes(seed=3)
    assert True in first and False in first
    assert outcomes(seed=3) == first
    with FaultProxy(target=echo) as p:
        p.drop_rate(1.0, seed=0)
        with pytest.raises((OSError, EOFError)):
            roundtrip(p)
        p.drop_rate(0.0)
        assert roundtrip(p) == b"ping" and p.stats().drop_rate == 0.0
        with pytest.raises(ValueError):
            p.drop_rate(1.5)


def test_many_concurrent_connections(proxy: FaultProxy) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with connect(proxy) as sock:
                for k in range(5):
                    message = f"{n}:{k};".encode()
                    sock.sendall(message)
                    assert recv_exactly(sock, len(message)) == message
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not errors and not any(t.is_alive() for t in threads)
    assert proxy.stats().accepted == 50
    wait_for(lambda: proxy.stats().active == 0, DEADLINE)


def test_close_cuts_connections_and_stops_listening(echo: tuple[str, int]) -> None:
    p = FaultProxy(target=echo, listen=("127.0.0.2", 0))
    assert p.host == "127.0.0.2"
    sock = connect(p)
    sock.sendall(b"x")
    assert recv_exactly(sock, 1) == b"x"
    thread = p._thread
    p.close()
    assert not thread.is_alive()
    wait_for(lambda: is_cut(sock), DEADLINE)
    sock.close()
    with pytest.raises(OSError):
        roundtrip(p)
    p.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        p.partition()


def test_unreachable_target_closes_the_client() -> None:
    with FaultProxy(target=f"127.0.0.1:{free_port()}") as p:
        try:
            sock = connect(p)
        except OSError:  # the reset can beat the end of the handshake
            pass
        else:
            with sock:
                wait_for(lambda: is_cut(sock), DEADLINE)
        assert wait_for(lambda: p.stats().upstream_failures, DEADLINE) == 1


def test_listens_on_loopback_only(echo: tuple[str, int]) -> None:
    for host in ("0.0.0.0", "192.168.1.1", "localhost", "::1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
            FaultProxy(target=echo, listen=(host, 0))
    with pytest.raises(ValueError, match="mode"), FaultProxy(target=echo) as p:
        p.partition("sideways")  # type: ignore[arg-type]
