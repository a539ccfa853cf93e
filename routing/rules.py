"""Routing rules: skills and their queues, classes, service levels, overflow, hours, agents.

One YAML file is the single source of truth for the call-center side: Asterisk's queues.conf and
queuerules.conf are rendered from it (routing/render.py), and the router reads it for every call.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr.menu.schema import CustomerClass, Severity
from ivr.yamldoc import ConfigError, parse_yaml, read_text, validate

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Interface = Annotated[str, Field(pattern=r"^(PJSIP|SIP|IAX2|Local)/[A-Za-z0-9_@./-]{1,80}$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceLevel(_Strict):
    """``percent`` of calls answered within ``seconds`` (Asterisk's SL)."""

    percent: float = Field(gt=0, le=100)
    seconds: int = Field(gt=0, le=3600)


class ClassRule(_Strict):
    priority: int = Field(ge=0, le=100, description="QUEUE_PRIO at join; higher is answered first")
    service_level: ServiceLevel


class OverflowStep(_Strict):
    """Move a waiting caller on: ``after`` seconds in the queue, or when no agent is logged in."""

    to: Name
    after: int | None = Field(None, gt=0, le=3600)
    when: Literal["no_agents"] | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> OverflowStep:
        if (self.after is None) == (self.when is None):
            raise ValueError("an overflow step needs exactly one of after: SECONDS or when: no_agents")
        return self


class Skill(_Strict):
    queue: QueueName
    overflow: list[OverflowStep] = Field(
        default_factory=list, max_length=4, description="steps in order: after N s (increasing), or no_agents alone"
    )
    survey: bool = Field(False, description="ask for a 1-5 score after the agent hangs up")
    callback: bool = Field(False, description="waiting callers may press 1 to be called back in their place")


class Agent(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
    interface: Interface
    skills: dict[Name, int] = Field(min_length=1, description="skill -> level (1 best; penalty = level - 1)")

    @field_validator("skills")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        for skill, level in value.items():
            if not 1 <= level <= 9:
                raise ValueError(f"level of {skill!r} must be 1..9")
        return value


class PenaltyStep(_Strict):
    """After ``after`` seconds, members up to ``max_penalty`` may take the call (queuerules.conf)."""

    after: int = Field(gt=0, le=3600)
    max_penalty: int = Field(ge=0, le=8)


class QueueSettings(_Strict):
    strategy: Literal["ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear", "wrandom"] = "rrmemory"
    ring_seconds: int = Field(15, ge=1, le=120)
    retry_seconds: int = Field(1, ge=0, le=60)
    wrapup_seconds: int = Field(0, ge=0, le=600)


class Aging(_Strict):
    """Waiting callers' priority rises as they near their class's service-level time."""

    enabled: bool = True
    interval_seconds: float = Field(2.0, ge=0.5, le=60)
    points_per_target: float = Field(
        4.0, ge=0, le=100, description="priority points gained per service-level time of the class waited"
    )


class Escalation(_Strict):
    repeat_calls: int = Field(3, ge=2, le=20, description="this many calls in the window escalate")
    window_hours: int = Field(24, ge=1, le=168)
    boost: int = Field(2, ge=0, le=50, description="added to the class priority")
    urgent_boost: int = Field(5, ge=0, le=50, description="added for customers flagged urgent")


class Waiting(_Strict):
    """What a caller hears while queued: position and estimated wait, from the live state."""

    announce_after: int = Field(20, ge=0, le=600, description="first announcement after this many seconds; 0: none")
    announce_every: int = Field(60, ge=5, le=900, description="then again every this many seconds")
    handle_seconds: int = Field(
        180, ge=10, le=3600, description="handle time assumed until the queue has completed calls of its own"
    )


DialString = Annotated[str, Field(pattern=r"^(PJSIP|SIP|IAX2|DAHDI|Local)/[A-Za-z0-9_@./{}-]{1,80}$")]


class Callbacks(_Strict):
    """Virtual hold: the callback waits in the queue in the caller's place; an agent is connected
    first, then the customer is dialled (``dial``: ``{number}`` is the caller's digits)."""

    dial: DialString = "PJSIP/{number}@operator"
    ring_seconds: int = Field(30, ge=5, le=120)
    retries: int = Field(2, ge=0, le=5, description="further attempts when the customer does not answer")
    retry_after: int = Field(120, ge=1, le=3600)
    max_hold_hours: float = Field(4, gt=0, le=24, description="a callback still unserved after this is dropped")
    number_pattern: str = Field(r"^\+?[0-9]{3,20}$", description="numbers that may be called back")

    @field_validator("dial")
    @classmethod
    def _placeholder(cls, value: str) -> str:
        if "{number}" not in value or value.count("{") != 1 or value.count("}") != 1:
            raise ValueError("dial needs exactly one {number} placeholder")
        return value

    @field_validator("number_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return value


def _always() -> dict[Weekday, list[str]]:
    return {day: ["00:00-24:00"] for day in WEEKDAYS}


class Hours(_Strict):
    """Opening hours; without ``weekly`` the hotline is always open."""

    timezone: str = "UTC"
    weekly: dict[Weekday, list[str]] = Field(default_factory=_always)
    holidays: list[date] = Field(default_factory=list)
    closed: bool = Field(False, description="the manual emergency/closed switch")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("weekly")
    @classmethod
    def _spans(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for spans in value.values():
            for span in spans:
                if _SPAN.match(span) is None or span[:5] >= span[6:]:
                    raise ValueError(f"not an opening span HH:MM-HH:MM: {span!r}")
        return value

    def is_open(self, moment: datetime) -> bool:
        """Opening hours only; the closed switch (YAML or runtime) is the router's."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        now = local.time().replace(tzinfo=None)
        for span in self.weekly.get(WEEKDAYS[local.weekday()], []):
            start, end = span.split("-")
            end_time = time.max if end == "24:00" else time.fromisoformat(end)
            if time.fromisoformat(start) <= now < end_time:
                return True
        return False


def _default_deadlines() -> dict[Severity, float]:
    return {Severity.NORMAL: 24, Severity.MAJOR: 48, Severity.URGENT: 4}


class Tickets(_Strict):
    """Work orders opened in the IVR: the promised deadline per severity, in hours."""

    deadline_hours: dict[Severity, float] = Field(default_factory=_default_deadlines)

    @field_validator("deadline_hours")
    @classmethod
    def _every_severity(cls, value: dict[Severity, float]) -> dict[Severity, float]:
        missing = [s.value for s in Severity if s not in value]
        if missing:
            raise ValueError(f"a deadline for every severity is needed; missing: {', '.join(missing)}")
        if any(not 0 < hours <= 24 * 60 for hours in value.values()):
            raise ValueError("deadlines are hours between 0 and 1440")
        return value


def _daytime() -> dict[Weekday, list[str]]:
    return {day: ["09:00-20:00"] for day in WEEKDAYS}


class Revisits(_Strict):
    """Return visits: after a ticket is closed the hotline calls the customer (within ``hours``),
    at most ``max_concurrent`` at once and one every ``min_interval_seconds``; a customer who does
    not answer is tried ``retries`` more times, ``retry_after`` seconds apart."""

    enabled: bool = True
    hours: Hours = Field(default_factory=lambda: Hours(weekly=_daytime()))
    delay_seconds: int = Field(0, ge=0, le=7 * 86400, description="wait this long after the closing")
    max_concurrent: int = Field(2, ge=1, le=100)
    min_interval_seconds: float = Field(5.0, ge=0, le=3600)
    ring_seconds: int = Field(30, ge=5, le=120)
    retries: int = Field(2, ge=0, le=5)
    retry_after: int = Field(1800, ge=1, le=86400)
    dial: DialString | None = Field(None, description="like callbacks.dial; default: the callbacks' dial string")
    caller_id: Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")] = Field(
        "10000", description="the number the customer sees calling (the hotline's)"
    )
    caller_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9 ._-]{1,40}$")] = "Hotline"

    _check_dial = field_validator("dial")(lambda value: value if value is None else Callbacks._placeholder(value))


def _all_classes() -> dict[CustomerClass, ClassRule]:
    return {
        CustomerClass.KEY: ClassRule(priority=10, service_level=ServiceLevel(percent=90, seconds=15)),
        CustomerClass.BUSINESS: ClassRule(priority=5, service_level=ServiceLevel(percent=80, seconds=20)),
        CustomerClass.PUBLIC: ClassRule(priority=1, service_level=ServiceLevel(percent=80, seconds=30)),
    }


class RoutingRules(_Strict):
    name: str = Field(min_length=1, max_length=64)
    hours: Hours = Field(default_factory=lambda: Hours())
    classes: dict[CustomerClass, ClassRule] = Field(default_factory=_all_classes)
    skills: dict[Name, Skill] = Field(min_length=1)
    fallback_skill: Name
    queue_settings: QueueSettings = Field(default_factory=lambda: QueueSettings())
    penalty_widening: list[PenaltyStep] = Field(default_factory=list)
    agents: list[Agent] = Field(default_factory=list)
    aging: Aging = Field(default_factory=lambda: Aging())
    escalation: Escalation = Field(default_factory=lambda: Escalation())
    outage: bool = Field(False, description="a declared network outage: no surveys while it lasts")
    waiting: Waiting = Field(default_factory=lambda: Waiting())
    callbacks: Callbacks = Field(default_factory=lambda: Callbacks())
    tickets: Tickets = Field(default_factory=lambda: Tickets())
    revisits: Revisits = Field(default_factory=lambda: Revisits())

    @model_validator(mode="after")
    def _revisit_hours_in_the_hotline_zone(self) -> RoutingRules:
        """Calling hours without a zone of their own are the hotline's local time, not UTC."""
        if "timezone" not in self.revisits.hours.model_fields_set:
            hours = self.revisits.hours.model_copy(update={"timezone": self.hours.timezone})
            object.__setattr__(self, "revisits", self.revisits.model_copy(update={"hours": hours}))
        return self

    def revisit_dial(self, number: str) -> str:
        return (self.revisits.dial or self.callbacks.dial).replace("{number}", number)

    def queue_of(self, skill: str) -> str:
        return self.skills[skill].queue

    def class_rule(self, customer_class: CustomerClass) -> ClassRule:
        return self.classes[customer_class]


def check_rules(rules: RoutingRules) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    missing = [c.value for c in CustomerClass if c not in rules.classes]
    if missing:
        problems.append((("classes",), f"every class needs a rule; missing: {', '.join(missing)}"))
    if rules.fallback_skill not in rules.skills:
        problems.append((("fallback_skill",), f"unknown skill {rules.fallback_skill!r}"))
    queues: dict[str, str] = {}
    for name, skill in rules.skills.items():
        if skill.queue in queues:
            owner = queues[skill.queue]
            problems.append((("skills", name, "queue"), f"queue {skill.queue!r} is also skill {owner!r}'s"))
        queues[skill.queue] = name
        afters = [step.after for step in skill.overflow if step.after is not None]
        if any(step.when for step in skill.overflow) and len(skill.overflow) > 1:
            problems.append((("skills", name, "overflow"), "when: no_agents must be the skill's only overflow step"))
        elif afters != sorted(set(afters)):
            problems.append((("skills", name, "overflow"), "overflow steps need increasing 'after' times"))
        for i, step in enumerate(skill.overflow):
            if step.to not in rules.skills:
                problems.append((("skills", name, "overflow", i, "to"), f"unknown skill {step.to!r}"))
            elif step.to == name:
                problems.append((("skills", name, "overflow", i, "to"), "a skill cannot overflow to itself"))
            elif any(s.when == "no_agents" for s in rules.skills[step.to].overflow):
                # Its queue refuses callers when nobody is logged in: an overflowing caller would be lost.
                problems.append((("skills", name, "overflow", i, "to"),
                                 f"{step.to!r} turns callers away when no agent is logged in; overflow to a skill "
                                 "whose queue always takes callers"))
    seen_agents: set[str] = set()
    for i, agent in enumerate(rules.agents):
        if agent.name in seen_agents:
            problems.append((("agents", i, "name"), f"agent {agent.name!r} is listed twice"))
        seen_agents.add(agent.name)
        for skill_name in agent.skills:
            if skill_name not in rules.skills:
                problems.append((("agents", i, "skills", skill_name), f"unknown skill {skill_name!r}"))
    afters = [step.after for step in rules.penalty_widening]
    if afters != sorted(set(afters)):
        problems.append((("penalty_widening",), "steps must have increasing 'after' times"))
    return problems


def parse_rules_text(text: str, file: str = "<routing>") -> RoutingRules:
    data, positions = parse_yaml(text, file)
    rules = validate(RoutingRules, data, positions)
    problems = [positions.problem(path, message) for path, message in check_rules(rules)]
    if problems:
        raise ConfigError(problems)
    return rules


def load_rules(path: str | Path) -> RoutingRules:
    return parse_rules_text(read_text(path), str(path))
