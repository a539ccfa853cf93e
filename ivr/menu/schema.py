"""The menu tree's schema: what a routing admin may write in a menu YAML file."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NodeId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PromptId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]
VariableName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
DtmfKey = Annotated[str, Field(pattern=r"^[0-9*#]$")]


class CustomerClass(StrEnum):
    KEY = "key"
    BUSINESS = "business"
    PUBLIC = "public"


class Severity(StrEnum):
    """A work order's severity; the routing rules give each its deadline."""

    NORMAL = "normal"
    MAJOR = "major"
    URGENT = "urgent"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _valid_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
    return value


class MenuNode(_Strict):
    """Play a prompt and branch on one DTMF key."""

    type: Literal["menu"]
    prompt: PromptId
    options: dict[DtmfKey, NodeId] = Field(min_length=1)
    timeout: float = Field(5.0, ge=1, le=60, description="seconds to wait for a key after the prompt")
    retries: int = Field(3, ge=1, le=10, description="invalid or missing keys before the fallback")
    invalid_prompt: PromptId | None = None
    no_input_prompt: PromptId | None = None
    fallback: NodeId | None = None
    speech: dict[DtmfKey, dict[Language, list[Annotated[str, Field(min_length=1, max_length=80)]]]] | None = Field(
        None, description="phrases per option key: the caller may say the option instead of pressing it"
    )
    barge_in: bool = Field(False, description="with speech: the option may be said over the prompt")

    @model_validator(mode="after")
    def _speech_keys_are_options(self) -> MenuNode:
        unknown = sorted(set(self.speech or {}) - set(self.options))
        if unknown:
            raise ValueError(f"speech for keys that are not options: {', '.join(unknown)}")
        return self


class PlayNode(_Strict):
    type: Literal["play"]
    prompts: list[PromptId] = Field(min_length=1)
    next: NodeId | None = None


class InputNode(_Strict):
    """Collect digits (an account, a phone number) into a call variable."""

    type: Literal["input"]
    prompt: PromptId
    variable: VariableName
    min_digits: int = Field(1, ge=1, le=32)
    max_digits: int = Field(20, ge=1, le=32)
    terminator: Literal["#", "*", ""] = "#"
    pattern: str | None = None
    timeout: float = Field(6.0, ge=1, le=60, description="seconds to wait for the first digit")
    digit_timeout: float = Field(3.0, ge=1, le=30, description="seconds to wait between digits")
    retries: int = Field(3, ge=1, le=10)
    invalid_prompt: PromptId | None = None
    no_input_prompt: PromptId | None = None
    sensitive: bool = Field(False, description="mask the value in outcome records")
    next: NodeId | None = None
    fallback: NodeId | None = None
    speech: bool = Field(False, description="the caller may say the digits instead of keying them")
    confirm: list[Annotated[str, Field(pattern=r"^([a-z][a-z0-9_]{0,63}|\{digits\})$")]] | None = Field(
        None, description="read back spoken digits ({digits}) and ask: 1 right, 2 try again"
    )
    speech_threshold: float = Field(0.6, ge=0, le=1, description="the weakest spoken digit's confidence needed")

    _check_pattern = field_validator("pattern")(_valid_regex)

    @model_validator(mode="after")
    def _digits_range(self) -> InputNode:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is greater than max_digits")
        if self.speech and not (self.confirm and "{digits}" in self.confirm):
            raise ValueError("spoken digits need a confirm read-back with {digits}")
        return self


