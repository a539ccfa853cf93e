"""Work orders and return visits with real calls: a caller reports a fault and hears the ticket
number, asks for its status by number and by phone; closing it makes the hotline call the customer
(a Local channel that answers and presses keys), within calling hours, paced, retried, once."""

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from ivr.app import Hotline
from ivr.menu.schema import Severity
from ivr.outcomes import Disposition, OutcomeRecord
from ivr.tickets import Ticket, TicketStatus
from ivr.web import ADMIN_HEADER
from routing.revisits import DUE_KEY
from routing.rules import Hours, Revisits
from tests.conftest import write_noise
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e

ALWAYS = Hours()  # no weekly spans given: open all week


@pytest.fixture(scope="module")
async def description(hotline: Hotline) -> AsyncIterator[str]:
    """A caller's 'description' the caller channel can play (path as Asterisk sees it)."""
    assert hotline.pbx is not None
    inside = f"{hotline.pbx.instance_dir()}/spool/test-utterances"
    host = hotline.pbx.host_path(inside)
    host.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(write_noise, host / "noise.wav", 5.0)
    # A phone keeps sending (silent) audio after the words: that is what ends the recording.
    with wave.open(str(host / "noise.wav"), "rb") as noise, wave.open(str(host / "fault.wav"), "wb") as said:
        said.setparams(noise.getparams())
        said.writeframes(noise.readframes(noise.getnframes()) + b"\x00\x00" * 8000 * 5)
    yield f"{inside}/fault"


@pytest.fixture
def revisit_rules(hotline: Hotline) -> Iterator[None]:
    """Return visits to simulated customers, fast: any hour, 1 retry 2 s later, 6 s of ringing."""
    rules = hotline.rules
    assert rules is not None
    hotline.rules = rules.model_copy(update={"revisits": Revisits(
        hours=ALWAYS, dial="Local/{number}@hotline-test-revisited", min_interval_seconds=0, ring_seconds=6,
        retries=1, retry_after=2, max_concurrent=2,
    )})
    yield
    hotline.rules = rules


async def close(hotline: Hotline, number: str, result: str = "resolved") -> dict[str, object]:
    url = f"http://127.0.0.1:{hotline.settings.web_port}/api/tickets/{number}"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"status": "closed", "result": result},
                                headers={ADMIN_HEADER: hotline.admin_token}) as response:
            assert response.status == 200, await response.text()
            return await response.json()  # type: ignore[no-any-return]


async def new_ticket(hotline: Hotline, phone: str) -> Ticket:
    assert hotline.tickets is not None
    return await hotline.tickets.open(category="fault", severity=Severity.NORMAL, phone=phone, language="zh")


async def ticket_of(hotline: Hotline, number: str) -> Ticket:
    assert hotline.tickets is not None
    found = await hotline.tickets.get(number)
    assert found is not None
    return found


async def test_a_fault_report_by_phone_then_its_status_by_number_and_by_phone(
        hotline: Hotline, calls: Calls, description: str) -> None:
    number = f"139{int(time.time() * 1000) % 10**8:08d}"
    # Mandarin, faults, "leave a fault report"; the description is played after the beep.
    uniqueid = await calls.dial(keys="133", gap=1.5, number=number, hold=40,
                                extra={"__CALLER_PLAY": description, "__CALLER_PLAY_AFTER": "4"})
    record = await calls.outcome(uniqueid, timeout=120)
    assert record.disposition is Disposition.SELF_SERVED, (record.menu_path, record.inputs)
    (ticket_number,) = record.tickets
    assert record.inputs["fault_report"] == f"opened:{ticket_number}"
    assert record.menu_path[-2:] == ["fault_report", "goodbye"]
    ticket = await ticket_of(hotline, ticket_number)
    assert ticket.phone == number and ticket.status is TicketStatus.OPEN and ticket.origin_uniqueid == uniqueid
    assert abs(ticket.deadline_at - ticket.created_at - 24 * 3600) < 1  # normal: 24 h
    assert Path(ticket.description_audio).stat().st_size > 8000  # the caller's words, kept (8 kHz 16-bit)

    by_number = await calls.dial(keys="134" + ticket_number + "#", gap=1.2, hold=40)
    record = await calls.outcome(by_number, timeout=120)
    assert record.inputs["fault_status"] == f"told:{ticket_number}", record.inputs
    assert record.disposition is Disposition.SELF_SERVED

    by_phone = await calls.dial(keys="134#", gap=1.5, number=number, hold=40)  # just #: the latest
    record = await calls.outcome(by_phone, timeout=120)
    assert record.inputs["fault_status"] == f"told:{ticket_number}", record.inputs


