"""Waiting in the queue with real calls: announcements from the live state, and virtual-hold
callbacks that keep the caller's place, wait for a free agent and dial the customer once."""

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from panoramisk.message import Message

from ivr.app import Hotline
from ivr.menu.loader import load_menu
from ivr.outcomes import Disposition, OutcomeRecord
from routing.ami import AmiError
from routing.callbacks import NUMBER_KEY, Callback, CallbackStatus
from routing.rules import load_rules, parse_rules_text
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e

PBX = Path(__file__).resolve().parents[2] / "asterisk" / "hotline-pbx"


@pytest.fixture
async def waiting_rules(hotline: Hotline, fixtures_dir: Path) -> AsyncIterator[None]:
    sample_menu, sample_rules = hotline.menu, hotline.rules
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue-waiting.yaml")
    hotline.rules = load_rules(fixtures_dir / "routing-callbacks.yaml")
    try:
        yield
    finally:
        hotline.menu, hotline.rules = sample_menu, sample_rules


class CustomerLegs:
    """Counts the calls Asterisk places to test customers (the callbacks' customer legs)."""

    def __init__(self) -> None:
        self.placed: list[tuple[str, float]] = []

    async def __call__(self, event: Message) -> None:
        channel = str(event.get("Channel", ""))
        if "@hotline-test-customer-" in channel and channel.endswith(";1"):
            self.placed.append((channel, time.time()))

    def to(self, number: str) -> list[float]:
        return [at for channel, at in self.placed if channel.startswith(f"Local/{number}@")]


async def _callback(hotline: Hotline, callback_id: str, status: CallbackStatus, timeout: float = 60) -> Callback:
    assert hotline.callbacks is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        callback = await hotline.callbacks.get(callback_id)
        if callback is not None and callback.status == status:
            return callback
        await asyncio.sleep(0.25)
    raise AssertionError(f"callback {callback_id} never became {status}: {callback}")


async def _callback_leg(hotline: Hotline, callback_id: str, timeout: float = 60) -> list[OutcomeRecord]:
    assert hotline.outcomes is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        legs = [r for r in await hotline.outcomes.recent(50) if (r.callback or {}).get("id") == callback_id
                and r.kind == "callback"]
        if legs:
            return legs
        await asyncio.sleep(0.25)
    raise AssertionError(f"no outcome for callback {callback_id}'s customer leg")


async def test_a_callback_keeps_its_place_and_is_dialled_once_an_agent_is_free(
    hotline: Hotline, calls: Calls, waiting_rules: None
) -> None:
    assert hotline.ami is not None and hotline.live is not None and hotline.redis is not None
    legs = CustomerLegs()
    hotline.ami.on("Newchannel", legs)
    agent = "Local/talk25@hotline-test-agent/n"
    number = "13900007771"  # ends in 1: the test customer answers
    await hotline.redis.delete(NUMBER_KEY.format(number=number))
    await hotline.ami.queue_add("hotline-general", agent, member_name="agent-cb")
    try:
        busy = await calls.dial(wait=0.5, hold=40)  # takes the only agent for 25 s
        for _ in range(40):
            if any(a.state == "on_call" for a in hotline.live.agents.values() if a.name == "agent-cb"):
                break
            await asyncio.sleep(0.25)
        # The caller who will ask for a callback, and one who just waits, behind them.
        caller = await calls.dial(number=number, keys="1", wait=7, hold=30)
        await calls.wait_in_queue("hotline-general", caller)
        patient = await calls.dial(wait=0.5, hold=60)
        await calls.wait_in_queue("hotline-general", patient)

        booked = await calls.outcome(caller)
        assert booked.disposition is Disposition.CALLBACK_BOOKED, booked
        assert booked.callback is not None
        callback_id = booked.callback["id"]
        # Told their place and the wait estimated from the live state (one agent, busy).
        assert booked.announcements and booked.announcements[0].startswith("pos=1,wait="), booked.announcements

        # The callback holds the caller's place: first in line, ahead of the patient caller.
        # (The patient caller may be out of line for a moment, hearing its own announcement.)
        for _ in range(60):
            entries = await calls.queue_entries("hotline-general")
            hold = [e for e in entries.values() if "@hotline-callback-hold-" in str(e.get("Channel"))]
            if hold and patient in entries:
                break
            await asyncio.sleep(0.25)
        assert len(hold) == 1 and hold[0]["Position"] == "1", entries
        assert entries[patient]["Position"] == "2"
        assert legs.to(number) == []  # no agent free yet: the customer is not dialled

        # The same number asking again gets the pending callback, not a second one.
        again = await calls.dial(number=number, keys="1", wait=4, hold=30)
        again_record = await calls.outcome(again)
        assert again_record.disposition is Disposition.CALLBACK_BOOKED
        assert again_record.callback == {"id": callback_id, "result": "booked"}

        done = await _callback(hotline, callback_id, CallbackStatus.CONNECTED)
        busy_record = await calls.outcome(busy)
        patient_record = await calls.outcome(patient)
        [leg] = await _callback_leg(hotline, callback_id)
    finally:
        with contextlib.suppress(AmiError):
            await hotline.ami.queue_remove("hotline-general", agent)
    assert busy_record.answered_at is not None and busy_record.talk_seconds is not None
    agent_free_at = busy_record.answered_at + busy_record.talk_seconds
    dialled = legs.to(number)
    assert len(dialled) == 1, legs.placed  # once
    assert dialled[0] >= agent_free_at - 0.5  # only when the agent was free
    assert done.attempts == 1 and done.results == ["ANSWER"] and done.agent == "agent-cb"
    assert leg.disposition is Disposition.ANSWERED and leg.callback is not None
    assert leg.callback["of"] == caller and leg.agent == "agent-cb"
    assert leg.talk_seconds is not None and 2 <= leg.talk_seconds <= 5  # the test customer talks 3 s
    # The leg's wait runs from the caller's first queueing to the dial: the busy agent's call and more.
    assert leg.wait_seconds is not None and leg.queued_at is not None
    assert leg.wait_seconds >= agent_free_at - leg.queued_at - 1
    # The patient caller behind was answered after the callback.
    assert patient_record.answered_at is not None and patient_record.answered_at > dialled[0]
    assert patient_record.agent == "agent-cb"
    assert await hotline.redis.get(NUMBER_KEY.format(number=number)) is None  # the number is free again
    url = f"http://{hotline.settings.web_host}:{hotline.settings.web_port}/api/callbacks"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        listed = {c["id"]: c for c in await response.json()}
    assert listed[callback_id]["status"] == "connected" and listed[callback_id]["number"] != number  # masked


