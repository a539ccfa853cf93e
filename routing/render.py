"""Asterisk's queue configuration, rendered from the routing rules (the one source of truth).

Agents are not written here: they are data, applied at runtime over AMI (routing/agents.py), so
changing an agent's skills never means editing or reloading Asterisk files.
"""

from __future__ import annotations

from pathlib import Path

from ivr.menu.schema import CustomerClass
from routing.rules import RoutingRules, Skill

WIDENING_RULE = "hotline-widening"
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
    if rules.penalty_widening:
        out.append(f"[{WIDENING_RULE}]")
        out.extend(f"penaltychange => {step.after},{step.max_penalty}" for step in rules.penalty_widening)
    return "\n".join(out) + "\n"


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
