"""Routing rules at work in real calls: agents applied over AMI, overflow by time and by absence."""

import pytest

from ivr.app import Hotline
from ivr.outcomes import Disposition
from routing.rules import load_rules
from tests.e2e.conftest import Calls

pytestmark = pytest.mark.e2e


async def test_agents_join_their_skills_queues_at_their_level(calls: Calls) -> None:
    billing = await calls.cli("queue show hotline-billing")
    broadband = await calls.cli("queue show hotline-broadband")
    assert "agent1001 (PJSIP/agent1001" in billing
    assert "agent1003 (PJSIP/agent1003" in broadband and "agent1002 (PJSIP/agent1002" in broadband
    # level 2 -> penalty 1 (`queue show` prints a penalty only when it is not 0)
    assert "with penalty 1" in broadband.split("agent1002 (PJSIP/agent1002")[1].split("\n")[0]


async def test_no_logged_in_agent_overflows_at_once(calls: Calls) -> None:
    # The fault line: broadband's agents' phones are not registered, so "no_agents" overflow applies.
    uniqueid = await calls.dial(keys="131" + "12345678#", gap=1.5, hold=8)
    await calls.wait_in_queue("hotline-general", uniqueid)
    record = await calls.outcome(uniqueid)
    assert record.skill == "broadband" and record.overflow == "JOINEMPTY"
    assert record.queue == "hotline-general" and record.disposition is Disposition.ABANDONED_QUEUE


async def test_overflow_after_the_configured_wait(hotline: Hotline, calls: Calls, fixtures_dir) -> None:
    sample = hotline.rules
    hotline.rules = load_rules(fixtures_dir / "routing-fast-overflow.yaml")
    try:
        uniqueid = await calls.dial(keys="121", gap=1.5, hold=12)  # service change -> billing
        await calls.wait_in_queue("hotline-billing", uniqueid)
        await calls.wait_in_queue("hotline-general", uniqueid, timeout=15)
    finally:
        hotline.rules = sample
    record = await calls.outcome(uniqueid)
    assert (record.skill, record.overflow, record.queue) == ("billing", "TIMEOUT", "hotline-general")
