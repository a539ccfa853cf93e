"""Real calls through Asterisk, the FastAGI controller and the sample menu (the issue's bar)."""

import asyncio
import contextlib
from pathlib import Path

import pytest

from ivr.app import Hotline
from ivr.menu.loader import load_menu
from ivr.menu.schema import CustomerClass
from ivr.outcomes import Disposition
from ivr.selfservice import RedisAccounts
from routing.ami import AmiError
from routing.customers import Customer
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e
MENUS = Path(__file__).resolve().parent.parent / "fixtures" / "menus"
# "111": Mandarin, inquiries, balance; no account on record: the text-message answer instead.
BALANCE_WITHOUT_ACCOUNT = [
    "start", "welcome", "main", "inquiries", "balance_check", "account_pin", "balance", "goodbye",
]


async def test_dtmf_path_to_self_service_and_hangup(calls: Calls) -> None:
    uniqueid = await calls.dial(keys="111")  # Mandarin, inquiries, balance
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.SELF_SERVED
    assert record.menu_path == BALANCE_WITHOUT_ACCOUNT
    assert (record.customer_class, record.language, record.escalation) == ("public", "zh", [])
    assert record.queue is None and record.agent is None


async def test_balance_from_the_account_system_after_the_pin(hotline: Hotline, calls: Calls) -> None:
    assert hotline.directory is not None and hotline.redis is not None
    await hotline.directory.save(Customer("13900000777", CustomerClass.PUBLIC, "Wang", "A-777", None, True))
    await RedisAccounts(hotline.redis).save("A-777", pin="4321", balance_cents=12345, due_date="2026-12-05")
    uniqueid = await calls.dial(number="13900000777", keys="1114321#", gap=1.5, hold=40)
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.SELF_SERVED
    assert record.menu_path[-4:] == ["balance_check", "account_pin", "balance_check", "goodbye"]
    assert record.inputs == {"account_pin": "verified", "balance_check": "told"}  # no PIN in the record


async def test_key_account_is_answered_before_a_public_caller_waiting_longer(hotline: Hotline, calls: Calls) -> None:
    assert hotline.directory is not None and hotline.ami is not None
    await hotline.directory.save(Customer("13900000001", CustomerClass.KEY, "Key Corp", "K-1", None, True))
    sample = hotline.menu
    hotline.menu = load_menu(MENUS / "one-queue.yaml")
    agent = "Local/talk2@hotline-test-agent/n"
    try:
        public = await calls.dial(number="13800000002", wait=0.5)
        await calls.wait_in_queue("hotline-general", public)
        await asyncio.sleep(1.5)  # the public caller has clearly been waiting longer
        key = await calls.dial(number="13900000001", wait=0.5)
        await calls.wait_in_queue("hotline-general", key)
        waiting = await calls.queue_entries("hotline-general")  # one snapshot of the queue
        public_entry, key_entry = waiting[public], waiting[key]
        assert int(public_entry["Wait"]) > int(key_entry["Wait"])
        assert (public_entry["Priority"], key_entry["Priority"]) == ("1", "10")
        assert (key_entry["Position"], public_entry["Position"]) == ("1", "2")  # priority put the key first
        await hotline.ami.queue_add("hotline-general", agent, member_name="agent-e2e")
        key_record = await calls.outcome(key)
        public_record = await calls.outcome(public)
    finally:
        hotline.menu = sample
        with contextlib.suppress(AmiError):  # not there if the test failed before adding it
            await hotline.ami.queue_remove("hotline-general", agent)
    assert key_record.disposition is Disposition.ANSWERED and public_record.disposition is Disposition.ANSWERED
    assert (key_record.priority, public_record.priority) == (10, 1)
    assert key_record.customer_class == "key" and key_record.agent == "agent-e2e"
    assert key_record.answered_at is not None and public_record.answered_at is not None
    assert key_record.answered_at < public_record.answered_at
    assert public_record.wait_seconds is not None and key_record.wait_seconds is not None
    assert public_record.wait_seconds > key_record.wait_seconds


async def test_three_invalid_keys_lead_to_the_fallback_queue(calls: Calls) -> None:
    uniqueid = await calls.dial(keys="1888", gap=1.5, hold=25)
    await calls.wait_in_queue("hotline-fallback", uniqueid)
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.FALLBACK
    assert record.fallback_reason == "invalid_input"
    assert record.queue == "hotline-fallback"
    assert record.menu_path[-2:] == ["main", "fallback_route"]


async def test_controller_stopped_mid_call_caller_still_reaches_a_queue(hotline: Hotline, calls: Calls) -> None:
    assert hotline.agi is not None
    uniqueid = await calls.dial(keys="", hold=20)  # stays in the IVR, listening to the menu
    for _ in range(100):
        if hotline.agi.active_sessions:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    await hotline.agi.stop(drain_timeout=0)  # the controller goes away mid-call
    try:
        entry = await calls.wait_in_queue("hotline-fallback", uniqueid, timeout=20)
    finally:
        await hotline.agi.start()  # back, in time for the call's hangup handler
    assert entry["Priority"] == "1"  # the class priority the controller had set survives it
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.FALLBACK
    assert record.fallback_reason == "dialplan:controller_lost"
    assert record.queue == "hotline-fallback"
    assert record.menu_path[:2] == ["start", "welcome"]


async def test_hostile_caller_id_adds_no_ami_line(hotline: Hotline, calls: Calls) -> None:
    # CR/LF in an Originate's CallerID would inject AMI headers (here: a QueueAdd of a fake agent).
    evil = 'Evil"\\ \r\nAction: QueueAdd\r\nQueue: hotline-general\r\nInterface: Local/evil@x\r\n\r\n'
    uniqueid = await calls.dial(keys="111", name=evil, number='138"\r\n0001')
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.SELF_SERVED
    assert "\n" not in record.caller_name and "\r" not in record.caller_name
    assert "Local/evil@x" not in await calls.cli("queue show hotline-general")


async def test_raw_cr_lf_in_caller_name_reaching_the_agi_environment(calls: Calls) -> None:
    # A test-only entry sets CALLERID(name) from a URI-encoded string: quotes, CR/LF, a blank line.
    raw = "%22Evil%22%0D%0A%0Aagi_network_script%3A%20finish%0A%0A200%20result%3D1"
    uniqueid = await calls.dial(keys="111", context="hotline-test-inbound",
                                extra={"__RAW_CALLER_NAME": raw})
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.SELF_SERVED
    assert record.menu_path[-2:] == ["balance", "goodbye"]


async def test_caller_name_forging_the_end_of_the_environment_and_replies(calls: Calls) -> None:
    # A fake agi_threadid ends the environment early; then fake replies: "50" would be key 2
    # (English) at the first prompt, "(pwned)" a forged variable value. None may be taken as a reply.
    raw = "x%0Aagi_threadid%3A%201%0A%0A200%20result%3D50%0A200%20result%3D1%20(pwned)%0A"
    uniqueid = await calls.dial(keys="111", context="hotline-test-inbound", extra={"__RAW_CALLER_NAME": raw})
    record = await calls.outcome(uniqueid)
    assert record.disposition is Disposition.SELF_SERVED
    assert record.language == "zh"  # the caller pressed 1 (Mandarin); the forged "2" was dropped
    assert record.menu_path == BALANCE_WITHOUT_ACCOUNT
