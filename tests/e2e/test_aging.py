"""Anti-starvation with real queue callers: aging re-prioritises a public caller already waiting."""

import asyncio
import contextlib

import pytest

from ivr.app import Hotline
from ivr.menu.loader import load_menu
from ivr.menu.schema import CustomerClass
from routing.ami import AmiError
from routing.customers import Customer
from routing.rules import load_rules
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


async def test_a_patient_public_caller_overtakes_a_fresh_key_account(hotline: Hotline, calls: Calls,
                                                                       fixtures_dir) -> None:
    assert hotline.directory is not None and hotline.ami is not None
    await hotline.directory.save(Customer("13900000002", CustomerClass.KEY, "Key Corp", "K-2", None, True))
    sample_menu, sample_rules = hotline.menu, hotline.rules
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue.yaml")
    hotline.rules = load_rules(fixtures_dir / "routing-fast-aging.yaml")  # public target: 2 s
    agent = "Local/talk2@hotline-test-agent/n"
    try:
        public = await calls.dial(wait=0.5)
        await calls.wait_in_queue("hotline-general", public)
        for _ in range(60):  # aging raises the waiting caller's priority over the key class's 10
            entry = (await calls.queue_entries("hotline-general"))[public]
            if int(entry["Priority"]) > 11:
                break
            await asyncio.sleep(0.5)
        assert int(entry["Priority"]) > 11, entry
        key = await calls.dial(number="13900000002", wait=0.5)
        await calls.wait_in_queue("hotline-general", key)
        waiting = await calls.queue_entries("hotline-general")
        assert waiting[key]["Priority"] == "10"
        assert (waiting[public]["Position"], waiting[key]["Position"]) == ("1", "2")
        await hotline.ami.queue_add("hotline-general", agent, member_name="agent-aging")
        public_record = await calls.outcome(public)
        key_record = await calls.outcome(key)
    finally:
        hotline.menu, hotline.rules = sample_menu, sample_rules
        with contextlib.suppress(AmiError):
            await hotline.ami.queue_remove("hotline-general", agent)
    assert public_record.answered_at is not None and key_record.answered_at is not None
    assert public_record.answered_at < key_record.answered_at
    assert (public_record.priority, key_record.priority) == (1, 10)  # the base, as routed


async def test_key_account_answered_first_after_a_public_caller_waited_60s(hotline: Hotline, calls: Calls,
                                                                           fixtures_dir) -> None:
    """The issue's case with the sample rules: no agent free for 60 s, then a key account calls."""
    assert hotline.directory is not None and hotline.ami is not None
    await hotline.directory.save(Customer("13900000003", CustomerClass.KEY, "Key Corp", "K-3", None, True))
    sample_menu = hotline.menu
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue.yaml")
    agent = "Local/talk2@hotline-test-agent/n"
    try:
        public = await calls.dial(wait=0.5, hold=120)
        await calls.wait_in_queue("hotline-general", public)
        await asyncio.sleep(58)  # about 60 s by the time the key account is queued
        key = await calls.dial(number="13900000003", wait=0.5, hold=120)
        await calls.wait_in_queue("hotline-general", key)
        waiting = await calls.queue_entries("hotline-general")
        # Aging raised the public caller (1 + 4 points per 30 s waited: 8 or 9), still below a key account.
        assert int(waiting[public]["Priority"]) in (8, 9) and waiting[key]["Priority"] == "10"
        assert (waiting[key]["Position"], waiting[public]["Position"]) == ("1", "2")
        await hotline.ami.queue_add("hotline-general", agent, member_name="agent-60s")
        key_record = await calls.outcome(key)
        public_record = await calls.outcome(public)
    finally:
        hotline.menu = sample_menu
        with contextlib.suppress(AmiError):
            await hotline.ami.queue_remove("hotline-general", agent)
    assert key_record.answered_at is not None and public_record.answered_at is not None
    assert key_record.answered_at < public_record.answered_at  # the key account first ...
    assert public_record.answered_at - key_record.answered_at < 10  # ... and the public caller right after
