"""Return visits: when a ticket is closed, the hotline calls the customer back to read the result,
ask whether the fault is fixed and take a 1-5 score (ivr/revisit.py speaks that part).

Closing a ticket (``hotline tickets close``, ``POST /api/tickets/<n>/close``) only writes Redis:
:func:`close_ticket` claims the closing's one return visit (SET NX, so closing twice or two admins
at once still give one call) and puts it in a due set. The dialler (:class:`ReturnVisits`, a
background task of the server) takes due visits within the rules' calling hours, at most
``max_concurrent`` at once and one per ``min_interval_seconds``, and places each with an AMI
Originate into ``hotline-revisit``. A customer who does not answer is tried again ``retries`` times,
``retry_after`` seconds later. Every dialled leg gets one outcome record (``kind: revisit``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from panoramisk.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr.outcomes import Disposition, OutcomeRecord, OutcomeStore
from ivr.selfservice import BackendUnavailable
from ivr.tickets import Ticket, TicketProblem, TicketStatus, TicketStore
from routing.ami import AmiClient, AmiError
from routing.customers import mask_number
from routing.rules import RoutingRules

log = logging.getLogger(__name__)

DUE_KEY = "hotline:revisits-due"  # zset: "<ticket>:<closing>" -> when the next attempt is due
CLAIM_KEY = "hotline:revisit-claim:{ticket}:{closing}"  # one return visit per closing
CLAIM_TTL = 60 * 86400
ACTION_PREFIX = "revisit-"
REVISIT_CONTEXT = "hotline-revisit"
TICKET_VARIABLE = "HOTLINE_REVISIT"
# OriginateResponse Reason: the last control frame the channel saw before giving up.
_REASONS = {"0": "FAILED", "1": "HANGUP", "3": "NOANSWER", "5": "BUSY", "8": "CONGESTION"}


def leg_id(ticket: str, closing: int, attempt: int) -> str:
    return f"rv-{ticket}-{closing}-{attempt}"


def parse_leg(leg: str) -> tuple[str, int, int] | None:
    match = re.fullmatch(r"rv-([0-9]+)-([0-9]+)-([0-9]+)", leg)
    return (match[1], int(match[2]), int(match[3])) if match else None


async def close_ticket(store: TicketStore, redis: Redis, rules: RoutingRules, number: str, result: str,
                       note: str = "", *, now: float | None = None) -> Ticket:
    """Close a ticket and schedule its return visit (raises TicketProblem, BackendUnavailable).
    Closing a closed ticket again schedules its visit if that was lost (Redis trouble after the
    closing), and is refused all the same."""
    moment = time.time() if now is None else now
    try:
        ticket = await store.set_status(number, TicketStatus.CLOSED, result=result, note=note)
    except TicketProblem:
        closed = await store.get(number)
        if closed is not None and closed.status == TicketStatus.CLOSED:
            await schedule(store, redis, rules, closed, now=moment)
        raise
    await schedule(store, redis, rules, ticket, now=moment)
    return await store.get(number) or ticket


async def schedule(store: TicketStore, redis: Redis, rules: RoutingRules, ticket: Ticket, *, now: float) -> bool:
    """Put the closing's return visit in the due set, once. False when none is made."""
    settings = rules.revisits
    if not settings.enabled:
        return False
    closing = ticket.closings

    def mark(status: str, **more: Any) -> Callable[[Ticket], None]:
        def change(current: Ticket) -> None:
            if current.closings == closing and current.revisit is None:
                current.revisit = {"status": status, "closing": closing, **more}
        return change

    if re.fullmatch(rules.callbacks.number_pattern, ticket.phone or "") is None:
        await store.update(ticket.number, mark("not_callable"))
        return False
    due = now + settings.delay_seconds
    try:
        async with asyncio.timeout(3):
            claimed = await redis.set(CLAIM_KEY.format(ticket=ticket.number, closing=closing), "1",
                                      nx=True, ex=CLAIM_TTL)
            if not claimed and await redis.zscore(DUE_KEY, f"{ticket.number}:{closing}") is not None:
                return False  # this closing's visit exists already
            if not claimed:  # claimed earlier: scheduled, unless Redis failed right after the claim
                current = await store.get(ticket.number)
                visit = (current.revisit or {}) if current is not None else {}
                if current is None or (visit.get("closing") == closing and visit.get("status") != "scheduled"):
                    return False
            await store.update(ticket.number, mark("scheduled", due_at=due, attempts=0, results=[],
                                                    resolved=None, score=None))
            await redis.zadd(DUE_KEY, {f"{ticket.number}:{closing}": due})
    except (TimeoutError, RedisError, OSError) as exc:
        raise BackendUnavailable(str(exc)) from exc
    log.info("ticket %s: return visit scheduled", ticket.number)
    return True


