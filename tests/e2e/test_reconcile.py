"""Outcomes reconciled from AMI events when a call's hangup handler never reaches a controller."""

import contextlib

import pytest

from ivr.app import Hotline
from ivr.menu.loader import load_menu
from ivr.outcomes import Disposition
from routing.ami import AmiError
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


async def test_a_call_whose_finish_never_came_still_gets_one_record(
    hotline: Hotline, calls: Calls, fixtures_dir
) -> None:
    assert hotline.agi is not None and hotline.ami is not None and hotline.watchdog is not None
    sample_menu = hotline.menu
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue.yaml")
    agent = "Local/talk2@hotline-test-agent/n"
    hotline.watchdog.grace_seconds = 2.0
    await hotline.ami.queue_add("hotline-general", agent, member_name="agent-reconcile")
    hotline.agi.refuse("finish")  # the hangup handler's AGI fails, as with no controller listening
    # The dialplan journals such a call too (test_controller_faults.py covers that path): looking
    # elsewhere for a while leaves this call to the watchdog. Its line is taken later, and adds nothing.
    assert hotline.unfinished is not None
    journal = hotline.unfinished.path
    hotline.unfinished.path = journal.with_name("not-now.csv")
    try:
        answered = await calls.dial(wait=0.5, hold=20)
        record = await calls.outcome(answered, timeout=60)
    finally:
        hotline.agi.accept("finish")
        hotline.unfinished.path = journal
        hotline.watchdog.grace_seconds = 15.0
        hotline.menu = sample_menu
        with contextlib.suppress(AmiError):
            await hotline.ami.queue_remove("hotline-general", agent)
    assert record.source == "ami"
    assert record.disposition is Disposition.ANSWERED and record.agent == "agent-reconcile"
    assert record.queue == "hotline-general" and record.wait_seconds is not None and record.wait_seconds < 5
    assert record.customer_class == "public" and record.menu_path == ["agent"]  # the IVR's part, from Redis
    # A normal call afterwards is written by its hangup handler, once.
    normal = await calls.dial(wait=0.5, hold=3)
    assert (await calls.outcome(normal)).source == "finish"