async def outcome_of(calls: Calls, leg: str, timeout: float = 60) -> OutcomeRecord:
    return await calls.outcome(leg, timeout=timeout)


async def test_closing_calls_the_customer_back_and_the_answers_land_on_ticket_and_record(
        hotline: Hotline, calls: Calls, revisit_rules: None) -> None:
    fixed = await new_ticket(hotline, "1390000015")  # answers: 1 (fixed), score 5
    not_fixed = await new_ticket(hotline, "1390000024")  # answers: 2 (not fixed), score 4
    reply = await close(hotline, fixed.number)
    assert reply["ticket"]["revisit"]["status"] == "scheduled"  # type: ignore[index]
    await close(hotline, not_fixed.number, "replaced")

    record = await outcome_of(calls, f"rv-{fixed.number}-1-1")
    assert record.kind == "revisit" and record.disposition is Disposition.ANSWERED
    assert record.revisit is not None and record.revisit["resolved"] is True and record.revisit["score"] == 5
    assert record.survey_score == 5 and record.tickets == [fixed.number]
    ticket = await ticket_of(hotline, fixed.number)
    assert ticket.status is TicketStatus.CLOSED
    assert ticket.revisit is not None and ticket.revisit["status"] == "done" and ticket.revisit["score"] == 5

    record = await outcome_of(calls, f"rv-{not_fixed.number}-1-1")
    assert record.revisit is not None and record.revisit["resolved"] is False and record.revisit["score"] == 4
    ticket = await ticket_of(hotline, not_fixed.number)
    assert ticket.status is TicketStatus.REOPENED  # with a fresh deadline
    assert ticket.deadline_at > time.time() + 23 * 3600

    # Closed once, called once: no second leg, and closing again is refused.
    await asyncio.sleep(3)
    assert await hotline.outcomes.get(f"rv-{fixed.number}-1-2") is None  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{hotline.settings.web_port}/api/tickets/{fixed.number}"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"status": "closed", "result": "resolved"},
                                headers={ADMIN_HEADER: hotline.admin_token}) as response:
            assert response.status == 422
        async with session.post(url, json={"status": "closed", "result": "resolved"}) as response:
            assert response.status == 403  # no admin token


async def test_an_unanswered_customer_is_tried_again_then_given_up(
        hotline: Hotline, calls: Calls, revisit_rules: None) -> None:
    ticket = await new_ticket(hotline, "1390000030")  # never answers
    await close(hotline, ticket.number)
    first = await outcome_of(calls, f"rv-{ticket.number}-1-1")
    second = await outcome_of(calls, f"rv-{ticket.number}-1-2")
    for record in (first, second):
        assert record.kind == "revisit" and record.disposition is Disposition.FAILED
        assert record.revisit is not None and record.revisit["result"] == "NOANSWER"
    assert (second.ended_at or 0) - (first.ended_at or 0) >= 2 + 6 - 1  # retry_after, then ringing again
    visit = (await ticket_of(hotline, ticket.number)).revisit
    assert visit is not None and visit["status"] == "no_contact" and visit["attempts"] == 2
    await asyncio.sleep(4)
    assert await hotline.outcomes.get(f"rv-{ticket.number}-1-3") is None  # type: ignore[union-attr]


async def test_no_call_outside_calling_hours_and_one_at_a_time_when_paced(
        hotline: Hotline, calls: Calls, revisit_rules: None) -> None:
    rules = hotline.rules
    assert rules is not None and hotline.redis is not None
    closed_hours = Hours(weekly={"mon": []})  # never open
    hotline.rules = rules.model_copy(update={"revisits": rules.revisits.model_copy(
        update={"hours": closed_hours, "min_interval_seconds": 5})})
    first = await new_ticket(hotline, "1390000115")
    second = await new_ticket(hotline, "1390000215")
    await close(hotline, first.number)
    await close(hotline, second.number)
    await asyncio.sleep(4)
    assert await hotline.redis.zscore(DUE_KEY, f"{first.number}:1") is not None  # still waiting
    assert (await ticket_of(hotline, first.number)).revisit["status"] == "scheduled"  # type: ignore[index]

    hotline.rules = rules.model_copy(update={"revisits": rules.revisits.model_copy(
        update={"min_interval_seconds": 5})})  # calling hours open now
    one = await outcome_of(calls, f"rv-{first.number}-1-1")
    other = await outcome_of(calls, f"rv-{second.number}-1-1")
    assert one.disposition is Disposition.ANSWERED and other.disposition is Disposition.ANSWERED
    started = sorted([one.answered_at or 0, other.answered_at or 0])
    assert started[1] - started[0] >= 4.5  # one every 5 s, even with room for two at once