class Condition(_Strict):
    """Every field given must hold."""

    customer_class: list[CustomerClass] | None = None
    business_hours: bool | None = None
    language: list[Language] | None = None
    variable: VariableName | None = None
    equals: str | None = None
    matches: str | None = None

    _check_matches = field_validator("matches")(_valid_regex)

    @field_validator("customer_class", "language", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Condition:
        if (self.equals is not None or self.matches is not None) and self.variable is None:
            raise ValueError("equals/matches need a variable")
        if not any(v is not None for v in self.model_dump().values()):
            raise ValueError("a condition needs at least one test")
        return self


class BranchCase(_Strict):
    when: Condition
    goto: NodeId


class BranchNode(_Strict):
    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: NodeId


class RouteNode(_Strict):
    """Hand the caller to a skill; the routing rules pick its queue, priority and overflow."""

    type: Literal["route"]
    skill: str
    announce: PromptId | None = None


class GotoNode(_Strict):
    type: Literal["goto"]
    target: NodeId | None = None
    back: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> GotoNode:
        if (self.target is None) == (not self.back):
            raise ValueError("a goto needs exactly one of target or back: true")
        return self


class LanguageNode(_Strict):
    """Let the caller pick a language; timeout keeps the current one."""

    type: Literal["language"]
    prompt: PromptId
    options: dict[DtmfKey, Language] = Field(min_length=1)
    timeout: float = Field(4.0, ge=1, le=60)
    next: NodeId | None = None


class Intent(_Strict):
    """What a caller may say (phrases per language) and where it leads; ``key`` is the DTMF
    equivalent, accepted at any time (barge-in during the prompt, or instead of speaking)."""

    phrases: dict[Language, list[Annotated[str, Field(min_length=1, max_length=80)]]] = Field(min_length=1)
    goto: NodeId
    key: DtmfKey | None = None


class ListenNode(_Strict):
    """Ask, record the answer and recognise it offline (Vosk) against the intents' phrases."""

    type: Literal["listen"]
    prompt: PromptId
    intents: dict[VariableName, Intent] = Field(min_length=1)
    threshold: float = Field(0.75, ge=0, le=1, description="the weakest recognised word's confidence needed")
    max_seconds: int = Field(8, ge=1, le=30, description="longest answer recorded")
    silence_seconds: int = Field(2, ge=1, le=5, description="silence that ends the answer")
    retries: int = Field(2, ge=0, le=5, description="reprompts after no match, before the DTMF fallback")
    no_match_prompt: PromptId | None = None
    fallback: NodeId = Field(description="the DTMF menu: after the retries, or whenever speech is unavailable")
    keep_recording: bool = Field(False, description="keep the caller's audio (else deleted after recognition)")
    barge_in: bool = Field(False, description="the caller may speak over the prompt (it stops when they are done)")

    @model_validator(mode="after")
    def _distinct_keys_and_phrases(self) -> ListenNode:
        keys = [i.key for i in self.intents.values() if i.key is not None]
        if len(keys) != len(set(keys)):
            raise ValueError("two intents share a key")
        owner: dict[tuple[str, str], str] = {}
        for name, intent in self.intents.items():
            for language, phrases in intent.phrases.items():
                for phrase in phrases:
                    said = " ".join(phrase.split()).casefold()
                    if not said:
                        raise ValueError(f"intent {name!r} has an empty phrase")
                    other = owner.setdefault((language, said), name)
                    if other != name:
                        raise ValueError(f"the phrase {phrase!r} belongs to both {other!r} and {name!r}")
        return self


class VerifyNode(_Strict):
    """The caller keys in the account PIN before account data is read (masked everywhere)."""

    type: Literal["verify"]
    prompt: PromptId
    account_variable: VariableName | None = Field(
        None, description="the account an input node collected; default: the customer record's account"
    )
    min_digits: int = Field(4, ge=4, le=8)
    max_digits: int = Field(8, ge=4, le=8)
    timeout: float = Field(8.0, ge=1, le=60)
    retries: int = Field(3, ge=1, le=5)
    invalid_prompt: PromptId | None = None
    unavailable_prompt: PromptId | None = Field(None, description="the account system did not answer")
    next: NodeId
    fallback: NodeId = Field(description="no account, wrong PIN too often, or the account system down")


QUERY_PLACEHOLDERS = ("{balance}", "{balance_cents}", "{due_date}", "{due_month}", "{due_day}", "{bill}",
                      "{bill_cents}", "{ticket}", "{package}", "{status}")
SayPart = Annotated[str, Field(pattern=r"^([a-z][a-z0-9_]{0,63}|\{[a-z_]+\})$")]


class QueryNode(_Strict):
    """Speak the verified caller's account facts: prompts with placeholders Asterisk says in the
    caller's language ({balance}: whole units, {balance_cents}: the rest; {due_date}; {bill},
    {bill_cents}; {ticket}: digit by digit; {package}, {status}: through ``values``)."""

    type: Literal["query"]
    say: list[SayPart] = Field(min_length=1)
    values: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")], PromptId] = Field(
        default_factory=dict, description="package codes and fault statuses -> prompts"
    )
    missing_prompt: PromptId | None = Field(None, description="the account has no such fact")
    unavailable_prompt: PromptId | None = None
    requires_verify: NodeId = Field(description="where an unverified caller is sent (a verify node)")
    next: NodeId

    @field_validator("say")
    @classmethod
    def _known_placeholders(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p.startswith("{") and p not in QUERY_PLACEHOLDERS]
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(QUERY_PLACEHOLDERS)}")
        return value


