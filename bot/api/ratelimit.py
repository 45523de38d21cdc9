"""The rate limit per API key: a token bucket of `burst` requests, refilled at `rate` per
second. Over it, a request is answered 429 with `Retry-After`, before anything else runs.

With REDIS_URL set the buckets are in Redis (RedisBuckets), shared by every instance of the
bot, so a key gets its rate whichever instance serves it; without it they are in this
process (LocalBuckets), which is exact for the one instance the bot then is. If Redis does
not answer, the request is checked against this process's bucket instead of being refused:
the limit protects the service, it is not what anyone is billed by."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def take(self, key_id: int) -> float:
        """Take one request from the key's bucket: 0 if allowed, else the seconds until one
        is (what Retry-After says, rounded up)."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class LocalBuckets:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[int, _Bucket] = {}

    async def take(self, key_id: int) -> float:
        now = self.clock()
        bucket = self.buckets.get(key_id)
        if bucket is None:
            bucket = self.buckets[key_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


# KEYS[1]: the bucket; ARGV: rate, burst, now (seconds). Returns the wait, as a string
# (Redis turns a Lua number into an integer).
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """The buckets in Redis, one hash per key, taken atomically by a Lua script. `clock`
    is wall time: every instance's clock counts (NTP keeps them close enough for a rate)."""

    def __init__(
        self,
        redis: Redis,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.time,
        fallback: RateLimiter | None = None,
    ) -> None:
        self.redis, self.rate, self.burst, self.clock = redis, rate, burst, clock
        self.script: Any = redis.register_script(_TAKE)
        self.fallback = fallback or LocalBuckets(rate, burst)

    async def take(self, key_id: int) -> float:
        try:
            wait = await self.script(
                keys=[f"loyalty:api-rate:{key_id}"], args=[self.rate, self.burst, self.clock()]
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limit: Redis does not answer (%s); this instance counts alone", exc)
            return await self.fallback.take(key_id)
        return float(wait)


def retry_after(wait: float) -> str:
    """Retry-After in whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
