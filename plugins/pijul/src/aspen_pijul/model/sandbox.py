"""An in-memory repository (one change store, many channels) for tests, benches and
examples: record files onto a channel, move changes between channels, read files back."""

from __future__ import annotations

from aspen_pijul.model.change import Change
from aspen_pijul.model.channel import Channel, MemoryStore
from aspen_pijul.model.record import Meta, record, rollback

__all__ = ["Sandbox"]


class Sandbox:
    """Channels sharing one :class:`MemoryStore`."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.channels: dict[str, Channel] = {}
        self._clock = 0

    def channel(self, name: str) -> Channel:
        """The channel ``name`` (created empty on first use)."""
        if name not in self.channels:
            self.channels[name] = Channel(name, self.store)
        return self.channels[name]

    def _meta(self, message: str, author: str) -> Meta:
        self._clock += 1
        return Meta(message=message, authors=(author,), timestamp=self._clock)

    def record(
        self,
        channel: str,
        files: dict[str, bytes | str],
        message: str = "edit",
        author: str = "alice",
        moves: dict[str, str] | None = None,
    ) -> Change | None:
        """Record ``files`` (every tracked file) onto ``channel`` and apply the change."""
        ch = self.channel(channel)
        tree = {p: d.encode() if isinstance(d, str) else d for p, d in files.items()}
        change = record(ch, tree, self._meta(message, author), moves)
        if change is not None:
            self.store.put(change)
            ch.apply(change.hash)
        return change

    def edit(self, channel: str, path: str, text: str, **kw: object) -> str:
        """Record ``path`` := ``text`` (other files unchanged); returns the hash."""
        files: dict[str, bytes | str] = dict(self.channel(channel).output())
        files[path] = text
        change = self.record(channel, files, **kw)  # type: ignore[arg-type]
        assert change is not None, "nothing to record"
        return change.hash

    def rollback(self, channel: str, h: str) -> str | None:
        """Record and apply the inverse of ``h`` (None if nothing of it is left to invert)."""
        ch = self.channel(channel)
        change = rollback(ch, h, self._meta(f"Rollback of {h}", "rollback"))
        if change is None:
            return None
        self.store.put(change)
        ch.apply(change.hash)
        return change.hash

    def pull(self, into: str, source: str) -> list[str]:
        """Apply every change of ``source`` missing from ``into`` (dependencies first)."""
        dst, src = self.channel(into), self.channel(source)
        done: list[str] = []
        for h in src.order:
            done += dst.apply(h)
        return done

    def text(self, channel: str, path: str) -> str:
        """The printed text of ``path`` on ``channel``."""
        return self.channel(channel).output()[path].decode()
