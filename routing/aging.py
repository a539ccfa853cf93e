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
from collections.abc import Callable

from routing.ami import AmiClient, AmiError
from routing.live import LiveQueues
from routing.rules import RoutingRules

log = logging.getLogger(__name__)


def aged_priority(base: int, waited: float, target_seconds: int, points_per_target: float) -> int:
    return base + int(points_per_target * waited / target_seconds)


class PriorityAger:
    def __init__(self, ami: AmiClient, live: LiveQueues, rules: Callable[[], RoutingRules], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._ami = ami
        self._live = live
        self._rules = rules
        self._clock = clock
        self.changes = 0

    async def run(self) -> None:
        """Background task (owned by the app)."""
        while True:
            await asyncio.sleep(self._rules().aging.interval_seconds)
            if self._rules().aging.enabled and self._ami.ready:
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
                caller.priority = wanted
                changed += 1
            else:  # it left the queue in the meantime: the next Leave event removes it
                log.info("priority of %s not changed: %s", caller.uniqueid, reply.get("Message", ""))
        self.changes += changed
        return changed
