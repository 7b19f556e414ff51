"""The PKI engine's routes (Vault's PKI API, one issuer per mount).

The work is done in :mod:`.ca` (CA lifecycle), :mod:`.leaf` (issue/sign under a role),
:mod:`.revocation` (revoke, tidy) and :mod:`.crl`; this module maps paths to them and
serves the read-only endpoints (CA certificate, chain, CRL, stored certificates).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen_secrets.engines.base import Engine, route
from aspen_secrets.engines.pki import ca, leaf, revocation
from aspen_secrets.engines.pki.certs import parse_serial
from aspen_secrets.engines.pki.crl import load_crl_der, rotate_crl
from aspen_secrets.engines.pki.issuer import load_chain
from aspen_secrets.engines.pki.pem import cert_der, cert_pem
from aspen_secrets.engines.pki.records import (
    CERTS,
    REVOKED,
    cert_path,
    revoked_path,
    serial_of_path,
)
from aspen_secrets.engines.pki.roles import check_role_name, parse_role
from aspen_secrets.engines.pki.urls import load_urls, update_urls, urls_json
from aspen_secrets.logical import Operation, Request, Response
from aspen_secrets.store import Write, modify, truncation_warnings

__all__ = ["PkiEngine"]

_NAME = r"(?P<name>[^/]+)"
_PEM_CHAIN = "application/pem-certificate-chain"


class PkiEngine(Engine):
    """Vault's PKI secrets engine: a CA (root or intermediate) per mount, roles, issuing
    and signing certificates, revocation with a CRL, and tidy."""

    type_name = "pki"
    #: Paths Vault serves without a token (CA certificates and CRLs are public), as regular
    #: expressions relative to the mount; for the HTTP layer to honour.
    unauthenticated_paths: ClassVar[tuple[str, ...]] = (
        r"ca(/pem)?",
        r"ca_chain",
        r"crl(/pem)?",
        r"cert/[^/]+",
    )

    # --- CA lifecycle ---------------------------------------------------------------

    @route(r"root/generate/(?P<kind>[^/]+)", Operation.WRITE)
    async def generate_root(self, request: Request, kind: str) -> Response:
        """Generate a self-signed root CA (``internal`` or ``exported``)."""
        return await ca.generate_root(self.store, self.mount, kind, request.data)

    @route(r"root", Operation.DELETE)
    async def delete_root(self, request: Request) -> Response:
        """Delete the mount's CA (and a pending intermediate key)."""
        return await ca.delete_ca(self.store)

    @route(r"root/sign-intermediate", Operation.WRITE)
    async def sign_intermediate(self, request: Request) -> Response:
        """Sign an intermediate CA's CSR."""
        return await ca.sign_intermediate(self.store, self.mount, request.data)

    @route(r"intermediate/generate/(?P<kind>[^/]+)", Operation.WRITE)
    async def generate_intermediate(self, request: Request, kind: str) -> dict[str, Any]:
        """Generate the key of an intermediate CA and its CSR."""
        return await ca.generate_intermediate(self.store, self.mount, kind, request.data)

    @route(r"intermediate/set-signed", Operation.WRITE)
    async def set_signed(self, request: Request) -> dict[str, Any]:
        """Install the signed intermediate certificate (and its chain)."""
        return await ca.set_signed(self.store, self.mount, request.data)

    # --- roles ----------------------------------------------------------------------

    @route(r"roles/?", Operation.LIST)
    async def list_roles(self, request: Request) -> dict[str, Any]:
        """The role names."""
        names = [p[len(leaf.ROLES) :] for p in await self.store.keys(leaf.ROLES)]
        return self._keys(names, "roles")

    @route(rf"roles/{_NAME}", Operation.READ)
    async def read_role(self, request: Request, name: str) -> dict[str, Any]:
        """A role's fields."""
        entry = await self.store.get(leaf.ROLES + check_role_name(name))
        if entry is None:
            raise NotFoundError(f"no role {name!r} on {self.mount.path}")
        return entry.value

    @route(rf"roles/{_NAME}", Operation.WRITE, Operation.PATCH)
    async def write_role(self, request: Request, name: str) -> dict[str, Any]:
        """Create or replace a role (WRITE), or change some of its fields (PATCH)."""
        path = leaf.ROLES + check_role_name(name)

        async def compute() -> tuple[list[Write], dict[str, Any]]:
            entry = await self.store.get(path)
            if request.operation == Operation.PATCH and entry is None:
                raise NotFoundError(f"no role {name!r} on {self.mount.path}")
            base = entry.value if request.operation == Operation.PATCH and entry else None
            role = parse_role(request.data, base)
            expect = entry.revision if entry is not None else 0
            return [Write(path, role, expect_revision=expect)], role

        return await modify(self.store, compute)

    @route(rf"roles/{_NAME}", Operation.DELETE)
    async def delete_role(self, request: Request, name: str) -> None:
        """Delete a role (certificates issued under it stay valid)."""
        await self.store.commit([Write(leaf.ROLES + check_role_name(name), delete=True)])

    # --- issuing --------------------------------------------------------------------

    @route(rf"issue/{_NAME}", Operation.WRITE)
    async def issue(self, request: Request, name: str) -> Response:
        """Issue a certificate and a new private key under a role."""
        return await leaf.issue(self.store, self.mount, check_role_name(name), request.data)

    @route(rf"sign/{_NAME}", Operation.WRITE)
    async def sign(self, request: Request, name: str) -> Response:
        """Sign a CSR under a role."""
        return await leaf.sign(self.store, self.mount, check_role_name(name), request.data)

    # --- revocation -----------------------------------------------------------------

    @route(r"revoke", Operation.WRITE)
    async def revoke(self, request: Request) -> Response:
        """Revoke a certificate by serial number (or PEM) and rebuild the CRL."""
        return await revocation.revoke(self.store, self.mount, request.data)

    @route(r"tidy", Operation.WRITE)
    async def tidy(self, request: Request) -> Response:
        """Remove expired certificates and revocations."""
        return await revocation.tidy(self.store, self.mount, request.data)

    @route(r"crl/rotate", Operation.READ)
    async def rotate_crl(self, request: Request) -> dict[str, Any]:
        """Rebuild and re-sign the CRL."""
        if not await rotate_crl(self.store):
            raise InvalidArgumentError(f"{self.mount.path} has no CA yet")
        return {"success": True}

    # --- fetching -------------------------------------------------------------------

    @route(r"ca", Operation.READ)
    async def read_ca_der(self, request: Request) -> Response:
        """The CA certificate, DER."""
        chain = await self._chain()
        return Response(raw=cert_der(chain[0]), content_type="application/pkix-cert")

    @route(r"ca/pem", Operation.READ)
    async def read_ca_pem(self, request: Request) -> Response:
        """The CA certificate, PEM."""
        chain = await self._chain()
        return Response(raw=cert_pem(chain[0]).encode(), content_type=_PEM_CHAIN)

    @route(r"ca_chain", Operation.READ)
    async def read_ca_chain(self, request: Request) -> Response:
        """The CA chain (this CA up to the root), PEM."""
        text = self._chain_text(await self._chain())
        return Response(raw=text.encode(), content_type=_PEM_CHAIN)

    @route(r"crl", Operation.READ)
    async def read_crl_der(self, request: Request) -> Response:
        """The CRL, DER."""
        der = await load_crl_der(self.store, self.mount.path)
        return Response(raw=der, content_type="application/pkix-crl")

    @route(r"crl/pem", Operation.READ)
    async def read_crl_pem(self, request: Request) -> Response:
        """The CRL, PEM."""
        return Response(raw=(await self._crl_pem()).encode(), content_type="application/x-pem-file")

    @route(r"cert/ca", Operation.READ)
    async def read_cert_ca(self, request: Request) -> dict[str, Any]:
        """The CA certificate as JSON."""
        chain = await self._chain()
        return {**revocation.revoked_answer(0), "certificate": cert_pem(chain[0])}

    @route(r"cert/ca_chain", Operation.READ)
    async def read_cert_ca_chain(self, request: Request) -> dict[str, Any]:
        """The CA chain as JSON."""
        text = self._chain_text(await self._chain())
        return {**revocation.revoked_answer(0), "certificate": text, "ca_chain": text}

    @route(r"cert/crl", Operation.READ)
    async def read_cert_crl(self, request: Request) -> dict[str, Any]:
        """The CRL (PEM) as JSON."""
        return {**revocation.revoked_answer(0), "certificate": await self._crl_pem()}

    @route(r"cert/(?P<serial>[^/]+)", Operation.READ)
    async def read_cert(self, request: Request, serial: str) -> dict[str, Any]:
        """A stored certificate and its revocation time (0 if not revoked)."""
        normal = parse_serial(serial)
        entry = await self.store.get(cert_path(normal))
        if entry is None:
            raise NotFoundError(f"no certificate with serial {normal} on {self.mount.path}")
        revoked = await self.store.get(revoked_path(normal))
        when = revoked.value["revocation_time"] if revoked is not None else 0
        return {
            **revocation.revoked_answer(when),
            "certificate": entry.value["certificate"],
            "issuer_id": entry.value["issuer_id"],
        }

    @route(r"certs/?", Operation.LIST)
    async def list_certs(self, request: Request) -> Response:
        """The serials of the stored certificates (with a warning when the scan stopped at
        ``SECRETS_MAX_LIST_KEYS``)."""
        serials = await self._serials(CERTS)
        keys = self._keys(serials, "certificates")
        return Response(keys, warnings=truncation_warnings(serials))

    @route(r"certs/revoked/?", Operation.LIST)
    async def list_revoked(self, request: Request) -> Response:
        """The serials of the revoked certificates."""
        serials = await self._serials(REVOKED)
        keys = self._keys(serials, "revoked certificates")
        return Response(keys, warnings=truncation_warnings(serials))

    # --- config ---------------------------------------------------------------------

    @route(r"config/urls", Operation.READ)
    async def read_urls(self, request: Request) -> dict[str, Any]:
        """The URLs put into issued certificates."""
        return urls_json(await load_urls(self.store))

    @route(r"config/urls", Operation.WRITE)
    async def write_urls(self, request: Request) -> None:
        """Set the URLs put into issued certificates (fields not given are kept)."""
        await update_urls(self.store, request.data)

    # --- helpers --------------------------------------------------------------------

    async def _chain(self) -> tuple[x509.Certificate, ...]:
        """The CA chain (certificates only: public reads never load the private key)."""
        chain = await load_chain(self.store)
        if chain is None:
            raise NotFoundError(f"{self.mount.path} has no CA certificate yet")
        return chain

    @staticmethod
    def _chain_text(chain: tuple[x509.Certificate, ...]) -> str:
        return "".join(cert_pem(c) for c in chain)

    async def _crl_pem(self) -> str:
        der = await load_crl_der(self.store, self.mount.path)
        crl = x509.load_der_x509_crl(der)
        return crl.public_bytes(serialization.Encoding.PEM).decode()

    async def _serials(self, prefix: str) -> list[str]:
        return [serial_of_path(p) for p in await self.store.keys(prefix)]

    def _keys(self, keys: list[str], what: str) -> dict[str, Any]:
        """Vault's LIST answer (404 when empty, as Vault answers)."""
        if not keys:
            raise NotFoundError(f"no {what} on {self.mount.path}")
        return {"keys": keys}
