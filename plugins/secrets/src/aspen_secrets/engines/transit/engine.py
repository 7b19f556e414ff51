"""The transit engine: Vault's encryption-as-a-service on named, versioned keys.

Each key is one entry (``keys/<name>``) holding its policy and every version's material;
the routes live in small mixins by topic.
"""

from __future__ import annotations

from aspen_secrets.engines.base import Engine, Mount
from aspen_secrets.engines.transit.keystore import KeyStore
from aspen_secrets.engines.transit.routes_encrypt import EncryptionRoutes
from aspen_secrets.engines.transit.routes_keys import KeyRoutes
from aspen_secrets.engines.transit.routes_sign import SigningRoutes
from aspen_secrets.engines.transit.routes_util import UtilityRoutes
from aspen_secrets.store import Store

__all__ = ["TransitEngine"]


class TransitEngine(KeyRoutes, EncryptionRoutes, SigningRoutes, UtilityRoutes, Engine):
    """A mounted transit engine (``type_name = "transit"``)."""

    type_name = "transit"

    def __init__(self, store: Store, mount: Mount) -> None:
        super().__init__(store, mount)
        self.keystore = KeyStore(store)
