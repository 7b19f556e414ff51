"""Every resource bound of the secrets plugin, as a named constant (the core's own bounds
are in :mod:`aspen.limits`).

Input over a bound gets an ``invalid_argument`` (or ``resource_exhausted``) error that
names the bound; nothing is silently truncated.
"""

from __future__ import annotations

# --- Common ---------------------------------------------------------------------------
#: Most keys one LIST of a secrets path returns.
SECRETS_MAX_LIST_KEYS = 10_000
#: Times a secrets engine re-reads and retries a write that raced another one.
SECRETS_MAX_WRITE_ATTEMPTS = 16
#: Longest path inside a secrets mount, in characters.
SECRETS_MAX_PATH_CHARS = 512
#: Largest request body the secrets HTTP API accepts, in bytes.
SECRETS_MAX_REQUEST_BYTES = 2 * 1024 * 1024
#: Keys the secrets store reads per ``kv.range`` page when it scans a prefix.
SECRETS_STORE_PAGE_SIZE = 1000
#: Entries one unmount deletes per transaction while it purges a mount's state.
SECRETS_UNMOUNT_BATCH = 500
#: Most secrets engines mounted at once (the mount table is one stored entry).
SECRETS_MAX_MOUNTS = 256
#: Most data-encryption key versions the keyring keeps (each rotation adds one).
SECRETS_MAX_KEYRING_TERMS = 4096
#: Seconds between attempts to open the keyring while the cluster has no leader.
SECRETS_STARTUP_RETRY_SECONDS = 0.5
#: Leader connections a node keeps open to forward secrets writes (one per endpoint).
SECRETS_MAX_FORWARD_CLIENTS = 16
#: A mount's lease TTLs when it sets none (Vault's system default and maximum, 768h).
SECRETS_SYSTEM_LEASE_TTL_SECONDS = 768 * 3600
#: Longest ``default_lease_ttl`` / ``max_lease_ttl`` a mount may be tuned to (100 years).
SECRETS_MAX_MOUNT_TTL_SECONDS = 100 * 365 * 86400
#: Longest duration any secrets request field (TTLs, periods, buffers) may give (100 years).
SECRETS_MAX_DURATION_SECONDS = 100 * 365 * 86400
#: Bytes of opened (decrypted) stored values a node keeps to skip decrypting them again.
SECRETS_OPEN_CACHE_BYTES = 16 * 1024 * 1024
#: Largest opened value that cache keeps, in bytes (bigger ones are opened on every read).
SECRETS_OPEN_CACHE_MAX_VALUE_BYTES = 64 * 1024

# --- KV v2 ----------------------------------------------------------------------------
#: Versions a KV v2 secret keeps when neither it nor its mount sets ``max_versions`` (Vault's).
KV2_DEFAULT_MAX_VERSIONS = 10
#: Largest ``max_versions`` a KV v2 mount or secret may set (also the most versions one
#: delete/undelete/destroy request may name); keeps one secret's metadata entry and its
#: delete-all commit (one write per version) well inside ``MAX_VALUE_BYTES``/``MAX_TXN_OPS``.
KV2_MAX_VERSIONS = 500
#: Largest ``data`` map of one KV v2 secret version, in bytes (msgpack-encoded).
KV2_MAX_DATA_BYTES = 512 * 1024
#: Deepest nesting of maps and lists inside one KV v2 ``data`` map.
KV2_MAX_DATA_DEPTH = 64
#: Most ``custom_metadata`` keys of one KV v2 secret (Vault's bound).
KV2_MAX_CUSTOM_METADATA_KEYS = 64
#: Longest ``custom_metadata`` key, in bytes (Vault's bound).
KV2_MAX_CUSTOM_METADATA_KEY_BYTES = 128
#: Longest ``custom_metadata`` value, in bytes (Vault's bound).
KV2_MAX_CUSTOM_METADATA_VALUE_BYTES = 512
#: Longest KV v2 secret path, in UTF-8 bytes (its storage keys add a mount prefix and a
#: version number and must stay under ``MAX_KEY_BYTES``).
KV2_MAX_PATH_BYTES = 512

