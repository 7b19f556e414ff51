"""Vault's PKI secrets engine: one CA (root or intermediate) per mount, roles that say
which names a certificate may carry, issuing and signing, revocation with a CRL, tidy."""

from aspen_secrets.engines.pki.engine import PkiEngine

__all__ = ["PkiEngine"]
