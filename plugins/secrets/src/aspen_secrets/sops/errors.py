"""The errors of the SOPS reader/writer: malformed input, and a failed integrity check."""

from __future__ import annotations

from aspen.errors import InvalidArgumentError

__all__ = ["SopsError", "SopsMacMismatchError"]


class SopsError(InvalidArgumentError):
    """A SOPS file (or key file, or document to encrypt) that cannot be used as given:
    bad YAML/JSON/INI/dotenv, missing or bad ``sops`` metadata, a malformed ``ENC[...]``
    value, an unsupported format or feature, or no identity that opens the data key."""


class SopsMacMismatchError(SopsError):
    """The file was changed after it was written: a value does not authenticate, or the
    MAC over the cleartext values (or ``lastmodified``) does not match."""