async def test_an_unanswered_callback_is_retried_then_given_up(
    hotline: Hotline, calls: Calls, waiting_rules: None
) -> None:
    assert hotline.ami is not None and hotline.redis is not None
    legs = CustomerLegs()
    hotline.ami.on("Newchannel", legs)
    agent = "Local/talk8@hotline-test-agent/n"
    number = "13900007770"  # ends in 0: the test customer never answers
    await hotline.redis.delete(NUMBER_KEY.format(number=number))
    await hotline.ami.queue_add("hotline-general", agent, member_name="agent-retry")
    try:
        busy = await calls.dial(wait=0.5, hold=20)  # keeps the agent 8 s, so the caller waits
        await asyncio.sleep(2)
        caller = await calls.dial(number=number, keys="1", wait=4, hold=20)
        booked = await calls.outcome(caller)
        assert booked.disposition is Disposition.CALLBACK_BOOKED and booked.callback is not None
        failed = await _callback(hotline, booked.callback["id"], CallbackStatus.FAILED, timeout=90)
        await calls.outcome(busy)
    finally:
        with contextlib.suppress(AmiError):
            await hotline.ami.queue_remove("hotline-general", agent)
    # 1 attempt + 1 retry (rules: retries 1), each rang the customer and found nobody.
    assert failed.attempts == 2 and failed.results == ["NOANSWER", "NOANSWER"], failed
    assert len(legs.to(number)) == 2
    assert await hotline.redis.get(NUMBER_KEY.format(number=number)) is None


async def test_position_and_wait_are_said_in_the_callers_language(
    hotline: Hotline, calls: Calls, waiting_rules: None
) -> None:
    """Mandarin numbers come from the prompt build's digits (Asterisk ships English ones only)."""
    assert hotline.pbx is not None
    uniqueid = await calls.dial(wait=0.5, hold=9)  # no agent: waits, hears the announcement, hangs up
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.ABANDONED_QUEUE
    assert record.announcements and record.announcements[0].startswith("pos=")
    assert "wait=" not in record.announcements[0]  # nobody to answer: no estimate is made up
    assert record.abandon_point is not None and record.abandon_point["stage"] == "queue"
    assert record.abandon_point["position"] == 1 and record.abandon_point["queue"] == "hotline-general"
    root = subprocess.run([str(PBX), "root"], capture_output=True, text=True, check=True).stdout.strip()
    console = Path(root + hotline.pbx.instance_dir()) / "log" / "console.log"
    log = console.read_text(errors="replace")
    # SAY NUMBER played the synthesized Mandarin digit, not Asterisk's English one.
    assert re.search(r"Playing 'digits/1\.\w+' \(language 'zh'\)", log), log[-3000:]
    assert "does not exist" not in log


async def test_a_callback_that_cannot_be_had_puts_the_caller_back_untimed(
    hotline: Hotline, calls: Calls, fixtures_dir: Path
) -> None:
    """No announcements, and a number that may not be called back: pressing 1 gets an apology and
    the caller waits on in the same queue, neither overflowed nor hung up on."""
    sample_menu, sample_rules = hotline.menu, hotline.rules
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue-waiting.yaml")
    quiet = (fixtures_dir / "routing-callbacks.yaml").read_text().replace("announce_after: 2", "announce_after: 0")
    hotline.rules = parse_rules_text(quiet)
    try:
        uniqueid = await calls.dial(number="12", keys="1", wait=3, hold=40)  # "12": not a number to call
        record = await calls.outcome(uniqueid, timeout=90)
    finally:
        hotline.menu, hotline.rules = sample_menu, sample_rules
    assert record.disposition is Disposition.ABANDONED_QUEUE, record
    assert record.queues == ["hotline-general"] and record.callback is None
    assert record.wait_seconds is not None and record.wait_seconds > 35  # waited until the caller hung up
