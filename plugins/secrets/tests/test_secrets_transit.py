"""The transit engine through ``engine.handle(Request(...))`` on an in-memory store.

Results are also checked independently with ``cryptography`` (public keys from the key
info, exported material) so that the engine is not only consistent with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aspen.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen_secrets import limits
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.transit import TransitEngine
from aspen_secrets.logical import Operation, Request, Response, http_status
from aspen_secrets.store import MemoryStore

pytestmark = pytest.mark.anyio

R, W, L, D = Operation.READ, Operation.WRITE, Operation.LIST, Operation.DELETE
ENCRYPTION_TYPES = ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "rsa-2048"]


@pytest.fixture
def anyio_backend() -> str:
    """Run on asyncio, as nodes do."""
    return "asyncio"


@pytest.fixture
def engine() -> TransitEngine:
    """A transit engine on a fresh in-memory store."""
    return TransitEngine(MemoryStore(), Mount("transit/", "transit", "uuid-transit"))


def b64(raw: bytes) -> str:
    """Base64 text of ``raw``."""
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    """Bytes of base64 ``text``."""
    return base64.b64decode(text)


async def call(engine: TransitEngine, op: Operation, path: str, **data: Any) -> Response:
    """One request."""
    return await engine.handle(Request(op, path, data))


async def ok(engine: TransitEngine, op: Operation, path: str, **data: Any) -> dict[str, Any]:
    """One request that must succeed with data; its data."""
    response = await call(engine, op, path, **data)
    assert response.status is None, response
    assert response.data is not None
    return response.data


async def fails(
    engine: TransitEngine, op: Operation, path: str, match: str, status: int = 400, **data: Any
) -> None:
    """One request that must fail with ``status`` and a message matching ``match``."""
    with pytest.raises(Exception) as info:
        await call(engine, op, path, **data)
    assert http_status(info.value) == status, info.value
    assert info.match(match)


async def encrypt(engine: TransitEngine, name: str, plaintext: bytes, **extra: Any) -> str:
    """Ciphertext of ``plaintext`` under key ``name``."""
    return (await ok(engine, W, f"encrypt/{name}", plaintext=b64(plaintext), **extra))["ciphertext"]


async def decrypt(engine: TransitEngine, name: str, ciphertext: str, **extra: Any) -> bytes:
    """Plaintext of ``ciphertext`` under key ``name``."""
    return unb64(
        (await ok(engine, W, f"decrypt/{name}", ciphertext=ciphertext, **extra))["plaintext"]
    )


# --- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [*ENCRYPTION_TYPES, "rsa-3072", "rsa-4096"])
async def test_every_encryption_type_round_trips(engine: TransitEngine, key_type: str) -> None:
    info = await ok(engine, W, "keys/k", type=key_type)
    assert info["type"] == key_type and info["supports_encryption"] and info["latest_version"] == 1
    for plaintext in (b"", b"hello transit", bytes(range(128))):
        ciphertext = await encrypt(engine, "k", plaintext)
        assert ciphertext.startswith("vault:v1:")
        assert await decrypt(engine, "k", ciphertext) == plaintext
    assert await encrypt(engine, "k", b"x") != await encrypt(engine, "k", b"x")


async def test_key_info_has_vaults_shape(engine: TransitEngine) -> None:
    aes = await ok(engine, W, "keys/aes")
    assert aes["type"] == "aes256-gcm96"
    assert isinstance(aes["keys"]["1"], int)
    assert aes["min_decryption_version"] == 1 and aes["min_encryption_version"] == 0
    assert not aes["deletion_allowed"] and not aes["exportable"] and not aes["derived"]
    assert aes["supports_derivation"] and not aes["supports_signing"]
    assert await ok(engine, R, "keys/aes") == aes

    ed = await ok(engine, W, "keys/ed", type="ed25519")
    assert ed["supports_signing"] and not ed["supports_encryption"]
    public = unb64(ed["keys"]["1"]["public_key"])
    ed25519.Ed25519PublicKey.from_public_bytes(public)
    assert ed["keys"]["1"]["name"] == "ed25519" and ed["keys"]["1"]["creation_time"].endswith("Z")

    ec_info = await ok(engine, W, "keys/ec", type="ecdsa-p384")
    assert ec_info["keys"]["1"]["name"] == "P-384"
    loaded = serialization.load_pem_public_key(ec_info["keys"]["1"]["public_key"].encode())
    assert isinstance(loaded, ec.EllipticCurvePublicKey) and loaded.curve.name == "secp384r1"

    mac = await ok(engine, W, "keys/mac", type="hmac", key_size=64)
    assert mac["key_size"] == 64 and not mac["supports_encryption"]

    derived = await ok(engine, W, "keys/conv", derived=True, convergent_encryption=True)
    assert derived["kdf"] == "hkdf_sha256" and derived["convergent_encryption"]
    assert (await ok(engine, L, "keys")) == {"keys": ["aes", "conv", "ec", "ed", "mac"]}


async def test_key_creation_rules(engine: TransitEngine) -> None:
    await fails(engine, W, "keys/k", r"unknown key type 'des'.*aes256-gcm96.*rsa-4096", type="des")
    await fails(engine, W, "keys/k", "requires derivation", convergent_encryption=True)
    await fails(engine, W, "keys/k", "derivation is not supported", type="rsa-2048", derived=True)
    await fails(engine, W, "keys/k", "key_size is not valid", key_size=64)
    await fails(engine, W, "keys/k", "between 32 and 512", type="hmac", key_size=16)
    await fails(engine, R, "keys/k", "not found", status=404)
    await fails(engine, L, "keys", "no transit keys", status=404)
    first = await ok(engine, W, "keys/k")
    again = await call(engine, W, "keys/k", type="ed25519")
    assert again.data == first and again.warnings == ("key k already existed",)


async def test_delete_only_when_allowed(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/k")
    await fails(engine, D, "keys/k", "deletion is not allowed")
    info = await ok(engine, W, "keys/k/config", deletion_allowed=True)
    assert info["deletion_allowed"]
    assert (await call(engine, D, "keys/k")).data is None
    await fails(engine, R, "keys/k", "not found", status=404)


async def test_rotate_and_min_versions(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/k")
    old = await encrypt(engine, "k", b"one")
    info = await ok(engine, W, "keys/k/rotate")
    assert info["latest_version"] == 2 and set(info["keys"]) == {"1", "2"}
    new = await encrypt(engine, "k", b"two")
    assert new.startswith("vault:v2:")
    assert (await encrypt(engine, "k", b"x", key_version=1)).startswith("vault:v1:")
    assert await decrypt(engine, "k", old) == b"one"

    await fails(engine, W, "keys/k/config", "latest key version is 2", min_decryption_version=3)
    await fails(engine, W, "keys/k/config", "latest key version is 2", min_encryption_version=3)
    assert (await ok(engine, W, "keys/k/config", min_decryption_version=2))[
        "min_decryption_version"
    ] == 2
    await fails(engine, W, "decrypt/k", r"disallowed by policy \(too old\)", ciphertext=old)
    assert await decrypt(engine, "k", new) == b"two"
    await fails(
        engine, W, "keys/k/config", "must be greater than or equal", min_encryption_version=1
    )
    await ok(engine, W, "keys/k/config", min_encryption_version=2)
    await fails(engine, W, "encrypt/k", "below the minimum", plaintext=b64(b"x"), key_version=1)
    await fails(
        engine, W, "encrypt/k", "greater than the latest", plaintext=b64(b"x"), key_version=9
    )


async def test_rotation_is_bounded_and_trim_frees_versions(
    engine: TransitEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "TRANSIT_MAX_KEY_VERSIONS", 3)
    await ok(engine, W, "keys/k")
    await ok(engine, W, "keys/k/rotate")
    await ok(engine, W, "keys/k/rotate")
    with pytest.raises(ResourceExhaustedError, match="trim old versions"):
        await call(engine, W, "keys/k/rotate")
    await fails(engine, W, "keys/k/trim", "min decryption version is 1", min_available_version=2)
    await ok(engine, W, "keys/k/config", min_decryption_version=2)
    info = await ok(engine, W, "keys/k/trim", min_available_version=2)
    assert set(info["keys"]) == {"2", "3"} and info["min_available_version"] == 2
    await fails(engine, W, "keys/k/config", "below the min available", min_decryption_version=1)
    assert (await ok(engine, W, "keys/k/rotate"))["latest_version"] == 4


async def test_rewrap_moves_to_the_latest_version(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/k")
    old = await encrypt(engine, "k", b"secret")
    await ok(engine, W, "keys/k/rotate")
    rewrapped = await ok(engine, W, "rewrap/k", ciphertext=old)
    assert rewrapped["key_version"] == 2 and rewrapped["ciphertext"].startswith("vault:v2:")
    assert await decrypt(engine, "k", rewrapped["ciphertext"]) == b"secret"
    batch = await ok(engine, W, "rewrap/k", batch_input=[{"ciphertext": old}, {"ciphertext": "x"}])
    assert batch["batch_results"][0]["key_version"] == 2
    assert "no prefix" in batch["batch_results"][1]["error"]


# --- derivation and convergence ----------------------------------------------------------


async def test_derived_keys_need_the_right_context(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/d", derived=True)
    ctx = b64(b"tenant-1")
    await fails(engine, W, "encrypt/d", "missing 'context'", plaintext=b64(b"x"))
    ciphertext = await encrypt(engine, "d", b"data", context=ctx)
    assert await decrypt(engine, "d", ciphertext, context=ctx) == b"data"
    await fails(
        engine,
        W,
        "decrypt/d",
        "message authentication failed",
        ciphertext=ciphertext,
        context=b64(b"tenant-2"),
    )
    await fails(engine, W, "decrypt/d", "missing 'context'", ciphertext=ciphertext)
    # Not deterministic without convergent encryption.
    assert await encrypt(engine, "d", b"data", context=ctx) != ciphertext


async def test_convergent_encryption_is_deterministic(engine: TransitEngine) -> None:
    await ok(
        engine, W, "keys/c", derived=True, convergent_encryption=True, type="chacha20-poly1305"
    )
    one, two = b64(b"ctx-1"), b64(b"ctx-2")
    first = await encrypt(engine, "c", b"same", context=one)
    assert await encrypt(engine, "c", b"same", context=one) == first
    assert await encrypt(engine, "c", b"same", context=two) != first
    assert await encrypt(engine, "c", b"other", context=one) != first
    aad = await encrypt(engine, "c", b"same", context=one, associated_data=b64(b"aad"))
    assert aad != first
    assert await decrypt(engine, "c", first, context=one) == b"same"
    assert await decrypt(engine, "c", aad, context=one, associated_data=b64(b"aad")) == b"same"
    await fails(engine, W, "decrypt/c", "authentication failed", ciphertext=aad, context=one)
    await fails(
        engine,
        W,
        "encrypt/c",
        "nonce not allowed",
        plaintext=b64(b"x"),
        context=one,
        nonce=b64(bytes(12)),
    )
    await ok(engine, W, "keys/c/rotate")
    assert (await encrypt(engine, "c", b"same", context=one)).startswith("vault:v2:")


async def test_encrypt_creates_missing_keys_like_vault(engine: TransitEngine) -> None:
    await encrypt(engine, "plain", b"x")
    assert (await ok(engine, R, "keys/plain"))["type"] == "aes256-gcm96"
    await encrypt(engine, "cha", b"x", type="chacha20-poly1305", context=b64(b"c"))
    info = await ok(engine, R, "keys/cha")
    assert info["type"] == "chacha20-poly1305" and info["derived"]
    await fails(
        engine, W, "encrypt/sig", "does not support encryption", type="ed25519", plaintext=b64(b"x")
    )
    await fails(engine, R, "keys/sig", "not found", status=404)


# --- data keys, random, hash -------------------------------------------------------------


async def test_datakeys(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/k")
    plain = await ok(engine, W, "datakey/plaintext/k")
    key = unb64(plain["plaintext"])
    assert len(key) == 32 and plain["key_version"] == 1
    assert await decrypt(engine, "k", plain["ciphertext"]) == key
    wrapped = await ok(engine, W, "datakey/wrapped/k", bits=512)
    assert "plaintext" not in wrapped
    assert len(await decrypt(engine, "k", wrapped["ciphertext"])) == 64
    assert len(unb64((await ok(engine, W, "datakey/plaintext/k", bits="128"))["plaintext"])) == 16
    await fails(engine, W, "datakey/plaintext/k", "bits must be one of", bits=100)
    await fails(engine, W, "datakey/other/k", "plaintext or wrapped")
    await fails(engine, W, "datakey/plaintext/missing", "not found")


async def test_random(engine: TransitEngine) -> None:
    assert len(unb64((await ok(engine, W, "random"))["random_bytes"])) == 32
    assert len((await ok(engine, W, "random/16", format="hex"))["random_bytes"]) == 32
    assert len(unb64((await ok(engine, W, "random", bytes=8))["random_bytes"])) == 8
    assert len(unb64((await ok(engine, W, "random/all/24"))["random_bytes"])) == 24
    assert len(unb64((await ok(engine, W, "random/seal"))["random_bytes"])) == 32
    await fails(engine, W, "random/moon/4", "unsupported random source")
    await fails(engine, W, "random", "at most", bytes=limits.TRANSIT_MAX_RANDOM_BYTES + 1)
    await fails(engine, W, "random", "one of hex, base64", format="base32")


async def test_hash(engine: TransitEngine) -> None:
    data = b"hash me"
    assert (await ok(engine, W, "hash", input=b64(data)))["sum"] == hashlib.sha256(data).hexdigest()
    for name, ref in (("sha2-512", "sha512"), ("sha3-256", "sha3_256"), ("sha2-224", "sha224")):
        got = await ok(engine, W, f"hash/{name}", input=b64(data), format="base64")
        assert unb64(got["sum"]) == hashlib.new(ref, data).digest()
    got = await ok(engine, W, "hash", input=b64(data), algorithm="sha3-512")
    assert got["sum"] == hashlib.sha3_512(data).hexdigest()
    await fails(engine, W, "hash/md5", "unsupported hash algorithm", input=b64(data))
    await fails(engine, W, "hash", "not valid base64", input="***")
    await fails(engine, W, "hash", "missing required field 'input'")


# --- HMAC and signatures -----------------------------------------------------------------


async def test_hmac_with_any_key_and_verify(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/k", exportable=True)
    data = b"message"
    mac = (await ok(engine, W, "hmac/k", input=b64(data)))["hmac"]
    hmac_key = unb64((await ok(engine, R, "export/hmac-key/k/1"))["keys"]["1"])
    assert mac == "vault:v1:" + b64(hmac.new(hmac_key, data, "sha256").digest())
    mac512 = (await ok(engine, W, "hmac/k/sha2-512", input=b64(data)))["hmac"]
    assert unb64(mac512.split(":")[2]) == hmac.new(hmac_key, data, "sha512").digest()
    assert (await ok(engine, W, "verify/k", input=b64(data), hmac=mac))["valid"]
    assert (await ok(engine, W, "verify/k/sha2-512", input=b64(data), hmac=mac512))["valid"]
    assert not (await ok(engine, W, "verify/k", input=b64(b"other"), hmac=mac))["valid"]
    await fails(engine, W, "verify/k", "exactly one of", input=b64(data))
    await fails(engine, W, "hmac/k/md5", "unsupported hash algorithm", input=b64(data))

    await ok(engine, W, "keys/h", type="hmac", key_size=48, exportable=True)
    key = unb64((await ok(engine, R, "export/hmac-key/h/latest"))["keys"]["1"])
    assert len(key) == 48
    batch = await ok(engine, W, "hmac/h", batch_input=[{"input": b64(b"a")}, {"input": "%%"}])
    first, second = batch["batch_results"]
    assert first["hmac"] == "vault:v1:" + b64(hmac.new(key, b"a", "sha256").digest())
    assert "base64" in second["error"]
    await fails(engine, W, "encrypt/h", "does not support encryption", plaintext=b64(b"x"))


def _check_independently(info: dict[str, Any], data: bytes, raw: bytes, algorithm: str) -> None:
    """Verify a raw signature with the public key the engine shows, via cryptography."""
    text = info["keys"]["1"]["public_key"]
    if info["type"] == "ed25519":
        ed25519.Ed25519PublicKey.from_public_bytes(unb64(text)).verify(raw, data)
        return
    public = serialization.load_pem_public_key(text.encode())
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(raw, data, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "pkcs1v15":
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        public.verify(raw, data, pss, hashes.SHA256())


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [
        ("ed25519", "pss"),
        ("ecdsa-p256", "pss"),
        ("ecdsa-p384", "pss"),
        ("ecdsa-p521", "pss"),
        ("rsa-2048", "pss"),
        ("rsa-2048", "pkcs1v15"),
    ],
)
async def test_sign_and_verify_every_signing_type(
    engine: TransitEngine, key_type: str, algorithm: str
) -> None:
    info = await ok(engine, W, "keys/s", type=key_type)
    data = b"signed data"
    signed = await ok(engine, W, "sign/s", input=b64(data), signature_algorithm=algorithm)
    assert signed["key_version"] == 1 and signed["signature"].startswith("vault:v1:")
    _check_independently(info, data, unb64(signed["signature"][9:]), algorithm)
    check = {"signature": signed["signature"], "signature_algorithm": algorithm}
    assert (await ok(engine, W, "verify/s", input=b64(data), **check))["valid"]
    assert not (await ok(engine, W, "verify/s", input=b64(b"tampered"), **check))["valid"]
    await ok(engine, W, "keys/s/rotate")
    newer = await ok(engine, W, "sign/s", input=b64(data), signature_algorithm=algorithm)
    assert newer["key_version"] == 2
    assert (await ok(engine, W, "verify/s", input=b64(data), **check))["valid"]


async def test_signature_options(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/ec", type="ecdsa-p256")
    data = b"payload"
    jws = (await ok(engine, W, "sign/ec/sha2-384", input=b64(data), marshaling_algorithm="jws"))[
        "signature"
    ]
    raw = base64.urlsafe_b64decode(jws[9:] + "=" * (-len(jws[9:]) % 4))
    assert len(raw) == 64
    public = serialization.load_pem_public_key(
        (await ok(engine, R, "keys/ec"))["keys"]["1"]["public_key"].encode()
    )
    assert isinstance(public, ec.EllipticCurvePublicKey)
    der = utils.encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
    public.verify(der, data, ec.ECDSA(hashes.SHA384()))
    verify = {"input": b64(data), "signature": jws, "marshaling_algorithm": "jws"}
    assert (await ok(engine, W, "verify/ec/sha2-384", **verify))["valid"]
    assert not (await ok(engine, W, "verify/ec/sha2-256", **verify))["valid"]

    digest = hashlib.sha256(data).digest()
    pre = await ok(engine, W, "sign/ec", input=b64(digest), prehashed=True)
    public.verify(unb64(pre["signature"][9:]), data, ec.ECDSA(hashes.SHA256()))
    assert (await ok(engine, W, "verify/ec", input=b64(data), signature=pre["signature"]))["valid"]

    await fails(
        engine,
        W,
        "sign/ec",
        "unsupported marshaling_algorithm",
        input=b64(data),
        marshaling_algorithm="der",
    )
    await fails(engine, W, "sign/ec/md5", "unsupported hash algorithm", input=b64(data))
    await fails(engine, W, "sign/ec", "invalid salt_length", input=b64(data), salt_length="x")
    await ok(engine, W, "keys/ed", type="ed25519")
    await fails(
        engine, W, "sign/ed", "prehashed input is not supported", input=b64(digest), prehashed=True
    )
    await ok(engine, W, "keys/aes")
    await fails(engine, W, "sign/aes", "does not support signing", input=b64(data))
    await fails(
        engine, W, "verify/ec", "invalid signature: no prefix", input=b64(data), signature="nope"
    )


async def test_derived_ed25519_signs_per_context(engine: TransitEngine) -> None:
    info = await ok(engine, W, "keys/ed", type="ed25519", derived=True)
    assert "public_key" not in info["keys"]["1"]
    data, ctx = b64(b"m"), b64(b"ctx")
    await fails(engine, W, "sign/ed", "missing 'context'", input=data)
    signature = (await ok(engine, W, "sign/ed", input=data, context=ctx))["signature"]
    assert (await ok(engine, W, "verify/ed", input=data, context=ctx, signature=signature))["valid"]
    other = {"input": data, "context": b64(b"other"), "signature": signature}
    assert not (await ok(engine, W, "verify/ed", **other))["valid"]


async def test_recreated_key_does_not_reuse_cached_material(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/s", type="ecdsa-p256")
    signature = (await ok(engine, W, "sign/s", input=b64(b"m")))["signature"]
    await ok(engine, W, "keys/s/config", deletion_allowed=True)
    await call(engine, D, "keys/s")
    await ok(engine, W, "keys/s", type="ecdsa-p256")
    assert not (await ok(engine, W, "verify/s", input=b64(b"m"), signature=signature))["valid"]


# --- batches -----------------------------------------------------------------------------


async def test_batch_with_per_item_errors(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/k", derived=True)
    ctx = b64(b"c")
    items = [
        {"plaintext": b64(b"one"), "context": ctx, "reference": "a"},
        {"plaintext": "not base64!", "context": ctx, "reference": "b"},
        {"plaintext": b64(b"three")},
        "not an object",
    ]
    response = await call(engine, W, "encrypt/k", batch_input=items)
    assert response.status is None
    one, two, three, four = response.data["batch_results"]
    assert one["reference"] == "a" and one["ciphertext"].startswith("vault:v1:")
    assert two == {"error": "field 'plaintext' is not valid base64", "reference": "b"}
    assert "missing 'context'" in three["error"] and "error" in four

    decrypted = await ok(
        engine,
        W,
        "decrypt/k",
        batch_input=[
            {"ciphertext": one["ciphertext"], "context": ctx},
            {"ciphertext": "vault:v1:AAAA"},
        ],
    )
    first, second = decrypted["batch_results"]
    assert unb64(first["plaintext"]) == b"one" and "error" in second

    all_bad = await call(engine, W, "encrypt/k", batch_input=[{"plaintext": "!"}])
    assert all_bad.status == 400 and "error" in all_bad.data["batch_results"][0]
    partial = await call(
        engine,
        W,
        "encrypt/k",
        partial_failure_response_code=207,
        batch_input=[{"plaintext": b64(b"x"), "context": ctx}, {"plaintext": "!"}],
    )
    assert partial.status == 207
    await fails(engine, W, "encrypt/k", "missing batch input", batch_input=[])
    await fails(engine, W, "encrypt/k", "must be a list", batch_input="x")
    too_many = [{"plaintext": ""}] * (limits.TRANSIT_MAX_BATCH_ITEMS + 1)
    await fails(
        engine, W, "encrypt/k", f"at most {limits.TRANSIT_MAX_BATCH_ITEMS}", batch_input=too_many
    )


async def test_batch_sign_and_verify(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/ed", type="ed25519")
    signed = await ok(
        engine, W, "sign/ed", batch_input=[{"input": b64(b"a")}, {"input": b64(b"b")}]
    )
    sigs = [r["signature"] for r in signed["batch_results"]]
    verified = await ok(
        engine,
        W,
        "verify/ed",
        batch_input=[
            {"input": b64(b"a"), "signature": sigs[0]},
            {"input": b64(b"a"), "signature": sigs[1]},
            {"input": b64(b"b"), "signature": "junk"},
        ],
    )
    results = verified["batch_results"]
    assert results[0] == {"valid": True} and results[1] == {"valid": False}
    assert "no prefix" in results[2]["error"]


# --- export ------------------------------------------------------------------------------


async def test_export_rules(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/locked")
    await fails(engine, R, "export/encryption-key/locked", "not exportable")
    await fails(engine, R, "export/public-key/locked", "not supported for key type")
    await fails(engine, R, "export/encryption-key/missing", "not found", status=404)

    await ok(engine, W, "keys/k", exportable=True)
    ciphertext = await encrypt(engine, "k", b"independent")
    exported = await ok(engine, R, "export/encryption-key/k")
    assert exported["name"] == "k" and exported["type"] == "aes256-gcm96"
    blob = unb64(ciphertext.split(":")[2])
    key = unb64(exported["keys"]["1"])
    assert AESGCM(key).decrypt(blob[:12], blob[12:], None) == b"independent"
    await ok(engine, W, "keys/k/rotate")
    assert set((await ok(engine, R, "export/encryption-key/k"))["keys"]) == {"1", "2"}
    assert set((await ok(engine, R, "export/encryption-key/k/latest"))["keys"]) == {"2"}
    await ok(engine, W, "keys/k/config", min_decryption_version=2)
    await fails(engine, R, "export/encryption-key/k/1", "not available for export")
    await fails(engine, R, "export/encryption-key/k/x", "a number or 'latest'")
    await fails(engine, R, "export/signing-key/k", "not supported for key type")
    await fails(engine, R, "export/bogus-key/k", "invalid export type")
    await fails(engine, W, "keys/k/config", "cannot be disabled", exportable=False)

    info = await ok(engine, W, "keys/ed", type="ed25519")
    public = await ok(engine, R, "export/public-key/ed")
    assert public["keys"]["1"] == info["keys"]["1"]["public_key"]
    await fails(engine, R, "export/signing-key/ed", "not exportable")
    await ok(engine, W, "keys/ed/config", exportable=True)
    pair = unb64((await ok(engine, R, "export/signing-key/ed"))["keys"]["1"])
    assert len(pair) == 64
    signature = (await ok(engine, W, "sign/ed", input=b64(b"m")))["signature"]
    private = ed25519.Ed25519PrivateKey.from_private_bytes(pair[:32])
    assert b64(private.sign(b"m")) == signature.split(":")[2]

    await ok(engine, W, "keys/rsa", type="rsa-2048", exportable=True)
    pem = (await ok(engine, R, "export/encryption-key/rsa"))["keys"]["1"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    await ok(engine, W, "keys/ec", type="ecdsa-p256", exportable=True)
    pem = (await ok(engine, R, "export/signing-key/ec"))["keys"]["1"]
    assert pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    signature = (await ok(engine, W, "sign/ec", input=b64(b"m")))["signature"]
    loaded = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    loaded.public_key().verify(unb64(signature[9:]), b"m", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        loaded.public_key().verify(unb64(signature[9:]), b"x", ec.ECDSA(hashes.SHA256()))


# --- bad input ---------------------------------------------------------------------------


async def test_bad_ciphertexts_are_clear_400s(engine: TransitEngine) -> None:
    await ok(engine, W, "keys/a")
    await ok(engine, W, "keys/b")
    ciphertext = await encrypt(engine, "a", b"secret")
    body = bytearray(unb64(ciphertext.split(":")[2]))
    body[-1] ^= 1
    tampered = "vault:v1:" + b64(bytes(body))
    for bad, message in (
        (ciphertext, "cipher: message authentication failed"),  # another key's ciphertext
        (tampered, "cipher: message authentication failed"),
        ("vault:v1:" + b64(b"short"), "too short"),
        ("vault:v7:" + ciphertext.split(":")[2], "invalid key version 7"),
        ("vault:vx:" + ciphertext.split(":")[2], "version number could not be decoded"),
        ("vault:v1:***", "could not decode base64"),
        ("other:v1:abc", "no prefix"),
        ("plain", "no prefix"),
    ):
        await fails(engine, W, "decrypt/b", message, ciphertext=bad)
    await fails(engine, W, "decrypt/b", "must be a string", ciphertext=["x"])
    await fails(engine, W, "decrypt/b", "missing required field 'ciphertext'")
    await fails(engine, W, "decrypt/nokey", "key 'nokey' not found", ciphertext=ciphertext)
    await fails(engine, W, "encrypt/a", "missing required field 'plaintext'")
    await fails(engine, W, "encrypt/a", "not valid base64", plaintext="@@@")
    oversize = b64(bytes(limits.TRANSIT_MAX_INPUT_BYTES + 1))
    await fails(
        engine, W, "encrypt/a", f"larger than {limits.TRANSIT_MAX_INPUT_BYTES}", plaintext=oversize
    )
    await ok(engine, W, "keys/rsa", type="rsa-2048")
    await fails(engine, W, "encrypt/rsa", "too long for an RSA-OAEP", plaintext=b64(bytes(300)))
    rsa_ct = await encrypt(engine, "rsa", b"x")
    await fails(
        engine, W, "decrypt/rsa", "decryption error", ciphertext="vault:v1:" + b64(bytes(256))
    )
    assert await decrypt(engine, "rsa", rsa_ct) == b"x"
    await ok(engine, W, "keys/ed", type="ed25519")
    await fails(engine, W, "decrypt/ed", "does not support decryption", ciphertext=ciphertext)
    with pytest.raises(NotFoundError):
        await call(engine, W, "keys/missing/rotate")
    with pytest.raises(InvalidArgumentError, match="longer than"):
        await call(engine, W, "keys/" + "n" * (limits.TRANSIT_MAX_KEY_NAME_CHARS + 1))
    await fails(engine, W, "keys/a", "not supported", auto_rotate_period="24h")
    await fails(engine, R, "encrypt/a", "not supported", status=405)
    await fails(engine, W, "nowhere", "unsupported path", status=404)
