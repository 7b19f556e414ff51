"""``[hooks] shell_allow``: which programs a shell handler may start, compared by full path.

An allow-list entry is resolved once, when the node builds its executor settings (at the
plugin's start-up):

* an entry **without a slash** (``echo``) is looked up through the ``PATH`` shell handlers
  run with, like the shell would, and stands for that one file;
* an entry **with a slash** (``/usr/local/bin/notify``) stands for that file.

Both are compared after resolving symlinks (``os.path.realpath``). A command's first word
is resolved the same way at validation (a bare name through the run's ``PATH``, a path with
a slash relative to the node's working directory) and must land on one of those files:
``/tmp/x/echo`` does not pass as ``echo``. An entry that resolves to nothing (not on
``PATH``, no such file) allows nothing and is logged at start-up. A program word the shell
would expand (``$``, a glob, a leading ``~``) is refused, since its meaning is only known
when the shell runs.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from aspen.errors import InvalidArgumentError

__all__ = ["AllowList", "check_command", "resolve_program"]

log = logging.getLogger(__name__)

#: Shell operator characters that would run a second command after an allowed one (``&``
#: too, unless it follows ``<`` or ``>``).
_CONTROL_OPERATORS = frozenset(";|()")
_PUNCTUATION = frozenset(";&|()<>")
#: Command substitutions: they run commands even inside double quotes.
_SUBSTITUTIONS = ("`", "$(", "<(", ">(")
#: Characters that make the shell expand a word (parameters, globs).
_EXPANDING = frozenset("$*?[")


def resolve_program(word: str, search_path: str) -> str | None:
    """The real path of the file ``word`` names: a bare name through ``search_path``, a
    word with a slash as a path (relative to the working directory); ``None`` if none."""
    if "/" in word:
        found = word if os.path.isfile(word) and os.access(word, os.X_OK) else None
    else:
        found = shutil.which(word, path=search_path)
    return os.path.realpath(found) if found else None


@dataclass(frozen=True, slots=True)
class AllowList:
    """The configured entries and the files they resolved to (real paths)."""

    #: The entries as configured (shown in error messages).
    entries: tuple[str, ...]
    #: Real path of every file an entry resolved to.
    paths: frozenset[str]
    #: Entries that resolved to nothing (they allow nothing).
    unresolved: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, entries: Iterable[str], search_path: str) -> AllowList:
        """Resolve ``entries`` now, bare names through ``search_path``."""
        entries = tuple(entries)
        found = {entry: resolve_program(entry, search_path) for entry in entries}
        unresolved = tuple(entry for entry, path in found.items() if path is None)
        for entry in unresolved:
            log.warning("hooks: shell_allow entry %r names no executable; it allows nothing", entry)
        return cls(entries, frozenset(p for p in found.values() if p), unresolved)

    def describe(self) -> str:
        """The entries with what they resolved to, for error messages."""
        return ", ".join(sorted(self.entries))


def check_command(command: str, allow: AllowList, search_path: str) -> None:
    """Refuse ``command`` unless it runs one allowed program and nothing else.

    The first word must resolve to a file of the allow-list, and the command may not chain
    or substitute other commands (``;``, ``&``, ``|``, ``( )``, newlines, backquotes,
    ``$(...)``): otherwise ``echo ok; rm -rf /`` would pass as ``echo``.
    """
    names = allow.describe()
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"shell command cannot be parsed ({exc}); commands allowed on this node: {names}",
            field="command",
        ) from None
    chained = any(_chains(word) for word in words)
    if chained or "\n" in command or "\r" in command or any(s in command for s in _SUBSTITUTIONS):
        raise InvalidArgumentError(
            "shell command chains or substitutes commands (; & | ( ) newline ` $( ), which "
            f"this node's allow-list forbids; commands allowed: {names}",
            field="command",
        )
    program = words[0] if words else ""
    if set(program) & _EXPANDING or program.startswith("~"):
        raise InvalidArgumentError(
            f"shell command's program {program!r} would be expanded by the shell ($, *, ?, "
            f"[, ~), which this node's allow-list forbids; commands allowed: {names}",
            field="command",
        )
    path = resolve_program(program, search_path) if program else None
    if path is None or path not in allow.paths:
        where = f" (it is {path})" if path and "/" not in program else ""
        raise InvalidArgumentError(
            f"shell command {program!r}{where} is not allowed on this node; allowed: {names} "
            "(compared by full path after resolving symlinks)",
            field="command",
            allowed=sorted(allow.entries),
        )


def _chains(word: str) -> bool:
    """Whether ``word`` is a shell operator that ends or forks a command (``;``, ``&&``,
    ``|``, ``(``...): shlex returns runs of punctuation as words; ``>&`` and ``<&`` are
    redirections, not chaining."""
    if not word or not set(word) <= _PUNCTUATION:
        return False
    if set(word) & _CONTROL_OPERATORS:
        return True
    return any(ch == "&" and (i == 0 or word[i - 1] not in "<>") for i, ch in enumerate(word))
