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
from ivr.tickets import Ticket, TicketStatus, TicketStore
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
    """Close a ticket and schedule its return visit (raises TicketProblem, BackendUnavailable)."""
    ticket = await store.set_status(number, TicketStatus.CLOSED, result=result, note=note)
    await schedule(store, redis, rules, ticket, now=time.time() if now is None else now)
    return ticket


async def schedule(store: TicketStore, redis: Redis, rules: RoutingRules, ticket: Ticket, *, now: float) -> bool:
    """Put the closing's return visit in the due set, once. False when none is made."""
    settings = rules.revisits
    if not settings.enabled:
        return False
    if re.fullmatch(rules.callbacks.number_pattern, ticket.phone or "") is None:
        ticket.revisit = {"status": "not_callable", "closing": ticket.closings}
        await store.save(ticket)
        return False
    try:
        async with asyncio.timeout(3):
            claimed = await redis.set(CLAIM_KEY.format(ticket=ticket.number, closing=ticket.closings), "1",
                                      nx=True, ex=CLAIM_TTL)
            if not claimed:
                return False  # this closing's visit exists already
            due = now + settings.delay_seconds
            ticket.revisit = {"status": "scheduled", "closing": ticket.closings, "due_at": due, "attempts": 0,
                              "results": [], "resolved": None, "score": None}
            await store.save(ticket)
            await redis.zadd(DUE_KEY, {f"{ticket.number}:{ticket.closings}": due})
    except (TimeoutError, RedisError, OSError) as exc:
        raise BackendUnavailable(str(exc)) from exc
    log.info("ticket %s: return visit scheduled", ticket.number)
    return True


class ReturnVisits:
    """The dialler. In-flight legs are counted by this process (one dialling controller is the norm;
    with several, each keeps to ``max_concurrent`` of its own)."""

    def __init__(self, ami: AmiClient, redis: Redis, store: TicketStore, rules: Callable[[], RoutingRules], *,
                 outcomes: OutcomeStore | None = None, clock: Callable[[], float] = time.time) -> None:
        self._ami = ami
        self._redis = redis
        self._store = store
        self._rules = rules
        self._outcomes = outcomes
        self._clock = clock
        self._in_flight: dict[str, float] = {}  # leg -> when dialled
        self._last_dial = float("-inf")
        ami.on("OriginateResponse", self._on_originate_response)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

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
            # No OriginateResponse or no end of the call came (AMI dropped, controller gone): count
            # it as a failed attempt so the visit is tried again rather than lost.
            if now - dialled > settings.ring_seconds + 1800:
                self._in_flight.pop(leg, None)
                await self._attempt_failed(leg, "LOST")
        if not settings.enabled or not self.calling_hours():
            return 0
        placed = 0
        while len(self._in_flight) < settings.max_concurrent and now - self._last_dial >= settings.min_interval_seconds:
            due = await self._redis.zrangebyscore(DUE_KEY, "-inf", now, start=0, num=1)
            if not due:
                break
            member = due[0].decode() if isinstance(due[0], bytes) else str(due[0])
            if not await self._redis.zrem(DUE_KEY, member):
                continue  # another controller took it
            number, _, closing = member.partition(":")
            if await self._dial(number, int(closing or 0)):
                self._last_dial = now
                placed += 1
        return placed

    async def _dial(self, number: str, closing: int) -> bool:
        ticket = await self._store.get(number)
        if ticket is None or ticket.status != TicketStatus.CLOSED or ticket.closings != closing or not ticket.revisit:
            log.info("return visit for ticket %s dropped: the ticket changed since its closing", number)
            return False
        visit = ticket.revisit
        visit["attempts"] = int(visit.get("attempts", 0)) + 1
        visit["status"] = "dialling"
        leg = leg_id(number, closing, visit["attempts"])
        await self._store.save(ticket)
        settings = self._rules().revisits
        self._in_flight[leg] = self._clock()
        try:
            result = await self._ami.originate(
                self._rules().revisit_dial(ticket.phone), context=REVISIT_CONTEXT, exten="s",
                caller_id=f'"Hotline" <{ticket.phone}>', channel_id=leg, other_channel_id=f"{leg}-c",
                variables={TICKET_VARIABLE: number}, timeout_ms=settings.ring_seconds * 1000, wait=False,
                action_id=f"{ACTION_PREFIX}{leg}",
            )
            accepted = result.success
        except (AmiError, TimeoutError) as exc:
            log.warning("return visit %s: Originate not answered (%s)", leg, exc)
            accepted = True  # it may be ringing: the in-flight expiry decides, never a second dial now
        if not accepted:
            self._in_flight.pop(leg, None)
            await self._attempt_failed(leg, "FAILED")
        else:
            log.info("return visit %s: dialling %s", leg, mask_number(ticket.phone))
        return True

    async def _on_originate_response(self, event: Message) -> None:
        action_id = str(event.get("ActionID", ""))
        if not action_id.startswith(ACTION_PREFIX) or str(event.get("Response", "")).lower() == "success":
            return  # answered: the revisit AGI takes over and calls answered()
        leg = action_id[len(ACTION_PREFIX):]
        self._in_flight.pop(leg, None)
        await self._attempt_failed(leg, _REASONS.get(str(event.get("Reason", "")), "NOANSWER"))

    async def _attempt_failed(self, leg: str, result: str) -> None:
        parsed = parse_leg(leg)
        if parsed is None:
            return
        number, closing, attempt = parsed
        try:
            ticket = await self._store.get(number)
        except BackendUnavailable as exc:
            log.warning("return visit %s: result %s not stored: %s", leg, result, exc)
            return
        if ticket is None or not ticket.revisit or ticket.closings != closing:
            return
        visit = ticket.revisit
        visit.setdefault("results", []).append(result)
        settings = self._rules().revisits
        if attempt <= settings.retries:
            visit["status"] = "retry"
            visit["due_at"] = self._clock() + settings.retry_after
            await self._redis.zadd(DUE_KEY, {f"{number}:{closing}": visit["due_at"]})
        else:
            visit["status"] = "no_contact"
        await self._store.save(ticket)
        log.info("return visit %s: %s (%s)", leg, result, visit["status"])
        await self._record(leg, ticket, Disposition.FAILED, {"result": result})

    async def answered(self, leg: str, ticket: Ticket, resolved: bool | None, score: int | None,
                       answered_at: float) -> None:
        """The customer answered (the revisit AGI, when the call ends): the result goes to the ticket
        and the outcome records. Not fixed: the ticket is reopened with a fresh deadline."""
        self._in_flight.pop(leg, None)
        visit = ticket.revisit if ticket.revisit is not None else {}
        visit.setdefault("results", []).append("ANSWER")
        visit.update(status="done", resolved=resolved, score=score, answered_at=answered_at)
        ticket.revisit = visit
        if resolved is False:
            await self._store.reopen(ticket, "return visit: not fixed")
        else:
            await self._store.save(ticket)
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
