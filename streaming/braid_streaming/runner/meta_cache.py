"""A write-through memory of metadata one runner instance alone writes (the tile-close sets).

The tile-close statistics (:mod:`braid_streaming.runner.tile_stats`) read every open tile's
entity set each batch that closes it, and the tile index every batch: thousands of members
per set, read back from the store although the runner wrote them itself. With one runner
instance nothing else writes those keys, so :class:`CachedMeta` answers reads it has seen
or written from memory and passes every write through to the store first.

Trust rules, as for the tile cache (:mod:`braid.online.tilecache`): memory changes only after
the store acknowledged a write; the runner calls :meth:`CachedMeta.clear` when a batch fails
(what a failed write applied is unknown); a new process starts empty. Bounded: past
``max_members`` members in memory it forgets everything and reads again.

Example:
    >>> meta = CachedMeta(meta_for(store.online))
    >>> meta.members_many(["tilestats:shop:ns:600000:1200000"])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from braid_streaming.runner.meta import MetaStore, Write


class CachedMeta(MetaStore):
    """Reads of ``meta`` remembered, writes passed through (see the module).

    Args:
        meta: the store's metadata.
        max_members: members held in memory at most (all sets together).
    """

    def __init__(self, meta: MetaStore, max_members: int = 2_000_000) -> None:
        self.meta, self.max_members = meta, max_members
        self._strings: dict[str, str | None] = {}
        self._sets: dict[str, set[str]] = {}
        self._held = 0

    def clear(self) -> None:
        """Forget everything (a batch failed: its writes may be partly applied)."""
        self._strings.clear()
        self._sets.clear()
        self._held = 0

    def get(self, key: str) -> str | None:
        if key not in self._strings:
            self._strings[key] = self.meta.get(key)
        return self._strings[key]

    def set(self, key: str, value: str | None) -> None:
        self.write_many([("set", key, value)])

    def has_prefix(self, prefix: str) -> bool:
        return self.meta.has_prefix(prefix)

    def add_members(self, key: str, members: Iterable[str]) -> None:
        self.write_many([("add", key, list(members))])

    def members(self, key: str) -> set[str]:
        return self.members_many([key])[key]

    def members_many(self, keys: Iterable[str]) -> dict[str, set[str]]:
        """The sets of ``keys``; they are this cache's own: read them, do not change them."""
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in self._sets]
        if missing:
            for k, found in self.meta.members_many(missing).items():
                self._sets[k] = found
                self._held += len(found)
        out = {k: self._sets[k] for k in wanted}
        self._bound()
        return out

    def remove_members(self, key: str, members: Iterable[str]) -> None:
        self.write_many([("remove", key, list(members))])

    def drop_members(self, key: str) -> None:
        self.write_many([("drop", key, None)])

    def write_many(self, writes: Sequence[Write]) -> None:
        writes = [(op, key, list(arg) if op in ("add", "remove") else arg)
                  for op, key, arg in writes]
        self.meta.write_many(writes)
        for op, key, arg in writes:  # acknowledged: memory follows
            if op == "set":
                self._strings[key] = arg
            elif op == "drop":
                self._held -= len(self._sets.pop(key, ()))
            elif key in self._sets:  # a set never read is read whole when first wanted
                members = self._sets[key]
                before = len(members)
                if op == "add":
                    members.update(arg)
                else:
                    members.difference_update(arg)
                self._held += len(members) - before
        self._bound()

    def _bound(self) -> None:
        if self._held > self.max_members:
            self.clear()
