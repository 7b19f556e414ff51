"""aspen-secrets: Vault-compatible secrets engines (KV v2, Transit, PKI) on an Aspen cluster.

The plugin's hooks live in :mod:`aspen_secrets.plugin` (the ``aspen`` entry point).
"""

__version__ = "0.1.0"
