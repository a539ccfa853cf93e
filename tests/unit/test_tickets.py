"""Work orders in the IVR and their return visits' scheduling, against a real Redis."""

import asyncio
import os
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.agi.channel import ChannelHangup, HangupReason, RecordResult
from ivr.menu.engine import CallContext, MenuEngine, SelfServed
from ivr.menu.loader import parse_menu_text
from ivr.menu.schema import CustomerClass, Severity
from ivr.prompts import PromptLibrary
from ivr.retention import expire_recordings
from ivr.selfservice import BackendUnavailable
from ivr.tickets import DescriptionFolder, TicketDesk, TicketProblem, TicketStatus, TicketStore
from ivr.yamldoc import ConfigError
from routing.ami import AmiClient
from routing.revisits import CLAIM_KEY, DUE_KEY, ReturnVisits, close_ticket, schedule
from routing.rules import Hours, Revisits, RoutingRules
from tests.unit.test_selfservice import Caller

MENU_TEXT = """\
name: tickets
languages: [zh]
default_language: zh
start: main
prompts:
  main: {zh: 报修请按一，查询请按二}
  describe: {zh: 请描述故障}
  created: {zh: 工单号为}
  within: {zh: 我们将在}
  hours: {zh: 小时内处理}
  failed: {zh: 暂时无法登记}
  ask: {zh: 请输入工单号}
  intro: {zh: 您的工单}
  open: {zh: 已受理}
  closed: {zh: 已处理完毕}
  fixed: {zh: 故障已排除}
  none: {zh: 没有查询到}
  bye: {zh: 再见}
nodes:
  main: {type: menu, prompt: main, options: {"1": report, "2": status}, fallback: agent}
  report:
    type: ticket
    category: fault
    severity_by_class: {key: urgent}
    describe_prompt: describe
    read_back: [created, "{ticket}", within, "{hours}", hours]
    unavailable_prompt: failed
    next: bye
    fallback: agent
  status:
    type: ticket_status
    prompt: ask
    say: [intro, "{ticket}", "{status}", "{hours_left}", hours]
    say_closed: [intro, "{ticket}", "{status}", "{result}"]
    values: {open: open, closed: closed, resolved: fixed}
    missing_prompt: none
    next: bye
  agent: {type: route, skill: general}
  bye: {type: hangup, prompt: bye}
"""
MENU = parse_menu_text(MENU_TEXT)
RULES = RoutingRules.model_validate({"name": "t", "skills": {"general": {"queue": "q"}}, "fallback_skill": "general"})


