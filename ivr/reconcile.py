"""AMI events reconciled with the AGI sessions: every inbound call gets its one outcome record.

The record is normally written by the hangup handler's ``finish`` AGI (ivr/calls.py). Should that
never arrive at a controller (refused while draining, a controller that died with another one
still up, a bug in ``finish``), the AMI events still tell the story: the queue joined, the agent
connected and after how long, an abandon and where. This watchdog follows those events for
inbound calls; after a Hangup it gives ``finish`` a grace period, and if no record exists by
then it writes one from the AMI view plus the IVR's state kept in Redis (``source: ami``). The
record store writes a key only if it is absent, so a late ``finish`` and the watchdog can never
make two.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from panoramisk.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr import variables as v
from ivr.calls import CallStates, build_outcome
from ivr.outcomes import OutcomeStore
from routing.ami import AmiClient
from routing.callbacks import ORIGIN_KEY
from routing.customers import normalize_number
from routing.live import LeftQueue

log = logging.getLogger(__name__)

# Where an inbound call's channel is when it hangs up (the hotline's own dialplan contexts).
INBOUND_CONTEXTS = {"hotline-inbound", "hotline-finish", "hotline-queue-keys"}


@dataclass
class SeenCall:
    caller: str = ""
    queue: str | None = None
    first_queued: float | None = None
    last_joined: float | None = None
    agent: str | None = None
    hold_seconds: float | None = None
    abandoned: bool = False
    position: int = 0
    hung_up_at: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


class OutcomeWatchdog:
    def __init__(
        self,
        ami: AmiClient,
        redis: Redis,
        outcomes: OutcomeStore,
        states: CallStates,
        menu_name: Callable[[], str],
        fallback_queue: Callable[[], str],
        *,
        grace_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._outcomes = outcomes
        self._states = states
        self._menu_name = menu_name
        self._fallback_queue = fallback_queue
        self.grace_seconds = grace_seconds
        self._clock = clock
        self._calls: dict[str, SeenCall] = {}
        self.written = 0
        ami.on("QueueCallerJoin", self._on_join)
        ami.on("AgentConnect", self._on_connect)
        ami.on("QueueCallerAbandon", self._on_abandon)
        ami.on("Hangup", self._on_hangup)

    def _call(self, event: Message) -> SeenCall | None:
        uniqueid = str(event.get("Uniqueid", ""))
        if not uniqueid or "@hotline-callback-hold-" in str(event.get("Channel", "")):
            return None  # a callback's hold half is not a call of its own
        call = self._calls.get(uniqueid)
        if call is None:
            if len(self._calls) > 20000:  # calls whose hangup we never saw (AMI was down): forget the oldest
                for old in list(self._calls)[:5000]:
                    del self._calls[old]
            call = self._calls[uniqueid] = SeenCall(caller=str(event.get("CallerIDNum", "")))
        return call

    async def _on_join(self, event: Message) -> None:
        call = self._call(event)
        if call is not None:
            now = self._clock()
            call.queue = str(event.get("Queue", ""))
            call.first_queued = call.first_queued or now
            call.last_joined = now

    async def _on_connect(self, event: Message) -> None:
        call = self._call(event)
        if call is not None:
            call.agent = str(event.get("MemberName", "") or event.get("Interface", "")) or None
            try:
                call.hold_seconds = float(str(event.get("HoldTime", "")))
            except ValueError:
                call.hold_seconds = None

    async def _on_abandon(self, event: Message) -> None:
        call = self._call(event)
        if call is not None:
            call.abandoned = True
            try:
                call.position = int(str(event.get("Position", "0")))
            except ValueError:
                pass

    async def _on_hangup(self, event: Message) -> None:
        uniqueid = str(event.get("Uniqueid", ""))
        if str(event.get("Context", "")) not in INBOUND_CONTEXTS:
            self._calls.pop(uniqueid, None)  # an agent leg, a test caller's half, ...
            return
        call = self._call(event)
        if call is not None:
            call.hung_up_at = self._clock()

    async def check(self) -> int:
        """Write the records ``finish`` did not write for calls hung up more than the grace ago."""
        now = self._clock()
        due = [u for u, c in self._calls.items()
               if c.hung_up_at is not None and now - c.hung_up_at >= self.grace_seconds]
        written = 0
        for uniqueid in due:
            call = self._calls[uniqueid]
            try:
                if await self._outcomes.exists(uniqueid):
                    self._calls.pop(uniqueid, None)
                    continue  # finish wrote it, as it should
                booked = await self._redis.get(ORIGIN_KEY.format(uniqueid=uniqueid))
            except (RedisError, OSError):
                continue  # Redis is away: try again next round (the call stays in the list)
            self._calls.pop(uniqueid, None)
            context, ivr_ended = await self._states.take(uniqueid)
            joined = call.queue is not None
            variables: dict[str, str | None] = {
                v.DONE: v.DONE_ROUTE if joined else None,
                v.QUEUE_NAME: call.queue,
                v.QUEUED_AT: f"{call.first_queued:.3f}" if call.first_queued else None,
                v.STINT_AT: f"{call.last_joined:.3f}" if call.last_joined else None,
                v.MEMBER_NAME: call.agent,
                v.HOLD_TIME: f"{call.hold_seconds:.0f}" if call.hold_seconds is not None else None,
                v.ABANDONED: "TRUE" if call.abandoned else None,
            }
            if booked:  # the caller left the queue for a callback that holds their place
                variables[v.CALLBACK] = booked.decode() if isinstance(booked, bytes) else str(booked)
                variables[v.WAIT_NEXT] = v.WAIT_CALLBACK
            left = None
            if call.abandoned and call.queue:
                left = LeftQueue(call.queue, call.position, True, call.hung_up_at or now)
            record = build_outcome(uniqueid, normalize_number(call.caller), context, ivr_ended, variables,
                                   self._menu_name(), self._fallback_queue(), call.hung_up_at or now, left)
            record.source = "ami"
            if await self._outcomes.save(record):
                written += 1
                log.warning("call %s had no outcome from its hangup handler; written from AMI events: %s",
                            uniqueid, record.disposition.value)
        self.written += written
        return written

    async def run(self, interval: float = 2.0) -> None:
        """Background task (owned by the app)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:
                log.exception("outcome reconciliation round failed; trying again")


