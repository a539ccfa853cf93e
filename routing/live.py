"""Who is waiting in which queue, right now: built from AMI events, rebuilt on every reconnect.

QueueCallerJoin/Leave/Abandon keep it current; on every AMI login (a reconnect, or Asterisk
restarted) it is rebuilt from QueueStatus, so it never drifts from what Asterisk says. It is
mirrored to Redis (``hotline:live:waiting``) so other processes (the dashboard) share the view.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from panoramisk.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.menu.schema import CustomerClass
from routing.ami import AmiClient, AmiError

log = logging.getLogger(__name__)

LIVE_WAITING_KEY = "hotline:live:waiting"


@dataclass
class WaitingCaller:
    uniqueid: str
    queue: str
    channel: str
    customer_class: CustomerClass
    base_priority: int  # at join: class + escalation
    priority: int  # now (aging raises it)
    joined_at: float

    def wait(self, now: float) -> float:
        return max(0.0, now - self.joined_at)


def _channel_vars(event: Message) -> dict[str, str]:
    raw = event.get("ChanVariable", [])
    items = raw if isinstance(raw, list) else [raw]
    return dict(item.split("=", 1) for item in items if isinstance(item, str) and "=" in item)


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


class LiveQueues:
    def __init__(self, ami: AmiClient, redis: Redis, *, clock: Callable[[], float] = time.time) -> None:
        self._ami = ami
        self._redis = redis
        self._clock = clock
        self.waiting: dict[str, WaitingCaller] = {}
        ami.on("QueueCallerJoin", self._on_join)
        ami.on("QueueCallerLeave", self._on_leave)
        ami.on("QueueCallerAbandon", self._on_leave)
        ami.on(AmiClient.CONNECTED_EVENT, self._on_connected)

    def _caller(self, event: Message, wait: float = 0.0, priority: int | None = None) -> WaitingCaller:
        variables = _channel_vars(event)
        try:
            customer_class = CustomerClass(variables.get("HOTLINE_CLASS", "public"))
        except ValueError:
            customer_class = CustomerClass.PUBLIC
        base = _int(variables.get("HOTLINE_PRIORITY", ""), priority if priority is not None else 0)
        return WaitingCaller(
            uniqueid=str(event.get("Uniqueid", "")),
            queue=str(event.get("Queue", "")),
            channel=str(event.get("Channel", "")),
            customer_class=customer_class,
            base_priority=base,
            priority=priority if priority is not None else base,
            joined_at=self._clock() - wait,
        )

    async def _on_join(self, event: Message) -> None:
        caller = self._caller(event)
        self.waiting[caller.uniqueid] = caller
        await self._mirror(caller)

    async def _on_leave(self, event: Message) -> None:
        uniqueid = str(event.get("Uniqueid", ""))
        if self.waiting.pop(uniqueid, None) is not None:
            await self._unmirror(uniqueid)

    async def _on_connected(self, _event: Message) -> None:
        await self.resync()

    async def resync(self) -> int:
        """Rebuild from Asterisk's own QueueStatus (after a reconnect or an Asterisk restart)."""
        try:
            replies = await self._ami.action({"Action": "QueueStatus"}, as_list=True)
        except (AmiError, TimeoutError) as exc:
            log.warning("queue status unavailable: %s", exc)
            return 0
        fresh: dict[str, WaitingCaller] = {}
        for event in replies if isinstance(replies, list) else []:
            if event.get("Event") != "QueueEntry":
                continue
            caller = self._caller(event, wait=_int(event.get("Wait"), 0), priority=_int(event.get("Priority"), 0))
            known = self.waiting.get(caller.uniqueid)
            if known is not None:  # keep what we knew of its base priority
                caller.base_priority = known.base_priority
            fresh[caller.uniqueid] = caller
        self.waiting = fresh
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(LIVE_WAITING_KEY)
            if fresh:
                pipe.hset(LIVE_WAITING_KEY, mapping={u: self._json(c) for u, c in fresh.items()})
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("live queue state not mirrored to Redis: %s", exc)
        log.info("live queue state resynced: %d caller(s) waiting", len(fresh))
        return len(fresh)

    @staticmethod
    def _json(caller: WaitingCaller) -> str:
        data = asdict(caller)
        data["customer_class"] = caller.customer_class.value
        return json.dumps(data)

    async def _mirror(self, caller: WaitingCaller) -> None:
        try:
            await self._redis.hset(LIVE_WAITING_KEY, caller.uniqueid, self._json(caller))
        except (RedisError, OSError):
            pass  # the in-process view is authoritative; Redis is a shared copy

    async def _unmirror(self, uniqueid: str) -> None:
        try:
            await self._redis.hdel(LIVE_WAITING_KEY, uniqueid)
        except (RedisError, OSError):
            pass