# Take a due visit and keep it as a lease (due again after ARGV[2]) until its result is known: a
# visit whose controller vanished mid-call is dialled again, never forgotten.
# KEYS[1] due set; ARGV[1] member, ARGV[2] now, ARGV[3] lease end
_CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


class ReturnVisits:
    """The dialler. Legs in flight are counted by this process for the pace (one dialling
    controller is the norm; with several, each keeps to ``max_concurrent`` of its own); the
    visit itself is a lease in Redis, so none is lost to a restart."""

    def __init__(self, ami: AmiClient, redis: Redis, store: TicketStore, rules: Callable[[], RoutingRules], *,
                 outcomes: OutcomeStore | None = None, has_script: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        self._ami = ami
        self._redis = redis
        self._store = store
        self._rules = rules
        self._outcomes = outcomes
        self._has_script = has_script
        self._clock = clock
        self._claim = redis.register_script(_CLAIM)
        self._in_flight: dict[str, float] = {}  # leg -> when dialled
        self._last_dial = float("-inf")
        ami.on("OriginateResponse", self._on_originate_response)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _lease_seconds(self) -> float:
        return self._rules().revisits.ring_seconds + 1800.0  # ringing plus the longest call

    def calling_hours(self) -> bool:
        hours = self._rules().revisits.hours
        return not hours.closed and hours.is_open(datetime.fromtimestamp(self._clock(), UTC))

    async def run(self, interval: float = 1.0) -> None:
        """Background task (owned by the app)."""
        while True:
            await asyncio.sleep(interval)
            if not self._ami.ready:
                continue
            try:
                await self.dial_due()
            except (RedisError, OSError, BackendUnavailable) as exc:
                log.warning("return visits paused: %s", exc)
            except Exception:
                log.exception("return visit round failed; trying again")

    async def dial_due(self) -> int:
        """Dial the visits whose time has come, within calling hours and the pace; returns how many."""
        settings = self._rules().revisits
        now = self._clock()
        for leg, dialled in list(self._in_flight.items()):
            if now - dialled > self._lease_seconds():
                self._in_flight.pop(leg, None)  # its lease ran out: the visit is due again in Redis
        if not settings.enabled or not self.calling_hours():
            return 0
        placed = 0
        while len(self._in_flight) < settings.max_concurrent and now - self._last_dial >= settings.min_interval_seconds:
            due = await self._redis.zrangebyscore(DUE_KEY, "-inf", now, start=0, num=1)
            if not due:
                break
            member = due[0].decode() if isinstance(due[0], bytes) else str(due[0])
            if not await self._claim(keys=[DUE_KEY], args=[member, now, now + self._lease_seconds()]):
                continue  # another controller took it
            number, _, closing = member.partition(":")
            if await self._dial(number, int(closing or 0), member):
                self._last_dial = now
                placed += 1
        return placed

    async def _dial(self, number: str, closing: int, member: str) -> bool:
        if not self._has_script():
            log.error("return visit for ticket %s not made: the menu has no revisit section", number)
            await self._redis.zrem(DUE_KEY, member)
            await self._store.update(number, lambda t: self._set_visit(t, closing, status="no_script"))
            return False
        legs: list[str] = []

        def start(ticket: Ticket) -> None:
            legs.clear()
            visit = ticket.revisit
            if ticket.status != TicketStatus.CLOSED or ticket.closings != closing or not visit \
                    or visit.get("status") not in ("scheduled", "retry", "dialling"):
                return
            if visit.get("status") == "dialling":  # its last leg never reported back (lease ran out)
                visit.setdefault("results", []).append("LOST")
                if int(visit.get("attempts", 0)) > self._rules().revisits.retries:
                    visit["status"] = "no_contact"  # that was the last attempt
                    return
            visit["attempts"] = int(visit.get("attempts", 0)) + 1
            visit["status"] = "dialling"
            legs.append(leg_id(number, closing, visit["attempts"]))

        try:
            ticket = await self._store.update(number, start)
        except TicketProblem:
            legs.clear()
            ticket = None
        if not legs or ticket is None:
            log.info("return visit for ticket %s dropped: the ticket changed since its closing", number)
            await self._redis.zrem(DUE_KEY, member)
            return False
        leg = legs[0]
        settings = self._rules().revisits
        self._in_flight[leg] = self._clock()
        try:
            result = await self._ami.originate(
                self._rules().revisit_dial(ticket.phone), context=REVISIT_CONTEXT, exten="s",
                caller_id=f'"{settings.caller_name}" <{settings.caller_id}>', channel_id=leg,
                other_channel_id=f"{leg}-c", variables={TICKET_VARIABLE: number},
                timeout_ms=settings.ring_seconds * 1000, wait=False, action_id=f"{ACTION_PREFIX}{leg}",
            )
            accepted = result.success
        except (AmiError, TimeoutError) as exc:
            # It may be ringing: no second dial now; the lease makes it due again if nothing comes back.
            log.warning("return visit %s: Originate not answered (%s)", leg, exc)
            accepted = True
        if not accepted:
            self._in_flight.pop(leg, None)
            await self._attempt_failed(leg, "FAILED")
        else:
            log.info("return visit %s: dialling %s", leg, mask_number(ticket.phone))
        return True

    @staticmethod
    def _set_visit(ticket: Ticket, closing: int, **fields: Any) -> None:
        if ticket.closings == closing and ticket.revisit is not None:
            ticket.revisit.update(fields)

    async def _on_originate_response(self, event: Message) -> None:
        action_id = str(event.get("ActionID", ""))
        if not action_id.startswith(ACTION_PREFIX) or str(event.get("Response", "")).lower() == "success":
            return  # answered: the revisit AGI takes over and calls answered()
        leg = action_id[len(ACTION_PREFIX):]
        if self._in_flight.pop(leg, None) is None:
            return  # another controller's leg (every AMI session sees every OriginateResponse)
        try:
            await self._attempt_failed(leg, _REASONS.get(str(event.get("Reason", "")), "NOANSWER"))
        except (BackendUnavailable, RedisError, OSError) as exc:
            log.warning("return visit %s: result not stored (%s); its lease will dial it again", leg, exc)

    async def not_served(self, leg: str, result: str) -> None:
        """The customer answered but could not be served (the ticket unreadable, no script): the
        attempt counts as failed, so the visit is retried or given up, never left dialling."""
        self._in_flight.pop(leg, None)
        await self._attempt_failed(leg, result)

    async def _attempt_failed(self, leg: str, result: str) -> None:
        parsed = parse_leg(leg)
        if parsed is None:
            return
        number, closing, attempt = parsed
        settings = self._rules().revisits
        retry_at = self._clock() + settings.retry_after
        applied: list[str] = []

        def change(ticket: Ticket) -> None:
            applied.clear()
            visit = ticket.revisit
            # Only this leg's own attempt, still dialling: a late or repeated report changes nothing.
            if not visit or ticket.closings != closing or visit.get("status") != "dialling" \
                    or int(visit.get("attempts", 0)) != attempt:
                return
            visit.setdefault("results", []).append(result)
            if attempt <= settings.retries:
                visit.update(status="retry", due_at=retry_at)
            else:
                visit["status"] = "no_contact"
            applied.append(visit["status"])

        try:
            ticket = await self._store.update(number, change)
        except TicketProblem:
            return
        member = f"{number}:{closing}"
        if not applied:
            return
        if applied[0] == "retry":
            await self._redis.zadd(DUE_KEY, {member: retry_at})
        else:
            await self._redis.zrem(DUE_KEY, member)
        log.info("return visit %s: %s (%s)", leg, result, applied[0])
        await self._record(leg, ticket, Disposition.FAILED, {"result": result})

    async def answered(self, leg: str, number: str, resolved: bool | None, score: int | None,
                       answered_at: float) -> None:
        """The customer answered (the revisit AGI, when the call ends): the result goes to the ticket
        and the outcome records. Not fixed: the ticket is reopened with a fresh deadline."""
        self._in_flight.pop(leg, None)
        parsed = parse_leg(leg)
        closing = parsed[1] if parsed else 0

        attempt = parsed[2] if parsed else 0

        def change(ticket: Ticket) -> None:
            visit = ticket.revisit
            # Only the leg being dialled now: a late report from an earlier leg changes nothing.
            if visit is None or ticket.closings != closing or visit.get("status") != "dialling" \
                    or int(visit.get("attempts", 0)) != attempt:
                return
            visit.setdefault("results", []).append("ANSWER")
            visit.update(status="done", resolved=resolved, score=score, answered_at=answered_at)
            if resolved is False:
                self._store.reopen(ticket, "return visit: not fixed")

        ticket = await self._store.update(number, change)
        await self._redis.zrem(DUE_KEY, f"{number}:{closing}")
        log.info("return visit %s: resolved=%s score=%s", leg, resolved, score)
        await self._record(leg, ticket, Disposition.ANSWERED, {"result": "ANSWER", "resolved": resolved,
                                                                "score": score}, answered_at=answered_at)

    async def _record(self, leg: str, ticket: Ticket, disposition: Disposition, details: dict[str, Any],
                      answered_at: float | None = None) -> None:
        if self._outcomes is None:
            return
        parsed = parse_leg(leg)
        now = self._clock()
        await self._outcomes.save(OutcomeRecord(
            uniqueid=leg, kind="revisit", disposition=disposition, caller=ticket.phone,
            customer_class=ticket.customer_class, language=ticket.language,
            survey_score=details.get("score"), answered_at=answered_at, ended_at=now,
            talk_seconds=round(now - answered_at, 3) if answered_at is not None else None,
            tickets=[ticket.number],
            revisit={"ticket": ticket.number, "attempt": parsed[2] if parsed else None, **details},
        ))