# --- Transit --------------------------------------------------------------------------
#: Largest plaintext or input (after base64 decoding) of one transit operation or batch item.
TRANSIT_MAX_INPUT_BYTES = 1024 * 1024
#: Most items in one transit ``batch_input``.
TRANSIT_MAX_BATCH_ITEMS = 1000
#: Most versions a transit key keeps (all live in one entry); trim old ones to rotate past it.
TRANSIT_MAX_KEY_VERSIONS = 256
#: Longest transit key name, in characters.
TRANSIT_MAX_KEY_NAME_CHARS = 128
#: Most bytes one transit ``random`` request returns (Vault's bound).
TRANSIT_MAX_RANDOM_BYTES = 128 * 1024
#: Longest derivation context, associated data or nonce of a transit request, in bytes.
TRANSIT_MAX_CONTEXT_BYTES = 4096
#: Smallest ``key_size`` of a transit ``hmac`` key, in bytes.
TRANSIT_HMAC_MIN_KEY_BYTES = 32
#: Largest ``key_size`` of a transit ``hmac`` key, in bytes.
TRANSIT_HMAC_MAX_KEY_BYTES = 512
#: Loaded transit key objects (parsed private keys) kept in memory per engine.
TRANSIT_KEY_CACHE_ENTRIES = 256
#: Most ``batch_input`` items a cheap transit operation (AES-GCM, ChaCha20, HMAC) runs on
#: the event loop; bigger batches and RSA/EC work go to a worker thread.
TRANSIT_INLINE_MAX_ITEMS = 16
#: Most input characters (all items) a cheap transit operation runs on the event loop.
TRANSIT_INLINE_MAX_CHARS = 64 * 1024

# --- PKI ------------------------------------------------------------------------------
#: Default TTL of a PKI certificate when neither the request nor the role sets one (768h).
PKI_DEFAULT_TTL_SECONDS = 768 * 3600
#: A PKI mount's maximum TTL when neither the role nor the mount's ``max_lease_ttl`` sets one.
PKI_DEFAULT_MAX_TTL_SECONDS = 768 * 3600
#: Longest TTL any PKI certificate (a CA included) may be asked for (100 years).
PKI_MAX_TTL_SECONDS = 100 * 365 * 86400
#: Seconds a new certificate's ``notBefore`` is back-dated, for clock skew (Vault's 30s).
PKI_NOT_BEFORE_SKEW_SECONDS = 30
#: Seconds a freshly built CRL is valid (its ``nextUpdate``; Vault's 72h).
PKI_CRL_EXPIRY_SECONDS = 72 * 3600
#: Default ``safety_buffer`` of ``tidy``, in seconds (72h).
PKI_TIDY_DEFAULT_SAFETY_BUFFER_SECONDS = 72 * 3600
#: Most stored entries one ``tidy`` deletes per commit.
PKI_TIDY_BATCH = 500
#: Most revocations a PKI mount keeps (they all go into one CRL); ``tidy`` drops expired ones.
#: Below SECRETS_MAX_LIST_KEYS, so that one scan reads them all.
PKI_MAX_REVOKED_CERTS = 5_000
#: Largest PEM input (certificate, chain, CSR, bundle) a PKI request accepts, in bytes.
PKI_MAX_PEM_BYTES = 256 * 1024
#: Most certificates in a CA chain (``intermediate/set-signed``).
PKI_MAX_CHAIN_CERTS = 10
#: Most subject alternative names (DNS, IP, email, URI together) in one certificate.
PKI_MAX_SANS = 256
#: Most items in one list field of a PKI role (``allowed_domains``, ``ou``…).
PKI_MAX_ROLE_LIST_ITEMS = 1000
#: Longest name of a PKI role, in characters.
PKI_MAX_ROLE_NAME_CHARS = 128
#: Longest DNS name, email or URI checked against a role, in characters.
PKI_MAX_NAME_CHARS = 1024
#: Loaded CA issuers (parsed private keys) a process keeps, by stored entry.
PKI_ISSUER_CACHE_ENTRIES = 64

# --- SOPS -----------------------------------------------------------------------------
#: Largest SOPS file (or age key file) ``aspen secrets sops`` reads or writes, in bytes.
SOPS_MAX_FILE_BYTES = 4 * 1024 * 1024
#: Deepest nesting of maps and lists a SOPS document may have.
SOPS_MAX_DEPTH = 64
#: Most values (leaves) one SOPS document may hold.
SOPS_MAX_VALUES = 100_000

__all__ = [name for name in list(globals()) if name.isupper()]
