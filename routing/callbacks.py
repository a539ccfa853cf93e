"""Fair virtual-hold callbacks: the caller hangs up, the callback keeps their place in the queue.

A booked callback is a real entry in the Asterisk queue: an AMI Originate of
``Local/<id>@hotline-callback-hold``, whose half waits in the queue with the caller's class, aged
priority, position and first-queued time (asterisk/conf/extensions.conf). So it keeps its place,
ages like any caller, counts in positions, wait estimates and Asterisk's service level, and is
paced by the queue itself: only an agent who is free answers it, and only then does the other
half of the Local channel dial the customer (agent first, then customer). Never more callbacks
are dialled than agents are free, because each needs an agent connected first.

One callback per number (a Redis key taken with SET NX). When the customer does not answer, it
is tried again ``retries`` times, ``retry_after`` seconds later, at the front of its class. State
lives in Redis (``hotline:callback:<id>``) so any controller can finish what another started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from panoramisk.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.outcomes import Disposition, OutcomeRecord, OutcomeStore
from routing.ami import AmiClient, AmiError
from routing.customers import mask_number
from routing.render import widening_state
from routing.rules import RoutingRules

log = logging.getLogger(__name__)

CALLBACK_KEY = "hotline:callback:{id}"
ORIGIN_KEY = "hotline:callback-of:{uniqueid}"  # the call that booked it -> callback id (reconciliation)
NUMBER_KEY = "hotline:callback-number:{number}"  # one pending callback per number
RETRIES_KEY = "hotline:callback-retries"  # zset: id -> when the next attempt is due
INDEX_KEY = "hotline:callbacks"  # zset: id -> when booked (listing, expiry)
ACTION_PREFIX = "callback-"  # ActionID of a callback's Originate: callback-<id>-<attempt>
NO_LEG = ("hold_failed", "expired", "lost")  # attempt results where no customer leg ever came up
HOLD_CONTEXT = "hotline-callback-hold"
DIAL_CONTEXT = "hotline-callback-dial"


class CallbackStatus(StrEnum):
    WAITING = "waiting"  # in the queue, holding the caller's place
    CONNECTING = "connecting"  # an agent took it; the customer is being dialled
    RETRY = "retry"  # the customer did not answer; another attempt is due
    CONNECTED = "connected"  # agent and customer talked
    FAILED = "failed"  # attempts used up, or the queue never answered
    CANCELLED = "cancelled"


class Booking(StrEnum):
    BOOKED = "booked"
    EXISTS = "exists"  # this number already has a callback pending: still one
    UNAVAILABLE = "unavailable"  # not a number we may call, Redis or AMI trouble


@dataclass
class Callback:
    id: str
    number: str
    queue: str
    skill: str
    customer_class: str
    base_priority: int
    priority: int
    queued_at: float  # the caller's first-queued time: aging and wait go on from there
    position: int  # the caller's place when they left the queue
    language: str
    origin_uniqueid: str
    booked_at: float
    status: CallbackStatus = CallbackStatus.WAITING
    attempts: int = 0
    results: list[str] = field(default_factory=list)  # per attempt: ANSWER, NOANSWER, BUSY, ... or hold_failed
    agent: str = ""
    dialled_at: list[float] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Callback:
        data = json.loads(raw)
        data["status"] = CallbackStatus(data["status"])
        return cls(**data)


class Callbacks:
    def __init__(self, ami: AmiClient, redis: Redis, rules: Callable[[], RoutingRules], *,
                 outcomes: OutcomeStore | None = None, clock: Callable[[], float] = time.time,
                 redis_timeout: float = 1.0) -> None:
        self._ami = ami
        self._outcomes = outcomes
        self._redis = redis
        self._rules = rules
        self._clock = clock
        self._timeout = redis_timeout
        ami.on("OriginateResponse", self._on_originate_response)
        ami.on("AgentConnect", self._on_agent_connect)

    def may_call(self, number: str) -> bool:
        return re.fullmatch(self._rules().callbacks.number_pattern, number) is not None

    def _ttl(self) -> int:
        return int(self._rules().callbacks.max_hold_hours * 3600) + 3600

    async def book(self, request: Callback) -> tuple[Booking, str]:
        """Hold the caller's place with a callback (the caller is then told and hangs up).
        Returns how it went and the id of the number's callback (the pending one if it exists)."""
        if not self.may_call(request.number):
            return Booking.UNAVAILABLE, ""
        key = NUMBER_KEY.format(number=request.number)
        try:
            async with asyncio.timeout(self._timeout * 3):
                while not await self._redis.set(key, request.id, nx=True, ex=self._ttl()):
                    raw = await self._redis.get(key)
                    pending_id = raw.decode() if isinstance(raw, bytes) else str(raw or "")
                    if pending_id and await self._still_pending(pending_id):
                        return Booking.EXISTS, pending_id
                    # The number's callback is over or was lost: this booking replaces it.
                    await self._redis.delete(key)
                await self._save(request)
                await self._redis.set(ORIGIN_KEY.format(uniqueid=request.origin_uniqueid), request.id, ex=self._ttl())
                await self._redis.zadd(INDEX_KEY, {request.id: request.booked_at})
        except (TimeoutError, RedisError, OSError) as exc:
            # Without Redis there is no dedupe and no record: the caller keeps waiting instead.
            log.warning("callback not booked for %s: %s", mask_number(request.number), exc)
            return Booking.UNAVAILABLE, ""
        if not await self._place(request):
            await self._finish(request, CallbackStatus.FAILED)
            return Booking.UNAVAILABLE, ""
        log.info("callback %s booked for %s in %s at position %d", request.id, mask_number(request.number),
                 request.queue, request.position)
        return Booking.BOOKED, request.id

    async def _still_pending(self, callback_id: str) -> bool:
        """Is the number's callback really still coming? A "waiting" one must be in its queue."""
        callback = await self.get(callback_id)
        if callback is None or callback.status in (CallbackStatus.CONNECTED, CallbackStatus.FAILED,
                                                   CallbackStatus.CANCELLED):
            return False
        if callback.status != CallbackStatus.WAITING:
            return True  # connecting, or a retry is due
        if await self._in_queue(callback):
            return True
        callback.results.append("lost")
        await self._finish(callback, CallbackStatus.FAILED)
        return False

    @staticmethod
    def _hold_uniqueid(callback: Callback) -> str:
        return f"cb-{callback.id}-{callback.attempts}-hold"

    async def _in_queue(self, callback: Callback) -> bool:
        """Whether the callback's hold half is waiting in its queue now (unknown counts as yes)."""
        try:
            replies = await self._ami.action({"Action": "QueueStatus", "Queue": callback.queue}, as_list=True)
        except (AmiError, TimeoutError):
            return True
        hold = self._hold_uniqueid(callback)
        return any(e.get("Event") == "QueueEntry" and e.get("Uniqueid") == hold
                   for e in (replies if isinstance(replies, list) else []))

    async def _save(self, callback: Callback) -> None:
        ttl = int(self._rules().callbacks.max_hold_hours * 3600) + 7 * 86400
        await self._redis.set(CALLBACK_KEY.format(id=callback.id), callback.to_json(), ex=ttl)
        if callback.status in (CallbackStatus.WAITING, CallbackStatus.CONNECTING, CallbackStatus.RETRY):
            # The number stays taken as long as its callback is alive, however many retries that takes.
            await self._redis.expire(NUMBER_KEY.format(number=callback.number), self._ttl())

    async def get(self, callback_id: str) -> Callback | None:
        raw = await self._redis.get(CALLBACK_KEY.format(id=callback_id))
        return Callback.from_json(raw) if raw else None

    async def _place(self, callback: Callback) -> bool:
        """Put the callback in the queue: a Local channel whose hold half queues in the caller's place."""
        rules = self._rules()
        callback.attempts += 1
        dial = rules.callbacks.dial.replace("{number}", callback.number)  # digits only (may_call)
        hold_seconds = max(60, int(rules.callbacks.max_hold_hours * 3600 - (self._clock() - callback.booked_at)))
        widening = widening_state(rules, self._clock() - callback.queued_at)
        try:
            result = await self._ami.originate(
                f"Local/{callback.id}@{HOLD_CONTEXT}",
                context=DIAL_CONTEXT, exten="s",
                caller_id=f'"Callback" <{callback.number}>',
                # Fixed ids: the customer leg's outcome is keyed by the first, the queue entry by the second.
                channel_id=f"cb-{callback.id}-{callback.attempts}",
                other_channel_id=self._hold_uniqueid(callback),
                variables={
                    # Inherited by both halves: the hold half queues with them, the dial half dials.
                    "__HOTLINE_CLASS": callback.customer_class,
                    "__HOTLINE_PRIORITY": str(callback.base_priority),
                    "__HOTLINE_QUEUED_AT": f"{callback.queued_at:.3f}",
                    "__HOTLINE_CALLBACK": callback.id,
                    "__CB_QUEUE": callback.queue,
                    "__CB_PRIO": str(callback.priority),
                    "__CB_POSITION": str(max(1, callback.position)),
                    "__CB_MAXWAIT": str(hold_seconds),
                    "__CB_MAX_PENALTY": "" if widening is None else str(widening[0]),
                    "__CB_RULE": "" if widening is None else widening[1],
                    "__CB_DIAL": dial,
                    "__CB_RING": str(rules.callbacks.ring_seconds),
                },
                timeout_ms=(hold_seconds + 60) * 1000,
                wait=False,
                action_id=f"{ACTION_PREFIX}{callback.id}-{callback.attempts}",
            )
            placed = result.success
            if not placed:
                log.warning("callback %s refused by Asterisk: %s", callback.id, result.reason)
        except (AmiError, TimeoutError) as exc:
            # Sent but unanswered (a dropped connection): placing it again could dial the customer twice,
            # so look for it in the queue first.
            await asyncio.sleep(1.0)
            placed = await self._in_queue(callback)
            log.warning("callback %s: no answer to its Originate (%s); %s", callback.id, exc,
                        "it is in the queue" if placed else "not placed")
        if not placed:
            return False
        callback.status = CallbackStatus.WAITING
        try:
            await self._save(callback)
        except (RedisError, OSError) as exc:
            log.warning("callback %s placed but its record not updated: %s", callback.id, exc)
        return True

    async def attempt_ended(
        self, callback_id: str, dial_status: str, agent: str, dialled_at: float | None
    ) -> Callback | None:
        """The dial half hung up (hangup handler AGI): record the attempt, retry or finish."""
        callback = await self.get(callback_id)
        if callback is None:
            return None
        callback.results.append(dial_status or "UNKNOWN")
        if agent:
            callback.agent = agent
        if dialled_at is not None:
            callback.dialled_at.append(dialled_at)
        if dial_status == "ANSWER":
            await self._finish(callback, CallbackStatus.CONNECTED)
        else:
            await self._retry_or_fail(callback)
        return callback

    async def _retry_or_fail(self, callback: Callback) -> None:
        rules = self._rules().callbacks
        if callback.attempts <= rules.retries:
            callback.status = CallbackStatus.RETRY
            callback.position = 1  # front of its class (priority still orders the queue)
            await self._save(callback)
            await self._redis.zadd(RETRIES_KEY, {callback.id: self._clock() + rules.retry_after})
        else:
            await self._finish(callback, CallbackStatus.FAILED)

    async def _finish(self, callback: Callback, status: CallbackStatus) -> None:
        callback.status = status
        try:
            await self._save(callback)
            await self._redis.zrem(RETRIES_KEY, callback.id)
            # Free the number only if this callback still holds it.
            key = NUMBER_KEY.format(number=callback.number)
            if (await self._redis.get(key)) in (callback.id, callback.id.encode()):
                await self._redis.delete(key)
        except (RedisError, OSError) as exc:
            log.warning("callback %s result not stored: %s", callback.id, exc)
        log.info("callback %s %s after %d attempt(s)", callback.id, status.value, callback.attempts)
        if status == CallbackStatus.FAILED and callback.results and callback.results[-1] in NO_LEG \
                and self._outcomes is not None:
            # No customer leg, so no record from its hangup handler: the callback's end is recorded here.
            await self._outcomes.save(OutcomeRecord(
                uniqueid=f"cb-{callback.id}-{callback.attempts}", kind="callback", disposition=Disposition.FAILED,
                caller=callback.number, customer_class=callback.customer_class, language=callback.language,
                skill=callback.skill or None, queue=callback.queue, priority=callback.base_priority,
                wait_seconds=round(self._clock() - callback.queued_at, 3), queued_at=callback.queued_at,
                ended_at=self._clock(),
                callback={"id": callback.id, "of": callback.origin_uniqueid, "attempt": callback.attempts,
                          "result": callback.results[-1], "status": status.value},
            ))

    async def _on_originate_response(self, event: Message) -> None:
        """A hold half that never got an agent (max hold reached) or could not start."""
        action_id = str(event.get("ActionID", ""))
        if not action_id.startswith(ACTION_PREFIX) or str(event.get("Response", "")).lower() == "success":
            return
        callback = await self.get(action_id[len(ACTION_PREFIX):].rsplit("-", 1)[0])
        if callback is None or callback.status != CallbackStatus.WAITING:
            return
        if self._clock() - callback.booked_at >= self._rules().callbacks.max_hold_hours * 3600 - 60:
            callback.results.append("expired")  # no agent took it within the longest hold: given up
            await self._finish(callback, CallbackStatus.FAILED)
        else:
            callback.results.append("hold_failed")
            await self._retry_or_fail(callback)

    async def _on_agent_connect(self, event: Message) -> None:
        """An agent took a callback's hold half: the customer is being dialled now."""
        uniqueid = str(event.get("Uniqueid", ""))
        if not (uniqueid.startswith("cb-") and uniqueid.endswith("-hold")):
            return
        callback = await self.get(uniqueid[3:].split("-", 1)[0])
        if callback is not None and callback.status == CallbackStatus.WAITING:
            callback.status = CallbackStatus.CONNECTING
            await self._save(callback)

    async def sweep(self) -> int:
        """Callbacks said to be waiting whose hold half is gone (Asterisk restarted, events lost):
        retried or given up, so none is stuck and no number stays blocked."""
        lost = 0
        horizon = self._clock() - 30
        for raw in await self._redis.zrangebyscore(INDEX_KEY, self._clock() - 2 * self._ttl(), horizon):
            callback = await self.get(raw.decode() if isinstance(raw, bytes) else str(raw))
            if callback is None or callback.status != CallbackStatus.WAITING or await self._in_queue(callback):
                continue
            fresh = await self.get(callback.id)  # it may have moved on while we looked
            if fresh is None or fresh.status != CallbackStatus.WAITING:
                continue
            fresh.results.append("lost")
            await self._retry_or_fail(fresh)
            lost += 1
        return lost

    async def run_retries(self, interval: float = 1.0, sweep_every: float = 60.0) -> None:
        """Background task (owned by the app): place the retries that are due (claiming one is a
        ZREM, so with several controllers exactly one places it), and sweep lost callbacks."""
        last_sweep = self._clock()
        while True:
            await asyncio.sleep(interval)
            if not self._ami.ready:
                continue
            try:
                if self._clock() - last_sweep >= sweep_every:
                    last_sweep = self._clock()
                    await self.sweep()
                await self.place_due()
            except (RedisError, OSError) as exc:
                log.warning("callback retries paused: %s", exc)
            except Exception:
                log.exception("callback retry round failed; trying again")

    async def place_due(self) -> int:
        """Place the retries whose time has come; returns how many this process placed."""
        placed = 0
        for raw in await self._redis.zrangebyscore(RETRIES_KEY, 0, self._clock()):
            callback_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not await self._redis.zrem(RETRIES_KEY, callback_id):
                continue  # another controller took it
            callback = await self.get(callback_id)
            if callback is None:
                continue
            if await self._place(callback):
                placed += 1
            else:
                await self._retry_or_fail(callback)
        return placed

    async def recent(self, limit: int = 50) -> list[Callback]:
        ids = await self._redis.zrevrange(INDEX_KEY, 0, limit - 1)
        found = []
        for raw in ids:
            callback = await self.get(raw.decode() if isinstance(raw, bytes) else str(raw))
            if callback is not None:
                found.append(callback)
        return found


def new_callback_id() -> str:
    return uuid.uuid4().hex[:20]