TICKET_PLACEHOLDERS = ("{ticket}", "{hours}")
STATUS_PLACEHOLDERS = ("{ticket}", "{status}", "{hours_left}", "{result}")
TicketSayPart = Annotated[str, Field(pattern=r"^([a-z][a-z0-9_]{0,63}|\{[a-z_]+\})$")]
Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


def _placeholders_in(known: tuple[str, ...]) -> Callable[[list[str] | None], list[str] | None]:
    def check(value: list[str] | None) -> list[str] | None:
        unknown = [p for p in value or [] if p.startswith("{") and p not in known]
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return value
    return check


class TicketNode(_Strict):
    """Open a work order (a fault report, a complaint): the caller describes it after a beep (kept as
    audio), and hears the ticket number and deadline read back ({ticket}: digits, {hours}: a number)."""

    type: Literal["ticket"]
    category: Category
    severity: Severity = Severity.NORMAL
    severity_by_class: dict[CustomerClass, Severity] = Field(
        default_factory=dict, description="a class's own severity (e.g. key accounts: urgent)"
    )
    describe_prompt: PromptId | None = Field(
        None, description="'describe the problem after the tone'; none: no recording"
    )
    max_seconds: int = Field(60, ge=5, le=300, description="longest description recorded")
    read_back: list[TicketSayPart] = Field(min_length=1)
    unavailable_prompt: PromptId | None = Field(None, description="the ticket system did not answer")
    next: NodeId
    fallback: NodeId = Field(description="where the caller goes when no ticket could be opened (an agent)")

    _check_read_back = field_validator("read_back")(_placeholders_in(TICKET_PLACEHOLDERS))


class TicketStatusNode(_Strict):
    """Tell a caller where their ticket stands: by the number they key in, or (just # or no key) by
    the latest ticket of the number they call from."""

    type: Literal["ticket_status"]
    prompt: PromptId = Field(description="'key in your ticket number and #, or press # for your latest'")
    timeout: float = Field(6.0, ge=1, le=60)
    say: list[TicketSayPart] = Field(min_length=1, description="for a ticket still being worked on")
    say_closed: list[TicketSayPart] | None = Field(None, description="for a closed ticket (default: say)")
    values: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")], PromptId] = Field(
        default_factory=dict, description="statuses and closing results -> prompts"
    )
    missing_prompt: PromptId | None = Field(None, description="no such ticket")
    unavailable_prompt: PromptId | None = None
    next: NodeId

    _check_say = field_validator("say", "say_closed")(_placeholders_in(STATUS_PLACEHOLDERS))


