"""Work orders: fault reports and complaints taken in the IVR, kept in Redis.

A ticket has a number the caller can key in later (``YYMMDD`` plus a daily sequence), a category,
a severity whose deadline comes from the routing rules (normal 24 h, major 48 h, urgent 4 h by
default), the caller's description kept as audio, and a status: open -> (in_progress) -> closed,
or reopened when the return visit hears the fault is not fixed. Closing a ticket schedules the
return visit (``routing/revisits.py``). An operator with its own ticketing system replaces
``TicketStore`` behind the same methods, returning exactly their declared types (the compiled
menu engine checks them: see ivr/selfservice.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from ivr.agi.channel import AgiCommandFailed, ChannelHangup, RecordResult
from ivr.menu.schema import Severity
from ivr.selfservice import BackendUnavailable
from ivr.speech.listen import settled_size

log = logging.getLogger(__name__)

TICKET_KEY = "hotline:ticket:{number}"
SEQUENCE_KEY = "hotline:ticket-seq:{day}"
INDEX_KEY = "hotline:tickets"  # zset: number -> created
PHONE_KEY = "hotline:tickets-of:{phone}"  # zset: number -> created, per caller number
TICKET_TTL = 400 * 86400  # a year and a bit: complaints are audited yearly
TICKET_NUMBER = re.compile(r"^[0-9]{10,12}$")


class TicketStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"
    REOPENED = "reopened"  # the return visit heard the fault is still there


class TicketProblem(Exception):
    """An admin action that cannot be done (unknown ticket, already closed, bad result code)."""


@dataclass
class Ticket:
    number: str
    category: str
    severity: Severity
    phone: str
    created_at: float
    deadline_at: float
    status: TicketStatus = TicketStatus.OPEN
    customer_class: str = "public"
    account: str = ""
    language: str = ""
    origin_uniqueid: str = ""
    description_audio: str = ""  # host path of the caller's description ("" when none or expired)
    closed_at: float | None = None
    result: str = ""  # the closing result code (the menu says it through a prompt)
    note: str = ""
    closings: int = 0  # each closing gets its own return visit
    revisit: dict[str, Any] | None = None  # status, attempts, results, resolved, score
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Ticket:
        data = json.loads(raw)
        data["severity"] = Severity(data["severity"])
        data["status"] = TicketStatus(data["status"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def hours_left(self, now: float) -> int:
        """Whole hours to the deadline, rounded up (0 when overdue)."""
        return max(0, -int(-(self.deadline_at - now) // 3600))


class Recorder(Protocol):
    async def record_file(
        self, path: str, file_format: str = "wav", escape_digits: str = "#", *, timeout_ms: int = 10000,
        silence_seconds: int | None = 2, beep: bool = False,
    ) -> RecordResult: ...


class TicketStore:
    """Tickets in Redis; every call has a deadline and raises BackendUnavailable on trouble."""

    def __init__(self, redis: Redis, deadline_hours: Callable[[Severity], float], *,
                 clock: Callable[[], float] = time.time, timeout: float = 1.0,
                 zone: Callable[[], str] = lambda: "UTC") -> None:
        self._redis = redis
        self._deadline_hours = deadline_hours
        self._clock = clock
        self._timeout = timeout
        self._zone = zone

    async def _guarded(self, work: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout * 3):
                return await work
        except (TimeoutError, RedisError, OSError) as exc:
            raise BackendUnavailable(str(exc)) from exc

    async def _number(self, now: float) -> str:
        from zoneinfo import ZoneInfo

        day = datetime.fromtimestamp(now, ZoneInfo(self._zone())).strftime("%y%m%d")
        key = SEQUENCE_KEY.format(day=day)
        sequence = await self._redis.incr(key)
        if sequence == 1:
            await self._redis.expire(key, 3 * 86400)
        return f"{day}{sequence:04d}"

    async def open(self, *, category: str, severity: Severity, phone: str, customer_class: str = "public",
                   account: str = "", language: str = "", origin_uniqueid: str = "",
                   description_audio: str = "") -> Ticket:
        now = self._clock()

        async def work() -> Ticket:
            ticket = Ticket(
                number="", category=category, severity=severity, phone=phone,
                created_at=now, deadline_at=now + self._deadline_hours(severity) * 3600,
                customer_class=customer_class, account=account, language=language,
                origin_uniqueid=origin_uniqueid, description_audio=description_audio,
                history=[{"at": now, "status": TicketStatus.OPEN.value}],
            )
            for _ in range(1000):
                ticket.number = await self._number(now)
                # A new ticket never takes an existing one's number (a sequence counter lost to a
                # Redis restart would hand it out again): the next one is taken instead.
                if await self._redis.set(TICKET_KEY.format(number=ticket.number), ticket.to_json(), ex=TICKET_TTL,
                                         nx=True):
                    await self._write(ticket)
                    return ticket
            raise BackendUnavailable("no free ticket number today")

        ticket: Ticket = await self._guarded(work())
        log.info("ticket %s opened: %s, %s, due in %g h", ticket.number, category, severity.value,
                 self._deadline_hours(severity))
        return ticket

    async def _write(self, ticket: Ticket) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(TICKET_KEY.format(number=ticket.number), ticket.to_json(), ex=TICKET_TTL)
        pipe.zadd(INDEX_KEY, {ticket.number: ticket.created_at})
        if ticket.phone:
            pipe.zadd(PHONE_KEY.format(phone=ticket.phone), {ticket.number: ticket.created_at})
            pipe.expire(PHONE_KEY.format(phone=ticket.phone), TICKET_TTL)
        await pipe.execute()

    async def save(self, ticket: Ticket) -> None:
        await self._guarded(self._write(ticket))

    async def get(self, number: str) -> Ticket | None:
        if TICKET_NUMBER.match(number) is None:
            return None
        raw = await self._guarded(self._redis.get(TICKET_KEY.format(number=number)))
        return _parse(number, raw)

    async def latest_for(self, phone: str) -> Ticket | None:
        """The caller's most recent ticket (status by phone)."""
        if not phone:
            return None
        numbers = await self._guarded(self._redis.zrevrange(PHONE_KEY.format(phone=phone), 0, 0))
        if not numbers:
            return None
        number = numbers[0].decode() if isinstance(numbers[0], bytes) else str(numbers[0])
        return await self.get(number)

    async def recent(self, count: int = 50) -> list[Ticket]:
        numbers = await self._guarded(self._redis.zrevrange(INDEX_KEY, 0, count - 1))
        tickets = []
        for raw_number in numbers:
            ticket = await self.get(raw_number.decode() if isinstance(raw_number, bytes) else str(raw_number))
            if ticket is not None:
                tickets.append(ticket)
        return tickets

    async def update(self, number: str, change: Callable[[Ticket], None]) -> Ticket:
        """Read, change and write one ticket atomically (WATCH/MULTI, retried on a concurrent write),
        so an admin's closing and a return visit's result never overwrite each other. ``change``
        may raise TicketProblem to refuse; nothing is written then."""

        async def work() -> Ticket:
            key = TICKET_KEY.format(number=number)
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        ticket = _parse(number, await pipe.get(key))
                        if ticket is None:
                            raise TicketProblem(f"no ticket {number}")
                        change(ticket)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, ticket.to_json(), ex=TICKET_TTL)
                        await pipe.execute()
                        return ticket
                    except WatchError:
                        continue  # written meanwhile: read it again

        if TICKET_NUMBER.match(number) is None:
            raise TicketProblem(f"no ticket {number}")
        ticket: Ticket = await self._guarded(work())
        return ticket

    async def set_status(self, number: str, status: TicketStatus, *, result: str = "", note: str = "") -> Ticket:
        """An admin's change (CLI or API). Closing needs a result code
        (routing.revisits.close_ticket also schedules the return visit)."""
        if status == TicketStatus.CLOSED and not re.fullmatch(r"[a-z0-9_]{1,32}", result):
            raise TicketProblem("closing needs a result code (letters, digits, _), e.g. resolved")
        now = self._clock()

        def change(ticket: Ticket) -> None:
            if status == ticket.status:
                raise TicketProblem(f"ticket {number} is already {status.value}")
            ticket.status = status
            if status == TicketStatus.CLOSED:
                ticket.closed_at, ticket.result, ticket.closings = now, result, ticket.closings + 1
                if ticket.revisit:  # the previous closing's visit stays in the history
                    ticket.history.append({"at": now, "revisit": ticket.revisit})
                    ticket.revisit = None
            if note:
                ticket.note = note[:500]
            ticket.history.append({"at": now, "status": status.value, **({"result": result} if result else {})})

        ticket = await self.update(number, change)
        log.info("ticket %s %s%s", number, status.value, f" ({result})" if result else "")
        return ticket

    def reopen(self, ticket: Ticket, why: str) -> None:
        """(Inside an update.) The customer says the fault is still there: open again, with a
        fresh deadline."""
        now = self._clock()
        ticket.status = TicketStatus.REOPENED
        ticket.deadline_at = now + self._deadline_hours(ticket.severity) * 3600
        ticket.history.append({"at": now, "status": TicketStatus.REOPENED.value, "why": why})


