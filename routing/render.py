"""Asterisk's queue configuration, rendered from the routing rules (the one source of truth).

Agents are not written here: they are data, applied at runtime over AMI (routing/agents.py), so
changing an agent's skills never means editing or reloading Asterisk files.
"""

from __future__ import annotations

from pathlib import Path

from ivr.menu.schema import CustomerClass
from routing.rules import RoutingRules, Skill

WIDENING_RULE = "hotline-widening"
QUEUE_KEYS_CONTEXT = "hotline-queue-keys"
# Device states that mean "no agent of this skill is logged in" (for `when: no_agents` overflow).
NOBODY_THERE = "unavailable,invalid,unknown"


def _queue_section(name: str, skill: Skill, rules: RoutingRules) -> list[str]:
    settings = rules.queue_settings
    no_agents_overflow = any(step.when == "no_agents" for step in skill.overflow)
    lines = [
        f"[{skill.queue}]",
        f"; skill {name}",
        f"strategy = {settings.strategy}",
        f"timeout = {settings.ring_seconds}",
        f"retry = {settings.retry_seconds}",
        f"wrapuptime = {settings.wrapup_seconds}",
        "ringinuse = no",
        # Asterisk's own SL counter uses one threshold per queue: the public's (most callers). Per-class
        # targets drive aging; per-class measurement is the controller's, from outcome records.
        f"servicelevel = {rules.class_rule(CustomerClass.PUBLIC).service_level.seconds}",
        # A stint's end (announcements) never cuts off an agent who is already being rung.
        "timeoutpriority = conf",
        "setinterfacevar = yes",
        "setqueueentryvar = yes",
        "setqueuevar = yes",
        # With a no_agents overflow, a caller neither joins nor stays while nobody can answer:
        # Queue() returns JOINEMPTY/LEAVEEMPTY and the dialplan moves the caller on.
        f"joinempty = {NOBODY_THERE if no_agents_overflow else 'yes'}",
        f"leavewhenempty = {NOBODY_THERE if no_agents_overflow else 'no'}",
        "autopause = no",
        "announce-frequency = 0",
        "periodic-announce-frequency = 0",
        "announce-holdtime = no",
        "announce-position = no",
    ]
    if rules.penalty_widening:
        lines.append(f"defaultrule = {WIDENING_RULE}")
    if skill.callback:
        # "1" while waiting leaves the queue for the callback offer (extensions.conf hotline-queue-keys).
        lines.append(f"context = {QUEUE_KEYS_CONTEXT}")
    return lines


def render_queues(rules: RoutingRules) -> str:
    out = [
        f"; Rendered from the routing rules {rules.name!r} by hotline. Do not edit: edit the rules.",
        "[general]",
        "persistentmembers = no",
        "autofill = yes",
        "shared_lastcall = yes",
        "",
    ]
    for name, skill in rules.skills.items():
        out.extend(_queue_section(name, skill, rules))
        out.append("")
    return "\n".join(out)


def render_queue_rules(rules: RoutingRules) -> str:
    out = [f"; Rendered from the routing rules {rules.name!r} by hotline. Do not edit: edit the rules."]
    steps = rules.penalty_widening
    if steps:
        out.append(f"[{WIDENING_RULE}]")
        out.extend(f"penaltychange => {step.after},{step.max_penalty}" for step in steps)
        # For a caller rejoining after announcements with the first ``done`` steps behind it: the
        # remaining steps, timed from the last one taken (a rule never lowers what it has reached).
        for done in range(1, len(steps) + 1):
            out.append(f"[{widening_rule_after(done)}]")
            out.extend(f"penaltychange => {s.after - steps[done - 1].after},{s.max_penalty}" for s in steps[done:])
    return "\n".join(out) + "\n"


def widening_rule_after(steps_done: int) -> str:
    return f"{WIDENING_RULE}-after-{steps_done}"


def widening_state(rules: RoutingRules, waited: float) -> tuple[int, str] | None:
    """Max penalty reached after ``waited`` seconds, and the rule for a caller rejoining now."""
    steps = rules.penalty_widening
    if not steps:
        return None
    done = sum(1 for step in steps if waited >= step.after)
    if done == 0:
        return 0, WIDENING_RULE
    return steps[done - 1].max_penalty, widening_rule_after(done)


def write_asterisk_config(rules: RoutingRules, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("queues.conf", render_queues(rules)), ("queuerules.conf", render_queue_rules(rules))):
        path = directory / name
        partial = path.with_suffix(".part")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
        written.append(path)
    return written