class Reporter(Caller):
    """A caller whose description Asterisk 'records' into the folder (as RECORD FILE would)."""

    def __init__(self, keys: str, folder: Path, said: bytes = b"\x01\x00" * 8000) -> None:
        super().__init__(keys)
        self.folder = folder
        self.said = said
        self.recorded: list[str] = []

    async def record_file(self, path: str, file_format: str = "wav", escape_digits: str = "#", *,
                          timeout_ms: int = 10000, silence_seconds: int | None = 2, beep: bool = False) -> RecordResult:
        self.recorded.append(path)
        (self.folder / f"{path.rsplit('/', 1)[-1]}.{file_format}").write_bytes(self.said)
        return RecordResult("dtmf", "#", len(self.said) // 2)


def store_of(redis: Redis, now: float | None = None) -> TicketStore:
    return TicketStore(redis, lambda severity: RULES.tickets.deadline_hours[severity],
                       clock=(lambda: now) if now is not None else time.time)


def engine(store: TicketStore, folder: Path) -> MenuEngine:
    desk = TicketDesk(store, DescriptionFolder("/asterisk/spool/tickets", folder))
    return MenuEngine(MENU, PromptLibrary("/p"), tickets=desk)


def call(number: str = "13800000001", customer_class: CustomerClass = CustomerClass.PUBLIC) -> CallContext:
    return CallContext(f"u-{time.monotonic_ns()}", number, "", customer_class, "zh")


async def test_a_fault_report_opens_a_ticket_read_back_with_its_deadline(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    store = store_of(redis)
    caller, context = Reporter("1", tmp_path), call()
    assert await engine(store, tmp_path).run(caller, context) == SelfServed("bye")
    (number,) = context.tickets
    assert context.inputs["report"] == f"opened:{number}"
    assert caller.recorded[0].startswith("/asterisk/spool/tickets/")  # written where Asterisk sees it
    assert caller.heard == ["main", "describe", "created", f"digits:{number}", "within", "number:24", "hours", "bye"]
    ticket = await store.get(number)
    assert ticket is not None and ticket.category == "fault" and ticket.severity is Severity.NORMAL
    assert ticket.status is TicketStatus.OPEN and ticket.phone == "13800000001"
    assert abs(ticket.deadline_at - ticket.created_at - 24 * 3600) < 1
    assert Path(ticket.description_audio).read_bytes() == caller.said  # kept as audio
    assert number[:6] == time.strftime("%y%m%d", time.gmtime(ticket.created_at)) and len(number) == 10


async def test_a_key_account_fault_is_urgent_and_numbers_do_not_repeat(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    store = store_of(redis)
    first, second = call(customer_class=CustomerClass.KEY), call()
    await engine(store, tmp_path).run(Reporter("1", tmp_path), first)
    await engine(store, tmp_path).run(Reporter("1", tmp_path), second)
    urgent = await store.get(first.tickets[0])
    assert urgent is not None and urgent.severity is Severity.URGENT
    assert abs(urgent.deadline_at - urgent.created_at - 4 * 3600) < 1
    assert first.tickets != second.tickets and int(second.tickets[0]) == int(first.tickets[0]) + 1


async def test_silence_opens_the_ticket_without_audio(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    store = store_of(redis)
    context = call()
    await engine(store, tmp_path).run(Reporter("1", tmp_path, said=b""), context)
    ticket = await store.get(context.tickets[0])
    assert ticket is not None and ticket.description_audio == "" and list(tmp_path.iterdir()) == []


async def test_without_the_ticket_system_the_caller_reaches_an_agent(tmp_path: Path) -> None:
    down = Redis(port=1, socket_connect_timeout=0.2)  # nothing listens there
    try:
        caller, context = Reporter("1", tmp_path), call()
        ending = await engine(store_of(down), tmp_path).run(caller, context)
    finally:
        await down.aclose()
    assert ending.skill == "general"  # type: ignore[union-attr]
    assert context.inputs["report"] == "unavailable" and "failed" in caller.heard


async def test_status_by_number_and_by_phone_open_and_closed(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    now = time.time()
    store = store_of(redis, now)
    ticket = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000002")
    by_number, context = Caller("2" + ticket.number + "#"), call("13999999999")
    await engine(store, tmp_path).run(by_number, context)
    assert context.inputs["status"] == f"told:{ticket.number}"
    assert by_number.heard[2:7] == ["intro", f"digits:{ticket.number}", "open", "number:24", "hours"]

    await close_ticket(store, redis, RULES, ticket.number, "resolved", now=now)
    by_phone, context = Caller("2#"), call("13800000002")  # just #: the latest from this number
    await engine(store, tmp_path).run(by_phone, context)
    assert by_phone.heard[2:6] == ["intro", f"digits:{ticket.number}", "closed", "fixed"]

    unknown, context = Caller("2" + "9" * 10 + "#"), call()
    await engine(store, tmp_path).run(unknown, context)
    assert context.inputs["status"] == "not_found" and "none" in unknown.heard


async def test_closing_schedules_one_return_visit(redis: Redis) -> None:
    await redis.flushdb()
    store = store_of(redis)
    ticket = await store.open(category="fault", severity=Severity.MAJOR, phone="13800000003")
    with pytest.raises(TicketProblem):
        await close_ticket(store, redis, RULES, ticket.number, "")  # a result is needed
    closed = await close_ticket(store, redis, RULES, ticket.number, "resolved")
    assert closed.status is TicketStatus.CLOSED and closed.revisit is not None
    assert closed.revisit["status"] == "scheduled"
    with pytest.raises(TicketProblem):
        await close_ticket(store, redis, RULES, ticket.number, "resolved")  # already closed
    assert not await schedule(store, redis, RULES, closed, now=time.time())  # the same closing: still one
    assert await redis.zrange(DUE_KEY, 0, -1) == [f"{ticket.number}:1".encode()]
    assert await redis.exists(CLAIM_KEY.format(ticket=ticket.number, closing=1))


async def test_a_number_that_may_not_be_called_gets_no_visit(redis: Redis) -> None:
    await redis.flushdb()
    store = store_of(redis)
    ticket = await store.open(category="complaint", severity=Severity.MAJOR, phone="anonymous")
    closed = await close_ticket(store, redis, RULES, ticket.number, "resolved")
    assert closed.revisit == {"status": "not_callable", "closing": 1}
    assert await redis.zcard(DUE_KEY) == 0


async def test_store_errors_are_backend_unavailable() -> None:
    down = Redis(port=1, socket_connect_timeout=0.2)
    try:
        with pytest.raises(BackendUnavailable):
            await store_of(down).get("2611220001")
    finally:
        await down.aclose()


def test_deadline_rules_need_every_severity() -> None:
    from routing.rules import parse_rules_text

    with pytest.raises(ConfigError, match="missing: urgent"):
        parse_rules_text("name: t\nskills: {general: {queue: q}}\nfallback_skill: general\n"
                         "tickets: {deadline_hours: {normal: 24, major: 48}}\n")


def test_ticket_nodes_refer_to_known_prompts() -> None:
    with pytest.raises(ConfigError, match="unknown prompt 'missing'"):
        parse_menu_text(MENU_TEXT.replace("describe_prompt: describe", "describe_prompt: missing"))
    with pytest.raises(ConfigError, match="unknown placeholder"):
        parse_menu_text(MENU_TEXT.replace('"{hours}", hours]', '"{balance}", hours]'))


def test_kept_recordings_expire(tmp_path: Path) -> None:
    old, new, other = tmp_path / "tickets" / "a.sln", tmp_path / "b.wav", tmp_path / "notes.txt"
    old.parent.mkdir()
    for path in (old, new, other):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    os.utime(other, (time.time() - 40 * 86400,) * 2)
    assert expire_recordings(tmp_path, 30 * 86400) == 1
    assert not old.exists() and new.exists() and other.exists()  # only audio, only old


def visits(redis: Redis, store: TicketStore, rules: RoutingRules, now: float) -> ReturnVisits:
    """The dialler's bookkeeping (no Originate is made in these tests: AMI is never connected)."""
    return ReturnVisits(AmiClient("127.0.0.1", 1, "u", "s"), redis, store, lambda: rules, clock=lambda: now)


async def test_no_visit_is_dialled_outside_calling_hours(redis: Redis) -> None:
    await redis.flushdb()
    rules = RULES.model_copy(update={"revisits": Revisits(hours=Hours(weekly={"mon": []}))})  # never open
    store = store_of(redis)
    ticket = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000004")
    await close_ticket(store, redis, rules, ticket.number, "resolved")
    assert await visits(redis, store, rules, time.time()).dial_due() == 0
    assert await redis.zscore(DUE_KEY, f"{ticket.number}:1") is not None  # still due, untouched


def test_calling_hours_are_the_hotline_local_time_unless_given() -> None:
    from routing.rules import parse_rules_text

    base = "name: t\nskills: {general: {queue: q}}\nfallback_skill: general\nhours: {timezone: Asia/Shanghai}\n"
    assert parse_rules_text(base).revisits.hours.timezone == "Asia/Shanghai"
    own = parse_rules_text(base + "revisits: {hours: {timezone: Europe/Paris}}\n")
    assert own.revisits.hours.timezone == "Europe/Paris"


async def test_a_late_or_repeated_failure_report_changes_nothing(redis: Redis) -> None:
    """Every AMI session sees every OriginateResponse, and an answered visit must never be retried."""
    await redis.flushdb()
    now = time.time()
    store = store_of(redis, now)
    ticket = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000005")
    await close_ticket(store, redis, RULES, ticket.number, "resolved", now=now)
    dialler = visits(redis, store, RULES, now)
    await store.update(ticket.number, lambda t: t.revisit.update(status="dialling", attempts=1))  # type: ignore[union-attr]
    leg = f"rv-{ticket.number}-1-1"
    await dialler.answered(leg, ticket.number, True, 5, now)
    assert await redis.zscore(DUE_KEY, f"{ticket.number}:1") is None  # done: no lease left to redial
    await dialler._attempt_failed(leg, "NOANSWER")  # a stale report for the same leg
    after = await store.get(ticket.number)
    assert after is not None and after.revisit is not None
    assert after.revisit["status"] == "done" and after.revisit["results"] == ["ANSWER"]
    assert await redis.zscore(DUE_KEY, f"{ticket.number}:1") is None


async def test_two_admins_closing_at_once_make_one_closing(redis: Redis) -> None:
    await redis.flushdb()
    store = store_of(redis)
    ticket = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000006")
    results = await asyncio.gather(close_ticket(store, redis, RULES, ticket.number, "resolved"),
                                   close_ticket(store, redis, RULES, ticket.number, "replaced"),
                                   return_exceptions=True)
    assert sum(isinstance(r, TicketProblem) for r in results) == 1
    closed = await store.get(ticket.number)
    assert closed is not None and closed.closings == 1 and closed.revisit is not None
    assert await redis.zcard(DUE_KEY) == 1


async def test_a_caller_hanging_up_after_describing_still_gets_the_ticket(redis: Redis, tmp_path: Path) -> None:
    await redis.flushdb()
    store = store_of(redis)

    class HangsUp(Reporter):
        async def record_file(self, path: str, file_format: str = "wav", escape_digits: str = "#", *,
                              timeout_ms: int = 10000, silence_seconds: int | None = 2,
                              beep: bool = False) -> RecordResult:
            await super().record_file(path, file_format, escape_digits)
            raise ChannelHangup(HangupReason.RESULT_MINUS_ONE)

    context = call()
    with pytest.raises(ChannelHangup):
        await engine(store, tmp_path).run(HangsUp("1", tmp_path), context)
    ticket = await store.get(context.tickets[0])
    assert ticket is not None and Path(ticket.description_audio).stat().st_size > 0


async def test_a_lost_sequence_never_hands_out_an_existing_number(redis: Redis) -> None:
    await redis.flushdb()
    store = store_of(redis)
    first = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000007")
    await redis.delete(*(await redis.keys("hotline:ticket-seq:*")))  # as after a Redis restart without AOF
    second = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000008")
    assert second.number != first.number
    kept = await store.get(first.number)
    assert kept is not None and kept.phone == "13800000007"
    latest = await store.latest_for("13800000007")
    assert latest is not None and latest.number == first.number


async def test_a_visit_whose_legs_never_report_stops_after_its_attempts(redis: Redis) -> None:
    await redis.flushdb()
    now = time.time()
    rules = RULES.model_copy(update={"revisits": Revisits(hours=Hours(), retries=1, min_interval_seconds=0)})
    store = store_of(redis, now)
    ticket = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000009")
    await close_ticket(store, redis, rules, ticket.number, "resolved", now=now)
    # Two legs dialled, neither reported back; the lease of the last one ran out.
    await store.update(ticket.number, lambda t: t.revisit.update(status="dialling", attempts=2))  # type: ignore[union-attr]
    assert await visits(redis, store, rules, now).dial_due() == 0  # no third call
    after = await store.get(ticket.number)
    assert after is not None and after.revisit is not None
    assert after.revisit["status"] == "no_contact" and after.revisit["results"] == ["LOST"]
    assert await redis.zcard(DUE_KEY) == 0


async def test_a_late_answer_from_an_earlier_leg_changes_nothing(redis: Redis) -> None:
    await redis.flushdb()
    now = time.time()
    store = store_of(redis, now)
    ticket = await store.open(category="fault", severity=Severity.NORMAL, phone="13800000010")
    await close_ticket(store, redis, RULES, ticket.number, "resolved", now=now)
    await store.update(ticket.number, lambda t: t.revisit.update(status="dialling", attempts=2))  # type: ignore[union-attr]
    await visits(redis, store, RULES, now).answered(f"rv-{ticket.number}-1-1", ticket.number, False, 1, now)
    after = await store.get(ticket.number)
    assert after is not None and after.status is TicketStatus.CLOSED  # not reopened by a stale report
    assert after.revisit is not None and after.revisit["status"] == "dialling"


def test_calling_hours_without_a_zone_take_the_hotline_zone() -> None:
    from routing.rules import parse_rules_text

    rules = parse_rules_text("name: t\nskills: {general: {queue: q}}\nfallback_skill: general\n"
                             "hours: {timezone: Asia/Shanghai}\n"
                             "revisits: {hours: {weekly: {mon: ['10:00-12:00']}}}\n")
    assert rules.revisits.hours.timezone == "Asia/Shanghai" and rules.revisits.hours.weekly == {"mon": ["10:00-12:00"]}
