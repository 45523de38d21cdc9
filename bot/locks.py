"""Locks by key within this process, for presses that must not run side by side (a member's
renewal switched twice at once, a till's Taken and Cancel of one month): the second waits
for the first, then reads what the first did. Several bot instances sharing a database do not
share these; the use cases stay safe without them (a charge is recorded once), the lock only
keeps the answers true."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyedLocks:
    """An asyncio lock per key, made when first wanted and dropped when nobody holds or
    waits for it (so a member who pressed once costs nothing afterwards)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
