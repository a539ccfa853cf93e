"""Anti-starvation: a waiting caller's priority rises with the share of its target it has waited.

Strict class priority would let a stream of key accounts starve the public. Each waiting caller
gains ``points_per_target`` priority points for every service-level time of its class it has
waited (public 30 s, key 15 s in the sample), so a public caller soon outranks key accounts who
just arrived, while a key account still comes first at equal patience. Callers already in the
queue are moved through AMI (QueueChangePriorityCaller, Immediate), not only at join time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from routing.ami import AmiClient, AmiError
from routing.live import LiveQueues
from routing.rules import RoutingRules

log = logging.getLogger(__name__)


def aged_priority(base: int, waited: float, target_seconds: int, points_per_target: float) -> int:
    return base + int(points_per_target * waited / target_seconds)


LEASE_KEY = "hotline:leader:aging"
# Take the lease if free, renew it if ours; 1 if we hold it now.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""


class PriorityAger:
    """With several controllers on one Asterisk, one of them ages (a lease in Redis, renewed every
    round, taken over within three rounds when its holder dies). Without Redis every controller
    ages: a raise sent twice changes nothing, a raise not sent starves a caller."""

    def __init__(self, ami: AmiClient, live: LiveQueues, rules: Callable[[], RoutingRules], *,
                 redis: Redis | None = None, clock: Callable[[], float] = time.time) -> None:
        self._ami = ami
        self._live = live
        self._rules = rules
        self._redis = redis
        self._lease = redis.register_script(_LEASE) if redis is not None else None
        self._me = uuid.uuid4().hex
        self._clock = clock
        self.changes = 0
        self.leading = redis is None

    async def _hold_lease(self, interval: float) -> bool:
        if self._lease is None:
            return True
        try:
            async with asyncio.timeout(0.5):
                self.leading = bool(await self._lease(keys=[LEASE_KEY], args=[self._me, int(interval * 3000)]))
        except (TimeoutError, RedisError, OSError):
            self.leading = True
        return self.leading

    async def release(self) -> None:
        """On a clean stop: hand the lease over at once rather than after it expires."""
        if self._redis is None or not self.leading:
            return
        try:
            async with asyncio.timeout(0.5):
                if await self._redis.get(LEASE_KEY) in (self._me, self._me.encode()):
                    await self._redis.delete(LEASE_KEY)
        except (TimeoutError, RedisError, OSError):
            pass

    async def run(self) -> None:
        """Background task (owned by the app)."""
        while True:
            interval = self._rules().aging.interval_seconds
            await asyncio.sleep(interval)
            if self._rules().aging.enabled and self._ami.ready and await self._hold_lease(interval):
                try:
                    await self.tick()
                except Exception:
                    log.exception("priority aging failed; trying again next round")

    async def tick(self) -> int:
        rules = self._rules()
        now = self._clock()
        changed = 0
        for caller in list(self._live.waiting.values()):
            target = rules.class_rule(caller.customer_class).service_level.seconds
            wanted = aged_priority(caller.base_priority, caller.wait(now), target, rules.aging.points_per_target)
            if wanted <= caller.priority:
                continue
            try:
                reply = await self._ami.action({
                    "Action": "QueueChangePriorityCaller", "Queue": caller.queue, "Caller": caller.channel,
                    "Priority": wanted, "Immediate": "yes",
                })
            except (AmiError, TimeoutError) as exc:
                log.warning("could not raise %s's priority: %s", caller.uniqueid, exc)
                continue
            if reply.success:
                self._live.priority_raised(caller, wanted)
                changed += 1
            else:  # it left the queue in the meantime: the next Leave event removes it
                log.info("priority of %s not changed: %s", caller.uniqueid, reply.get("Message", ""))
        self.changes += changed
        return changed
