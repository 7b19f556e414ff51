"""Credential files in a node's data directory that the node, the CLI and the transport share.

Kept in a module of its own with no imports, so the CLI and the dev cluster can name them
without loading the transport (nor the standard library's ``secrets``, which ``bench/secrets.py``
shadows for the scripts in ``bench/``).
"""

from __future__ import annotations

__all__ = ["ROOT_TOKEN_FILE"]

#: Name of the root token file inside a node's data directory (mode 0600): the client token
#: the node accepts as ``root``, written at start-up or from a join grant.
ROOT_TOKEN_FILE = "root-token"
