"""Routing decisions: which queue, at what priority, overflowing where and when.

The menu says which skill a caller needs; the routing rules say the rest. Priority is the
class's, raised for repeat callers and urgent cases (escalation); aging raises it further while
the caller waits (routing/aging.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ivr.menu.schema import CustomerClass
from routing.customers import Customer, mask_number
from routing.rules import RoutingRules

log = logging.getLogger(__name__)

RECENT_CALLS_KEY = "hotline:recent-calls:{number}"
SWITCH_KEY = "hotline:switch:{name}"  # runtime switches an operator flips with `hotline switch`
SWITCHES = ("closed", "outage")


@dataclass(frozen=True)
class Switches:
    """The emergency switches for one call: the rules' values, or the runtime ones when set."""

    closed: bool = False
    outage: bool = False


async def read_switches(redis: Redis, rules: RoutingRules, *, timeout: float = 0.3) -> Switches:
    """Runtime switches override the YAML; Redis trouble falls back to the YAML values."""
    try:
        async with asyncio.timeout(timeout):
            closed, outage = await redis.mget([SWITCH_KEY.format(name=n) for n in SWITCHES])
    except (TimeoutError, RedisError, OSError):
        closed = outage = None

    def value(raw: object, default: bool) -> bool:
        return default if raw is None else raw in (b"on", "on")

    return Switches(closed=value(closed, rules.hours.closed), outage=value(outage, rules.outage))


async def set_switch(redis: Redis, name: str, on: bool | None) -> None:
    """``None`` clears the runtime value (the rules' own applies again)."""
    if name not in SWITCHES:
        raise ValueError(f"unknown switch {name!r}")
    if on is None:
        await redis.delete(SWITCH_KEY.format(name=name))
    else:
        await redis.set(SWITCH_KEY.format(name=name), "on" if on else "off")


@dataclass(frozen=True)
class RouteDecision:
    skill: str
    queue: str
    priority: int
    overflow_queue: str | None = None
    overflow_after: int | None = None  # seconds in the queue before moving on (Queue's timeout)
    survey: bool = False  # ask for a score when the agent hangs up
    max_penalty: int | None = None  # with penalty widening: only level-1 agents (penalty 0) at first
    announce_after: int | None = None  # first position/wait announcement (None: no announcements)
    announce_every: int = 60
    callback: bool = False  # the caller may ask for a callback that keeps their place
    more_overflow: bool = False  # overflow steps after the first: the controller takes them between stints

    def first_stint(self, announcing: bool) -> int | None:
        """Seconds of the first Queue() run: until the first announcement or the overflow."""
        ends = [t for t in (self.announce_after if announcing else None, self.overflow_after) if t]
        return min(ends) if ends else None


@dataclass(frozen=True)
class Escalation:
    boost: int = 0
    reasons: tuple[str, ...] = field(default_factory=tuple)


# Count a call and return the calls in the window: one round trip, atomic. (It was a MULTI/EXEC
# pipeline of the four commands; redis-py's pipeline cost the controller more CPU than any other
# Redis work of a call.)
_RECORD_CALL = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return count
"""


class CallHistory:
    """How often a number called recently (a Redis sorted set of call times per number)."""

    def __init__(self, redis: Redis, *, timeout: float = 0.3) -> None:
        self._redis = redis
        self._timeout = timeout
        self._record: AsyncScript | None = None  # registered at the first call (rules-only users pass no Redis)

    async def record(self, number: str, uniqueid: str, window_seconds: int, now: float) -> int:
        """Count this call and return how many calls the number made in the window (1 on trouble)."""
        key = RECENT_CALLS_KEY.format(number=number)
        try:
            async with asyncio.timeout(self._timeout):
                if self._record is None:
                    self._record = self._redis.register_script(_RECORD_CALL)
                count = await self._record(keys=[key], args=[repr(now), uniqueid, repr(now - window_seconds),
                                                             window_seconds])
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("call history for %s unavailable (%s)", mask_number(number), exc)
            return 1
        return int(count)


class Router:
    def __init__(
        self,
        rules: Callable[[], RoutingRules],
        redis: Redis,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._redis = redis
        self._history = CallHistory(redis)
        self._clock = clock

    async def switches(self) -> Switches:
        return await read_switches(self._redis, self._rules())

    def is_open(self, switches: Switches) -> bool:
        if switches.closed:
            return False
        return self._rules().hours.is_open(datetime.fromtimestamp(self._clock(), UTC))

    async def record_call(self, number: str, uniqueid: str) -> int:
        """Count this call; how many calls the number made in the escalation window (1 on trouble)."""
        if not number:
            return 1
        window = self._rules().escalation.window_hours * 3600
        return await self._history.record(number, uniqueid, window, self._clock())

    def escalation(self, customer: Customer, recent_calls: int) -> Escalation:
        rules = self._rules().escalation
        boost, reasons = 0, []
        if recent_calls >= rules.repeat_calls:
            boost += rules.boost
            reasons.append(f"repeat_caller:{recent_calls}")
        if customer.urgent:
            boost += rules.urgent_boost
            reasons.append("urgent")
        return Escalation(boost, tuple(reasons))

    def priority(self, customer_class: CustomerClass, escalation: Escalation) -> int:
        return self._rules().class_rule(customer_class).priority + escalation.boost

    def decide(
        self, skill: str, customer_class: CustomerClass, escalation: Escalation, switches: Switches = Switches()
    ) -> RouteDecision:
        rules = self._rules()
        if skill not in rules.skills:  # a menu published against other rules: never strand the caller
            log.error("skill %r is not in the routing rules; using the fallback skill", skill)
            skill = rules.fallback_skill
        target = rules.skills[skill]
        overflow_queue = overflow_after = None
        if target.overflow:  # the first step; the wait AGI takes the later ones (ivr/queueing.py)
            overflow_queue = rules.queue_of(target.overflow[0].to)
            overflow_after = target.overflow[0].after
        return RouteDecision(skill, target.queue, self.priority(customer_class, escalation), overflow_queue,
                             overflow_after, survey=target.survey and not switches.outage,
                             max_penalty=0 if rules.penalty_widening else None,
                             announce_after=rules.waiting.announce_after or None,
                             announce_every=rules.waiting.announce_every, callback=target.callback,
                             more_overflow=len(target.overflow) > 1)

    def fallback_queue(self) -> str:
        rules = self._rules()
        return rules.queue_of(rules.fallback_skill)
