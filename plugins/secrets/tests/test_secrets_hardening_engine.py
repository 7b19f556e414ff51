"""Engine-level regressions of the review findings: PKI reads and key work, duration and
status-code bounds, unstorable values, config/urls races, IDN names, truncated lists,
pending unmount purges, the ``kv-v2`` mount type, bootstrap check-and-set and SOPS
cleartext root keys."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.bootstrap import import_secrets, load_secrets_file
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.kv2 import KvV2Engine
from aspen_secrets.engines.pki import PkiEngine
from aspen_secrets.engines.pki.issuer import ISSUER_PATH, load_issuer
from aspen_secrets.engines.pki.records import cert_path
from aspen_secrets.engines.transit.batch import single_or_batch
from aspen_secrets.fields import parse_duration
from aspen_secrets.logical import Operation, Request, Response
from aspen_secrets.mounts import MountTable, engine_prefix
from aspen_secrets.sops import encrypt_document
from aspen_secrets.store import MemoryStore, Write

pytestmark = pytest.mark.anyio

R, W, L, D = Operation.READ, Operation.WRITE, Operation.LIST, Operation.DELETE
SOPS_KEYS = Path(__file__).parent / "fixtures" / "sops" / "keys.txt"


class YieldingStore(MemoryStore):
    """A MemoryStore whose reads give the event loop a turn (as the cluster's do), so that
    concurrent requests interleave between their reads and their commit."""

    async def get(self, path: str) -> Any:
        await asyncio.sleep(0)
        return await super().get(path)


async def call(engine: Any, op: Operation, path: str, **data: Any) -> Response:
    """One request to ``engine``."""
    return await engine.handle(Request(op, path, data))


def pki(path: str = "pki/") -> PkiEngine:
    """A PKI engine on a fresh in-memory store."""
    return PkiEngine(YieldingStore(), Mount(path, "pki", f"uuid-{path.strip('/')}"))


def kv2() -> KvV2Engine:
    """A KV v2 engine on a fresh in-memory store."""
    return KvV2Engine(YieldingStore(), Mount("secret/", "kv", "uuid-kv", options={"version": "2"}))


async def root_ca(engine: PkiEngine, **extra: Any) -> None:
    """Generate an EC root CA on ``engine``."""
    data = {"common_name": "Root", "ttl": "87600h", "key_type": "ec", **extra}
    await call(engine, W, "root/generate/internal", **data)


# --- 1. public PKI reads never load the CA key; loaded issuers are cached ----------------


async def test_pki_public_reads_parse_only_certificates() -> None:
    engine = pki()
    await root_ca(engine)
    entry = await engine.store.get(ISSUER_PATH)
    assert entry is not None
    broken = {**entry.value, "key": b"-----BEGIN PRIVATE KEY-----\nnot a key\n"}
    await engine.store.commit([Write(ISSUER_PATH, broken)])
    for path in ("ca", "ca/pem", "ca_chain", "cert/ca", "cert/ca_chain"):
        answer = await call(engine, R, path)  # would fail if the key were loaded
        assert answer.raw or answer.data
    with pytest.raises(InvalidArgumentError):  # the signing paths do load it
        await call(engine, W, "crl/rotate")


async def test_pki_issuer_cached_per_revision() -> None:
    engine = pki()
    await root_ca(engine)
    first = await load_issuer(engine.store)
    assert first is not None and await load_issuer(engine.store) is first
    entry = await engine.store.get(ISSUER_PATH)
    assert entry is not None
    await engine.store.commit([Write(ISSUER_PATH, entry.value)])  # a new revision
    again = await load_issuer(engine.store)
    assert again is not first and again is not None and again.revision != first.revision


# --- 2. key generation and signing run off the event loop ---------------------------------


async def _max_loop_gap(work: Any) -> tuple[float, float]:
    """``(longest pause of the event loop, duration)`` while ``work()`` runs."""
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await work()
    duration = time.perf_counter() - start
    done = True
    await ticker
    return max(gaps), duration


async def test_pki_rsa_key_generation_does_not_block_the_loop() -> None:
    engine = pki()

    async def generate() -> None:
        await root_ca(engine, key_type="rsa", key_bits=4096)

    gap, duration = await _max_loop_gap(generate)
    assert gap < duration / 2, (gap, duration)

    await call(engine, W, "roles/r", allow_any_name=True, key_type="rsa", key_bits=4096)

    async def issue() -> None:
        await call(engine, W, "issue/r", common_name="a.example.com")

    gap, duration = await _max_loop_gap(issue)
    assert gap < duration / 2, (gap, duration)


# --- 5./6. durations are bounded ----------------------------------------------------------


@pytest.mark.parametrize(
    "value", [float("inf"), float("nan"), 1e400, "99999999999h", "9" * 5000, "1" * 400 + "h"]
)
def test_parse_duration_refuses_non_finite_and_huge(value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="SECRETS_MAX_DURATION_SECONDS"):
        parse_duration(value, "ttl")


def test_parse_duration_keeps_normal_values() -> None:
    assert parse_duration("1h30m", "ttl") == 5400
    assert parse_duration(limits.SECRETS_MAX_DURATION_SECONDS, "ttl") == (
        limits.SECRETS_MAX_DURATION_SECONDS
    )


async def test_kv2_huge_delete_version_after_is_refused() -> None:
    engine = kv2()
    await call(engine, W, "data/app", data={"a": "1"})
    for path in ("config", "metadata/app"):
        for value in ("99999999999h", 1e300, "-99999999999h"):
            with pytest.raises(InvalidArgumentError):
                await call(engine, W, path, delete_version_after=value)
    await call(engine, W, "data/app", data={"a": "2"})  # the secret and mount stay writable
    assert (await call(engine, R, "data/app")).data["metadata"]["version"] == 2  # type: ignore[index]


async def test_pki_huge_durations_are_refused() -> None:
    engine = pki()
    await root_ca(engine)
    with pytest.raises(InvalidArgumentError):
        await call(engine, W, "roles/r", allow_any_name=True, not_before_duration="99999999999h")
    await call(engine, W, "roles/r", allow_any_name=True)
    with pytest.raises(InvalidArgumentError):
        await call(engine, W, "issue/r", common_name="a.example.com", ttl=1e400)
    with pytest.raises(InvalidArgumentError):
        await call(engine, W, "tidy", tidy_cert_store=True, safety_buffer="99999999999h")
    await call(engine, W, "issue/r", common_name="a.example.com")  # the role still issues


# --- 7. values that cannot be packed -------------------------------------------------------


async def test_unpackable_values_are_invalid_argument() -> None:
    store = MemoryStore()
    for value in ({"k": "\ud800"}, {"k": 2**70}, {"k": object()}):
        with pytest.raises(InvalidArgumentError, match="cannot be stored"):
            await store.commit([Write("a", {"ok": 1}), Write("b", value)])
        assert await store.get("a") is None  # nothing half-written
    engine = kv2()
    with pytest.raises(InvalidArgumentError):
        await call(engine, W, "data/app", data={"k": "\ud800"})


# --- 8. status-code overrides -------------------------------------------------------------


def test_partial_failure_response_code_must_carry_a_body() -> None:
    def op(item: dict[str, Any]) -> dict[str, Any]:
        if item.get("bad"):
            raise InvalidArgumentError("bad item")
        return {"ok": True}

    items = [{"bad": False}, {"bad": True}]
    for code in (100, 199, 204, 304, 600):
        with pytest.raises(InvalidArgumentError, match="status code"):
            single_or_batch({"batch_input": items, "partial_failure_response_code": code}, op)
    answer = single_or_batch({"batch_input": items, "partial_failure_response_code": 207}, op)
    assert answer.status == 207


# --- 9. config/urls updates do not lose each other ----------------------------------------


class LaggingStore(MemoryStore):
    """A MemoryStore whose reads answer, then give the event loop a turn (a read's answer
    travels back while other requests run), so a write can land between a read and the
    commit based on it."""

    async def get(self, path: str) -> Any:
        found = await super().get(path)
        await asyncio.sleep(0)
        return found


async def test_pki_config_urls_concurrent_updates_both_land() -> None:
    engine = PkiEngine(LaggingStore(), Mount("pki/", "pki", "uuid-pki"))
    ca = {"issuing_certificates": ["http://a/ca"]}
    crl = {"crl_distribution_points": ["http://a/crl"]}
    async with anyio.create_task_group() as tg:
        for data in (ca, crl):
            tg.start_soon(engine.handle, Request(W, "config/urls", data))
    urls = (await call(engine, R, "config/urls")).data or {}
    assert urls["issuing_certificates"] == ["http://a/ca"]
    assert urls["crl_distribution_points"] == ["http://a/crl"]


# --- 12. truncated lists say so ------------------------------------------------------------


async def test_lists_cut_at_the_limit_warn() -> None:
    engine = kv2()
    limit = limits.SECRETS_MAX_LIST_KEYS
    await engine.store.commit([Write(f"meta/s{i:05d}", {}) for i in range(limit + 1)])
    answer = await call(engine, L, "metadata")
    assert len((answer.data or {})["keys"]) == limit
    assert answer.warnings == (f"list truncated at {limit} keys",)

    ca = pki()
    await ca.store.commit([Write(cert_path(f"{i:06x}"), {}) for i in range(limit + 1)])
    answer = await call(ca, L, "certs")
    assert answer.warnings == (f"list truncated at {limit} keys",)

    small = pki()
    await root_ca(small)
    assert (await call(small, L, "certs")).warnings == ()


# --- 13. internationalized names ----------------------------------------------------------


async def test_pki_idn_names_become_a_labels() -> None:
    engine = pki()
    await root_ca(engine)
    await call(
        engine, W, "roles/r", allowed_domains="example.com", allow_subdomains=True, key_type="ec"
    )
    answer = await call(
        engine, W, "issue/r", common_name="bücher.example.com", alt_names="*.straße.example.com"
    )
    cert = x509.load_pem_x509_certificate((answer.data or {})["certificate"].encode())
    sans = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {  # type: ignore[attr-defined]
        "xn--bcher-kva.example.com",
        "*.strasse.example.com",  # IDNA 2003 maps ß to ss
    }
    with pytest.raises(InvalidArgumentError):  # still judged by the role first
        await call(engine, W, "issue/r", common_name="bücher.example.org")


# --- 4./3. unmount purges survive a failure; kv-v2 type -------------------------------------


class FailingPurgeStore(MemoryStore):
    """A MemoryStore whose commits of engine-state deletions fail while ``fail`` is set."""

    fail = True

    async def commit(self, writes: Any) -> bool:
        if self.fail and any(w.delete and w.path.startswith("mounts/") for w in writes):
            raise InvalidArgumentError("the disk is on fire")
        return await super().commit(writes)


async def test_unmount_records_pending_purge_and_resumes() -> None:
    store = FailingPurgeStore()
    table = MountTable(store)
    await table.ensure_defaults()
    mount = await table.mount("team", "kv")
    prefix = engine_prefix(mount.uuid)
    await store.commit([Write(prefix + f"e{i}", {"v": i}) for i in range(3)])
    with pytest.raises(InvalidArgumentError, match="on fire"):
        await table.unmount("team")
    entry = await store.get("core/mounts")
    assert "team/" not in await table.read()
    assert MountTable.pending_purges(entry) == [mount.uuid]
    assert await store.keys(prefix)

    store.fail = False
    assert await table.unmount("team") is None  # a retry succeeds and finishes the purge
    assert await store.keys(prefix) == []
    assert MountTable.pending_purges(await store.get("core/mounts")) == []
    assert "secret/" in await table.read()  # the other mounts are untouched


async def test_resume_purges_at_start_up() -> None:
    store = FailingPurgeStore()
    table = MountTable(store)
    mount = await table.mount("team", "kv")
    await store.commit([Write(engine_prefix(mount.uuid) + "e", {})])
    with pytest.raises(InvalidArgumentError):
        await table.unmount("team")
    store.fail = False
    assert await table.resume_purges() == 1
    assert MountTable.pending_purges(await store.get("core/mounts")) == []


async def test_kv_v2_type_is_kv_version_2() -> None:
    table = MountTable(MemoryStore())
    mount = await table.mount("kv2", "kv-v2")
    assert (mount.type, mount.options) == ("kv", {"version": "2"})
    with pytest.raises(InvalidArgumentError, match="only KV version 2"):
        await table.mount("kv1", "kv-v2", options={"version": "1"})


# --- 11. bootstrap imports use check-and-set -------------------------------------------------


class EngineDispatcher:
    """The dispatcher's ``dispatch`` over one KV v2 engine mounted at ``secret/``."""

    def __init__(self, engine: KvV2Engine) -> None:
        self.engine = engine

    async def dispatch(self, path: str, request: Request, **_: Any) -> Response:
        answer = await self.engine.handle(replace(request, path=path[len("secret/") :]))
        return answer if isinstance(answer, Response) else Response(answer)


async def test_concurrent_bootstrap_imports_add_one_version() -> None:
    engine = kv2()
    dispatcher: Any = EngineDispatcher(engine)
    reports: list[dict[str, Any]] = []

    async def run() -> None:
        reports.append(await import_secrets(dispatcher, {"db": {"password": "pw"}}))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(run)
    meta = (await call(engine, R, "metadata/db")).data or {}
    assert meta["current_version"] == 1
    assert sorted(len(r["written"]) for r in reports) == [0, 0, 1]


# --- 10. a cleartext aspen_root_key is refused ------------------------------------------------


def _recipients() -> list[str]:
    return re.findall(r"# public key: (age1\w+)", SOPS_KEYS.read_text())


def test_cleartext_root_key_in_sops_file_is_refused(tmp_path: Path) -> None:
    doc = {"aspen_root_key": "00" * 32, "api": "tok"}
    clear = tmp_path / "clear.json"
    clear.write_bytes(
        encrypt_document(doc, "json", _recipients(), unencrypted_regex="^aspen_root_key$")
    )
    with pytest.raises(InvalidArgumentError, match=r"clear\.json.*aspen_root_key is not encrypted"):
        load_secrets_file(clear, SOPS_KEYS)
    sealed = tmp_path / "sealed.json"
    sealed.write_bytes(encrypt_document(doc, "json", _recipients()))
    assert load_secrets_file(sealed, SOPS_KEYS)["aspen_root_key"] == "00" * 32