class HangupNode(_Strict):
    type: Literal["hangup"]
    prompt: PromptId | None = None


Node = Annotated[
    MenuNode
    | PlayNode
    | InputNode
    | BranchNode
    | RouteNode
    | GotoNode
    | LanguageNode
    | HangupNode
    | ListenNode
    | VerifyNode
    | QueryNode
    | TicketNode
    | TicketStatusNode,
    Field(discriminator="type"),
]

INPUT_NODES = (MenuNode, InputNode, LanguageNode, ListenNode, VerifyNode, TicketStatusNode)


class Defaults(_Strict):
    invalid_prompt: PromptId | None = None
    no_input_prompt: PromptId | None = None
    fallback: NodeId | None = None


class Survey(_Strict):
    """The post-call survey's prompts (the routing rules say which skills ask it)."""

    prompt: PromptId
    thanks: PromptId | None = None
    timeout: float = Field(6.0, ge=1, le=30)
    attempts: int = Field(2, ge=1, le=3)


class Revisit(_Strict):
    """The return visit after a ticket is closed: the hotline calls the customer, reads the result
    (``intro`` with {ticket} and {result}; ``results`` maps result codes to prompts), asks whether
    it is fixed (1 yes, 2 no) and for a 1-5 score. The routing rules say when and how often to call."""

    intro: list[TicketSayPart] = Field(min_length=1)
    results: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")], PromptId] = Field(default_factory=dict)
    resolved_question: PromptId
    score_question: PromptId
    reopened: PromptId | None = Field(None, description="said when the customer answers 2 (not fixed)")
    thanks: PromptId | None = None
    timeout: float = Field(6.0, ge=1, le=30)
    attempts: int = Field(2, ge=1, le=3)

    _check_intro = field_validator("intro")(_placeholders_in(("{ticket}", "{result}")))

    def prompt_ids(self) -> list[str]:
        optional = [self.reopened, self.thanks]
        return ([p for p in self.intro if not p.startswith("{")] + list(self.results.values())
                + [self.resolved_question, self.score_question] + [p for p in optional if p is not None])


AnnouncementPart = Annotated[str, Field(pattern=r"^([a-z][a-z0-9_]{0,63}|\{(position|minutes)\})$")]


class Waiting(_Strict):
    """What a queued caller hears (the routing rules say when). An announcement is a list of
    prompts with ``{position}`` / ``{minutes}`` where Asterisk says the number in the caller's
    language, so each language can put the number where its grammar wants it."""

    position: list[AnnouncementPart] = Field(min_length=1)
    wait_minutes: list[AnnouncementPart] = Field(min_length=1)
    wait_soon: PromptId | None = Field(None, description="when the estimate is under a minute")
    callback_offer: PromptId | None = Field(None, description="'press 1 to be called back' (callback skills)")
    callback_booked: PromptId | None = None
    callback_unavailable: PromptId | None = None

    @field_validator("position", "wait_minutes")
    @classmethod
    def _one_number(cls, value: list[str]) -> list[str]:
        if sum(part.startswith("{") for part in value) != 1:
            raise ValueError("an announcement says exactly one number: {position} or {minutes}")
        return value

    def prompt_ids(self) -> list[str]:
        parts = [*self.position, *self.wait_minutes]
        optional = [self.wait_soon, self.callback_offer, self.callback_booked, self.callback_unavailable]
        return [p for p in parts if not p.startswith("{")] + [p for p in optional if p is not None]


class Menu(_Strict):
    name: str = Field(min_length=1, max_length=64)
    languages: list[Language] = Field(min_length=1)
    default_language: Language
    start: NodeId
    defaults: Defaults = Field(default_factory=Defaults)
    survey: Survey | None = None
    waiting: Waiting | None = None
    revisit: Revisit | None = None
    prompts: dict[PromptId, dict[Language, str]] = Field(min_length=1)
    nodes: dict[NodeId, Node] = Field(min_length=1)
