"""Routing rules (validation with positions) and routing decisions (priority, escalation, overflow)."""

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from ivr.config import SAMPLE_MENU, SAMPLE_ROUTING
from ivr.menu.loader import load_menu
from ivr.menu.schema import CustomerClass
from ivr.yamldoc import ConfigError
from routing.customers import Customer
from routing.router import Escalation, Router, Switches, set_switch
from routing.rules import load_rules, parse_rules_text

RULES = load_rules(SAMPLE_ROUTING)

BASE = """\
name: r
skills:
  general: {queue: q-general}
  billing: {queue: q-billing, overflow: [{after: 60, to: general}]}
  fallback: {queue: q-fallback}
fallback_skill: fallback
agents:
  - {name: a1, interface: PJSIP/a1, skills: {general: 1, billing: 2}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_rules_text(text, "r.yaml")
    return [str(p) for p in caught.value.problems]


def test_sample_rules_and_sample_menu_agree() -> None:
    menu = load_menu(SAMPLE_MENU, skills=RULES.skills)
    assert {"general", "keyaccount", "fallback"} <= set(RULES.skills)
    assert menu.name == "hotline-10000"


def test_defaults_give_every_class_its_priority_and_target() -> None:
    rules = parse_rules_text(BASE)
    assert rules.class_rule(CustomerClass.KEY).priority > rules.class_rule(CustomerClass.PUBLIC).priority
    assert rules.class_rule(CustomerClass.PUBLIC).service_level.seconds == 30


def test_unknown_skills_in_overflow_agents_and_fallback() -> None:
    found = problems(BASE.replace("to: general", "to: sales").replace("billing: 2}", "billing: 2, tv: 1}")
                     .replace("fallback_skill: fallback", "fallback_skill: nope"))
    assert found == ["r.yaml:6:17: unknown skill 'nope'", "r.yaml:4:58: unknown skill 'sales'",
                     "r.yaml:8:74: unknown skill 'tv'"]


def test_overflow_needs_exactly_one_trigger_and_not_itself() -> None:
    found = problems(BASE.replace("{after: 60, to: general}", "{after: 60, when: no_agents, to: billing}"))
    assert any("exactly one of after" in p for p in found), found
    found = problems(BASE.replace("{after: 60, to: general}", "{after: 60, to: billing}"))
    assert any("cannot overflow to itself" in p for p in found), found


def test_overflow_into_a_queue_that_turns_callers_away_is_refused() -> None:
    found = problems(BASE.replace("general: {queue: q-general}",
                                  "general: {queue: q-general, overflow: [{when: no_agents, to: fallback}]}"))
    assert any("turns callers away when no agent is logged in" in p for p in found), found


def test_shared_queue_and_bad_levels_are_refused() -> None:
    found = problems(BASE.replace("q-billing", "q-general"))
    assert any("is also skill 'general'" in p for p in found), found
    found = problems(BASE.replace("billing: 2}", "billing: 12}"))
    assert any("must be 1..9" in p for p in found), found


def test_hours_with_holidays_and_the_closed_switch() -> None:
    rules = parse_rules_text(BASE + "hours: {timezone: Asia/Shanghai, weekly: {mon: ['09:00-18:00']}, "
                             "holidays: [2026-10-05]}\n")
    assert rules.hours.is_open(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # Monday 10:00 in Shanghai
    assert not rules.hours.is_open(datetime(2026, 11, 23, 11, 0, tzinfo=UTC))  # 19:00
    assert not rules.hours.is_open(datetime(2026, 10, 5, 2, 0, tzinfo=UTC))  # a holiday


async def test_decisions_priorities_and_overflow(redis: Redis) -> None:
    router = Router(lambda: RULES, redis)
    nobody = Escalation()
    assert router.decide("general", CustomerClass.PUBLIC, nobody).max_penalty == 0  # widening starts at level 1
    key = router.decide("keyaccount", CustomerClass.KEY, nobody)
    assert (key.queue, key.priority, key.overflow_queue, key.overflow_after) == (
        "hotline-keyaccount", 10, "hotline-general", 30)
    broadband = router.decide("broadband", CustomerClass.PUBLIC, nobody)
    assert (broadband.priority, broadband.overflow_queue, broadband.overflow_after) == (1, "hotline-general", None)
    assert router.decide("no-such-skill", CustomerClass.PUBLIC, nobody).queue == "hotline-fallback"


async def test_repeat_callers_and_urgent_cases_are_escalated(redis: Redis) -> None:
    clock = [1_000_000.0]
    router = Router(lambda: RULES, redis, clock=lambda: clock[0])
    caller = Customer("13800000001")

    async def call(uniqueid: str):
        return router.escalation(caller, await router.record_call(caller.number, uniqueid))

    assert (await call("c1")).boost == 0
    assert (await call("c2")).boost == 0
    third = await call("c3")
    assert third == Escalation(2, ("repeat_caller:3",))
    assert router.priority(CustomerClass.PUBLIC, third) == 3
    clock[0] += 25 * 3600  # a day later the window is empty again
    assert (await call("c4")).boost == 0
    urgent = router.escalation(Customer("13800000002", urgent=True), await router.record_call("13800000002", "c5"))
    assert urgent == Escalation(5, ("urgent",))


def test_rendered_queues_follow_the_rules(tmp_path) -> None:
    from routing.render import render_queue_rules, render_queues, write_asterisk_config

    queues = render_queues(RULES)
    for skill in RULES.skills.values():
        assert f"[{skill.queue}]" in queues
    broadband = queues.split("[hotline-broadband]")[1].split("\n\n")[0]
    assert "joinempty = unavailable,invalid,unknown" in broadband  # its overflow is `when: no_agents`
    general = queues.split("[hotline-general]")[1].split("\n\n")[0]
    assert "joinempty = yes" in general and "defaultrule = hotline-widening" in general
    assert "penaltychange => 30,1\npenaltychange => 60,2" in render_queue_rules(RULES)
    assert [p.name for p in write_asterisk_config(RULES, tmp_path)] == ["queues.conf", "queuerules.conf"]


def test_aging_lets_patience_outrank_class_but_not_at_once() -> None:
    from routing.aging import aged_priority

    public, key = RULES.class_rule(CustomerClass.PUBLIC), RULES.class_rule(CustomerClass.KEY)
    points = RULES.aging.points_per_target
    fresh_key = aged_priority(key.priority, 0, key.service_level.seconds, points)
    assert aged_priority(public.priority, 60, public.service_level.seconds, points) < fresh_key  # key first at 60 s
    assert aged_priority(public.priority, 80, public.service_level.seconds, points) > fresh_key  # not starved
    assert aged_priority(key.priority, 80, key.service_level.seconds, points) > aged_priority(
        public.priority, 80, public.service_level.seconds, points)  # equal patience: key first


def test_waiting_callers_carry_class_and_base_priority_from_channel_variables() -> None:
    from panoramisk.message import Message

    from routing.live import LiveQueues

    event = Message({"Event": "QueueCallerJoin", "Queue": "q", "Channel": "Local/s@x-1;1", "Uniqueid": "u1",
                     "ChanVariable": ["HOTLINE_CLASS=key", "HOTLINE_PRIORITY=12"]})
    live = LiveQueues.__new__(LiveQueues)
    live._clock = lambda: 100.0
    caller = live._caller(event, wait=5)
    assert (caller.customer_class, caller.base_priority, caller.joined_at) == (CustomerClass.KEY, 12, 95.0)


def test_rules_without_hours_are_always_open() -> None:
    rules = parse_rules_text(BASE)
    assert rules.hours.is_open(datetime(2026, 11, 22, 3, 0, tzinfo=UTC))
    assert parse_rules_text(BASE + "hours: {timezone: Asia/Shanghai}\n").hours.is_open(
        datetime(2026, 11, 22, 23, 59, tzinfo=UTC))


class _StatusOnlyAmi:
    """Just enough of AmiClient for LiveQueues: handlers registry and a scripted QueueStatus."""

    def __init__(self, replies: list) -> None:
        self.replies = replies
        self.ready = True
        self.connections = 1

    def on(self, event: str, handler: object) -> None:
        pass

    async def action(self, action: dict, **_: object) -> list:
        return self.replies


async def test_resync_keeps_what_the_join_said_and_does_not_age_twice(redis: Redis) -> None:
    from panoramisk.message import Message

    from routing.live import LiveQueues

    clock = [1000.0]
    join = Message({"Event": "QueueCallerJoin", "Queue": "q", "Channel": "c1", "Uniqueid": "u1",
                    "ChanVariable": ["HOTLINE_CLASS=key", "HOTLINE_PRIORITY=10"]})
    entries = [
        Message({"Event": "QueueEntry", "Queue": "q", "Channel": "c1", "Uniqueid": "u1", "Wait": "20",
                 "Priority": "15"}),
        Message({"Event": "QueueEntry", "Queue": "q", "Channel": "c2", "Uniqueid": "u2", "Wait": "60",
                 "Priority": "9"}),
        Message({"Event": "QueueMember", "Queue": "q", "Name": "a1", "StateInterface": "PJSIP/a1",
                 "Location": "PJSIP/a1", "Status": "1", "Paused": "1", "PausedReason": "lunch"}),
        Message({"Event": "QueueParams", "Queue": "q", "Calls": "2", "Completed": "7", "Abandoned": "1"}),
    ]
    live = LiveQueues(_StatusOnlyAmi(entries), redis, clock=lambda: clock[0])  # type: ignore[arg-type]
    await live._on_join(join)
    clock[0] += 20
    await live.resync()
    known, unknown = live.waiting["u1"], live.waiting["u2"]
    assert (known.customer_class, known.base_priority, known.priority, known.joined_at) == (
        CustomerClass.KEY, 10, 15, 1000.0)
    assert (unknown.base_priority, unknown.joined_at) == (9, 1020.0)  # aged from now on, not from 60 s ago
    agent = live.agents["q|PJSIP/a1"]
    assert (agent.state, agent.paused_reason) == ("paused", "lunch")
    assert (live.queues["q"].waiting, live.queues["q"].completed) == (2, 7)
    await live.flush_mirror()  # what the mirror task does every 0.1 s
    assert await redis.hlen("hotline:live:waiting") == 2


async def test_runtime_switches_override_the_rules_and_fall_back_to_them(redis: Redis) -> None:
    closed_rules = parse_rules_text(BASE + "hours: {closed: true}\n")
    router = Router(lambda: closed_rules, redis)
    assert await router.switches() == Switches(closed=True, outage=False)
    assert not router.is_open(await router.switches())
    await set_switch(redis, "closed", False)
    await set_switch(redis, "outage", True)
    switches = await router.switches()
    assert router.is_open(switches) and switches.outage
    assert not router.decide("general", CustomerClass.PUBLIC, Escalation(), switches).survey
    await set_switch(redis, "closed", None)
    assert (await router.switches()).closed  # cleared: the rules' value again
    down = Redis.from_url("redis://127.0.0.1:1/0")
    assert await Router(lambda: closed_rules, down).switches() == Switches(closed=True, outage=False)
    await down.aclose()


async def test_one_controller_ages_and_another_takes_over_when_it_stops(redis: Redis) -> None:
    from routing.aging import PriorityAger

    class NoAmi:
        def on(self, *_: object) -> None: ...

    first = PriorityAger(NoAmi(), None, lambda: RULES, redis=redis)  # type: ignore[arg-type]
    second = PriorityAger(NoAmi(), None, lambda: RULES, redis=redis)  # type: ignore[arg-type]
    assert await first._hold_lease(2.0) and not await second._hold_lease(2.0)
    assert await first._hold_lease(2.0)  # renewed by its holder
    await first.release()
    assert await second._hold_lease(2.0) and not await first._hold_lease(2.0)
    assert 0 < await redis.pttl("hotline:leader:aging") <= 6000  # expires if its holder dies


def test_overflow_steps_increase_and_no_agents_stands_alone() -> None:
    one = "overflow: [{after: 60, to: general}]"
    steps = BASE.replace(one, "overflow: [{after: 60, to: general}, {after: 30, to: fallback}]")
    assert any("increasing 'after'" in p for p in problems(steps))
    mixed = BASE.replace(one, "overflow: [{when: no_agents, to: general}, {after: 30, to: fallback}]")
    assert any("only overflow step" in p for p in problems(mixed))
    fine = parse_rules_text(BASE.replace("overflow: [{after: 60, to: general}]",
                                         "overflow: [{after: 30, to: general}, {after: 60, to: fallback}]"))
    decision = Router(lambda: fine, None).decide("billing", CustomerClass.PUBLIC, Escalation())  # type: ignore[arg-type]
    assert (decision.overflow_queue, decision.overflow_after, decision.more_overflow) == ("q-general", 30, True)