def _parse(number: str, raw: str | bytes | None) -> Ticket | None:
    """A stored ticket; an unreadable one is logged and treated as missing, never a crash mid-call."""
    if not raw:
        return None
    try:
        return Ticket.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("ticket %s is unreadable in Redis: %s", number, exc)
        return None


@dataclass(frozen=True)
class DescriptionFolder:
    """Where callers' descriptions are kept: the folder as Asterisk writes it and as we read it."""

    asterisk_dir: str
    host_dir: Path

    async def record(self, recorder: Recorder, uniqueid: str, max_seconds: int) -> tuple[str, ChannelHangup | None]:
        """Record the caller's description (a beep, then until silence, # or the cap). Returns the
        kept file's host path ("" when nothing was said or it could not be written) and whether the
        caller hung up meanwhile (what they said before hanging up is kept all the same)."""
        name = f"{re.sub(r'[^A-Za-z0-9.-]', '_', uniqueid)[:64]}-{uuid.uuid4().hex[:8]}"
        audio = self.host_dir / f"{name}.sln"
        hung_up: ChannelHangup | None = None
        recorded = 0  # samples Asterisk says it recorded
        try:
            await asyncio.to_thread(self.host_dir.mkdir, parents=True, exist_ok=True)
            result = await recorder.record_file(
                f"{self.asterisk_dir.rstrip('/')}/{name}", "sln", "#", timeout_ms=max_seconds * 1000,
                silence_seconds=3, beep=True,
            )
            if result.ended_by == "writefile":
                log.warning("call %s: description could not be written (disk full?)", uniqueid)
                return "", None
            recorded = result.end_position
        except ChannelHangup as hangup:
            hung_up = hangup
        except (AgiCommandFailed, OSError) as exc:
            log.warning("call %s: description not recorded: %s", uniqueid, exc)
            return "", None
        size = await settled_size(audio)
        if not size:
            # With the disk full Asterisk's writes fail but RECORD FILE answers as usual (seen:
            # "timeout", endpos 0), just as for a caller who said nothing: ask the disk.
            free = await asyncio.to_thread(free_bytes, self.host_dir)
            if recorded or free < LOW_DISK_BYTES:
                log.warning("call %s: description could not be written (disk full?): %d samples recorded, "
                            "%d bytes free", uniqueid, recorded, free)
            await asyncio.to_thread(audio.unlink, missing_ok=True)
            return "", hung_up
        return str(audio), hung_up


LOW_DISK_BYTES = 1024 * 1024  # less free than this where recordings go: an empty one is a failed write


def free_bytes(folder: Path) -> int:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize


def describe(ticket: Ticket, now: float) -> str:
    """One line for `hotline tickets`."""
    created = datetime.fromtimestamp(ticket.created_at, UTC).strftime("%Y-%m-%d %H:%M")
    due = "overdue" if ticket.status != TicketStatus.CLOSED and now > ticket.deadline_at else (
        f"{ticket.hours_left(now)} h left" if ticket.status != TicketStatus.CLOSED else ticket.result)
    visit = ""
    if ticket.revisit:
        visit = f"  revisit {ticket.revisit.get('status')}"
        if ticket.revisit.get("score") is not None:
            visit += f" score {ticket.revisit['score']}"
    from routing.customers import mask_number

    return (f"{ticket.number}  {created}Z  {ticket.category:<10} {ticket.severity.value:<6} "
            f"{ticket.status.value:<11} {due:<10} {mask_number(ticket.phone)}{visit}")


@dataclass
class TicketDesk:
    """What the IVR needs to open and look up tickets: the store and the descriptions' folder."""

    store: TicketStore
    descriptions: DescriptionFolder
