"""Wait estimates from the live state, penalty widening on a rejoin, and the waiting/callback YAML."""

import pytest

from ivr.menu.loader import parse_menu_text
from ivr.yamldoc import ConfigError
from routing.render import render_queue_rules, render_queues, widening_state
from routing.rules import parse_rules_text
from routing.waiting import AgentOutlook, HandleTimes, estimate_wait

RULES = parse_rules_text("""\
name: w
skills:
  general: {queue: q-general, callback: true}
  fallback: {queue: q-fallback}
fallback_skill: fallback
penalty_widening: [{after: 30, max_penalty: 1}, {after: 60, max_penalty: 2}]
""")


def test_the_wait_plays_the_queue_forward_over_the_agents() -> None:
    free, busy = AgentOutlook("available"), AgentOutlook("on_call", busy_for=100)
    assert estimate_wait(0, [free], 120) == 0  # an agent is free: no wait
    assert estimate_wait(0, [busy], 120) == 20  # the busy agent is expected to finish in 20 s
    assert estimate_wait(2, [busy], 120) == 260  # two callers ahead each take an average call
    assert estimate_wait(3, [busy, free], 120) == 140  # two agents share the callers ahead
    # An agent past the average is not expected to finish "never" nor "now".
    assert estimate_wait(0, [AgentOutlook("on_call", busy_for=500)], 120) == 12
    assert estimate_wait(0, [AgentOutlook("wrapup", busy_for=5)], 120, wrapup_seconds=15) == 10
    # Nobody who could answer: no estimate rather than a made-up one.
    assert estimate_wait(0, [AgentOutlook("paused"), AgentOutlook("logged_out")], 120) is None
    assert estimate_wait(0, [], 120) is None


def test_handle_times_start_from_the_rules_and_follow_completed_calls() -> None:
    times = HandleTimes(180)
    assert times.of("q") == 180
    times.add("q", 100)
    times.add("q", 200)
    assert times.of("q") == pytest.approx(120) and times.of("other") == 180


def test_a_rejoining_caller_keeps_the_widening_it_reached() -> None:
    assert widening_state(RULES, 10) == (0, "hotline-widening")
    assert widening_state(RULES, 45) == (1, "hotline-widening-after-1")
    assert widening_state(RULES, 90) == (2, "hotline-widening-after-2")
    rendered = render_queue_rules(RULES)
    # After the first step, the rest is timed from it; after the last, nothing lowers it again.
    assert "[hotline-widening-after-1]\npenaltychange => 30,2\n[hotline-widening-after-2]\n" in rendered


def test_callback_skills_let_a_key_leave_the_queue() -> None:
    queues = render_queues(RULES)
    general, fallback = queues.split("[q-fallback]")
    assert "context = hotline-queue-keys" in general and "context" not in fallback


def test_callback_dial_needs_one_number_placeholder() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules_text(RULES_TEXT_WITH_DIAL.format(dial="PJSIP/operator"), "r.yaml")
    assert "r.yaml:6:" in str(caught.value) and "{number}" in str(caught.value)
    ok = parse_rules_text(RULES_TEXT_WITH_DIAL.format(dial="PJSIP/{number}@trunk"), "r.yaml")
    assert ok.callbacks.dial == "PJSIP/{number}@trunk"


RULES_TEXT_WITH_DIAL = """\
name: w
skills:
  general: {{queue: q-general}}
fallback_skill: general
callbacks:
  dial: "{dial}"
"""

MENU = """\
name: m
languages: [zh]
default_language: zh
start: agent
waiting:
  position: [before, "{position}"]
  wait_minutes: [before, "{minutes}", "{position}"]
  callback_offer: nowhere
prompts:
  before: {zh: 您前面}
nodes:
  agent: {type: route, skill: general}
"""


def test_waiting_announcements_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(MENU, "m.yaml")
    text = str(caught.value)
    assert "exactly one number" in text  # wait_minutes says two numbers
    fixed = MENU.replace(', "{position}"]\n  callback', "]\n  callback")
    with pytest.raises(ConfigError) as caught:
        parse_menu_text(fixed, "m.yaml")
    assert "unknown prompt 'nowhere'" in str(caught.value) and "m.yaml:" in str(caught.value)


def test_service_level_is_measured_per_class_with_callbacks_counted_once() -> None:
    from ivr.outcomes import Disposition, OutcomeRecord
    from routing.servicelevel import service_levels

    def record(cls: str, disposition: Disposition, wait: float, **kw: object) -> OutcomeRecord:
        return OutcomeRecord(uniqueid="u", disposition=disposition, caller="1", customer_class=cls,
                             wait_seconds=wait, ended_at=1000.0, agent=kw.pop("agent", "a1"), **kw)  # type: ignore[arg-type]

    rules = parse_rules_text(RULES_TEXT_WITH_DIAL.format(dial="PJSIP/{number}@t"))  # defaults: key 15 s, public 30 s
    levels = service_levels([
        record("key", Disposition.ANSWERED, 10),
        record("key", Disposition.ANSWERED, 20),  # late for a key account
        record("public", Disposition.ANSWERED, 25),
        record("public", Disposition.ABANDONED_QUEUE, 40, agent=None),
        record("public", Disposition.ABANDONED_QUEUE, 2, agent=None),  # hung up at once: not offered
        record("public", Disposition.CALLBACK_BOOKED, 20, agent=None),  # counted on its leg
        record("public", Disposition.FAILED, 90, kind="callback", callback={"status": "retry"}),
        record("public", Disposition.ANSWERED, 28, kind="callback", callback={"status": "connected"}),
        record("business", Disposition.SELF_SERVED, 0, agent=None),
    ], rules, since=0)
    assert (levels["key"].offered, levels["key"].percent, levels["key"].met) == (2, 50.0, False)
    assert (levels["public"].offered, levels["public"].answered_in_time) == (3, 2)
    assert levels["business"].percent is None
