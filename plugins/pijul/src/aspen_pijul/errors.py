"""Typed errors of the pijul plugin, each an :mod:`aspen.errors` class with its RPC code."""

from __future__ import annotations

from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)

__all__ = [
    "AmbiguousPrefixError",
    "ChannelExistsError",
    "CorruptChangeError",
    "DependedUponError",
    "MissingDependencyError",
    "PijulError",
    "TooLargeError",
    "UnknownChangeError",
    "UnknownChannelError",
    "UnrecordedChangesError",
]


class PijulError(InvalidArgumentError):
    """A pijul operation was refused because of its input."""


class UnknownChangeError(NotFoundError):
    """No change has this hash or prefix."""


class UnknownChannelError(NotFoundError):
    """No channel has this name."""


class ChannelExistsError(CompareFailedError):
    """A channel of this name already exists."""


class AmbiguousPrefixError(PijulError):
    """A hash prefix names more than one change (the candidates are in the message)."""


class CorruptChangeError(PijulError):
    """A stored or received change's bytes do not match its hash."""


class MissingDependencyError(PijulError):
    """A change names a dependency the channel (or store) does not have."""


class DependedUponError(PijulError):
    """A change cannot be unrecorded while another change in the channel depends on it."""


class TooLargeError(ResourceExhaustedError):
    """A file or change exceeds a bound of :mod:`aspen_pijul.limits`."""


class UnrecordedChangesError(PijulError):
    """Writing a channel's output would overwrite unrecorded working-copy edits (the files
    are named in the message and in ``details["paths"]``)."""