# The hangup handler's own journal (extensions.conf [hotline-finish]): uniqueid, caller number,
# FINISH_VARIABLES in order, end time.
UNFINISHED_COLUMNS = ("UNIQUEID", "CALLERID(num)", *v.FINISH_VARIABLES, "EPOCH")
UNFINISHED_FILE = "hotline-unfinished.csv"  # in Asterisk's log directory


class UnfinishedCalls:
    """Calls whose hangup handler found no controller (none was up, or it died mid-``finish``).

    The dialplan writes their variables to a file of its own; this turns each line into the
    outcome record ``finish`` would have written (``source: dialplan``), with the IVR's state kept
    in Redis. The file is renamed before it is read, so Asterisk starts a new one for the next
    lines and a line is never taken twice; what could not be stored stays for the next round.
    """

    def __init__(self, path: Path, outcomes: OutcomeStore, states: CallStates, menu_name: Callable[[], str],
                 fallback_queue: Callable[[], str]) -> None:
        self.path = path
        self._outcomes = outcomes
        self._states = states
        self._menu_name = menu_name
        self._fallback_queue = fallback_queue
        self.written = 0

    @property
    def _taken(self) -> Path:
        return self.path.with_name(self.path.name + ".taking")

    async def take(self, settle: float = 1.0) -> int:
        """Write the records the journal owes; returns how many were new."""
        if not self._taken.exists():
            try:
                await asyncio.to_thread(self.path.rename, self._taken)
            except FileNotFoundError:
                return 0
            # Asterisk's FILE() opens, writes and closes: a line whose open came just before the
            # rename still lands in the renamed file. Give it that moment before reading.
            await asyncio.sleep(settle)
        text = await asyncio.to_thread(self._taken.read_text, encoding="utf-8", errors="replace")
        written = 0
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:  # never written by Asterisk's CSV_QUOTE: keep it aside, go on
            log.error("the journal %s is not CSV (%s); kept as %s.bad", self._taken, exc, self._taken)
            await asyncio.to_thread(self._taken.rename, self._taken.with_name(self._taken.name + ".bad"))
            return 0
        for row in rows:
            if len(row) != len(UNFINISHED_COLUMNS) or not row[0]:
                log.error("unreadable line in %s: %.80s", self._taken, ",".join(row))
                continue
            values: dict[str, str | None] = {
                name: (value or None) for name, value in zip(UNFINISHED_COLUMNS, row, strict=True)}
            uniqueid, caller = row[0], row[1]
            try:
                ended = float(row[-1])
            except ValueError:
                ended = time.time()
            if await self._outcomes.exists(uniqueid):
                continue  # finish stored it after all (it died before saying so), or the watchdog did
            context, ivr_ended = await self._states.take(uniqueid)
            record = build_outcome(uniqueid, normalize_number(caller), context, ivr_ended, values,
                                   self._menu_name(), self._fallback_queue(), ended)
            record.source = "dialplan"
            if await self._outcomes.save(record):
                written += 1
                log.warning("call %s ended with no controller to record it; written from the dialplan's journal: %s",
                            uniqueid, record.disposition.value)
        await asyncio.to_thread(self._taken.unlink)
        self.written += written
        return written

    async def run(self, interval: float = 5.0) -> None:
        """Background task (owned by the app): at start (calls that ended while no controller was
        up) and every few seconds after."""
        while True:
            try:
                await self.take()
            except (RedisError, OSError) as exc:
                log.warning("the dialplan's journal of unrecorded calls waits: %s", exc)
            except Exception:
                log.exception("taking the dialplan's journal of unrecorded calls failed")
            await asyncio.sleep(interval)
