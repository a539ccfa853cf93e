"""Routing rules at work in real calls: agents applied over AMI, overflow by time and by absence."""

import contextlib
import os
import subprocess
import sys

import pytest

from ivr.app import Hotline
from ivr.menu.loader import load_menu
from ivr.outcomes import Disposition
from routing.ami import AmiError
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


async def test_overflow_steps_are_taken_in_turn(hotline: Hotline, calls: Calls, fixtures_dir) -> None:
    sample_menu, sample_rules = hotline.menu, hotline.rules
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue.yaml")
    hotline.rules = load_rules(fixtures_dir / "routing-two-step-overflow.yaml")
    try:
        uniqueid = await calls.dial(wait=0.5, hold=10)
        await calls.wait_in_queue("hotline-billing", uniqueid, timeout=15)
        await calls.wait_in_queue("hotline-fallback", uniqueid, timeout=15)
    finally:
        hotline.menu, hotline.rules = sample_menu, sample_rules
    record = await calls.outcome(uniqueid)
    assert record.queues == ["hotline-general", "hotline-billing", "hotline-fallback"], record
    assert (record.overflow, record.queue) == ("TIMEOUT", "hotline-fallback")
    assert record.wait_seconds is not None and record.wait_seconds > 8  # counted from the first queue


async def test_closed_switch_plays_the_closed_branch(hotline: Hotline, calls: Calls) -> None:
    env = {**os.environ, "HOTLINE_REDIS_PORT": str(hotline.settings.redis_port)}

    def switch(value: str) -> str:
        result = subprocess.run([sys.executable, "-m", "ivr.cli", "switch", "closed", value], env=env,
                                capture_output=True, text=True, timeout=30, check=True)
        return result.stdout

    assert "closed: on" in switch("on")  # the operator's emergency switch, no restart
    try:
        uniqueid = await calls.dial(keys="10", gap=1.5)  # Mandarin, then "agent"
        record = await calls.outcome(uniqueid)
    finally:
        assert "closed: off" in switch("rules")
    assert record.menu_path[-2:] == ["agent", "closed"]
    assert record.disposition is Disposition.SELF_SERVED and record.queue is None


async def test_survey_score_after_the_agent_hangs_up_lands_in_the_outcome(hotline: Hotline, calls: Calls,
                                                                          fixtures_dir) -> None:
    assert hotline.ami is not None
    sample = hotline.menu
    hotline.menu = load_menu(fixtures_dir / "menus" / "one-queue-survey.yaml")
    agent = "Local/talk2@hotline-test-agent/n"
    try:
        # The caller keeps pressing 4: ignored in the queue and the conversation, taken by the survey.
        uniqueid = await calls.dial(keys="4" * 16, wait=0.5, gap=1.5)
        await calls.wait_in_queue("hotline-general", uniqueid)
        await hotline.ami.queue_add("hotline-general", agent, member_name="agent-survey")
        record = await calls.outcome(uniqueid)
    finally:
        hotline.menu = sample
        with contextlib.suppress(AmiError):
            await hotline.ami.queue_remove("hotline-general", agent)
    assert record.disposition is Disposition.ANSWERED and record.agent == "agent-survey"
    assert record.survey_score == 4
