"""Walks a menu tree for one call, through the typed channel API only.

One coroutine per call: :meth:`MenuEngine.run` returns how the menu ended (a route or a
self-service hangup) and leaves the channel-side consequences (variables for the dialplan, the
outcome record) to the call handler. A caller hanging up surfaces as ``ChannelHangup``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ivr.agi.channel import DTMF_DIGITS, Channel, RecordResult, TalkResult
from ivr.menu.graph import fallback_of
from ivr.menu.schema import (
    BranchNode,
    Condition,
    CustomerClass,
    GotoNode,
    HangupNode,
    InputNode,
    Intent,
    LanguageNode,
    ListenNode,
    Menu,
    MenuNode,
    PlayNode,
    QueryNode,
    RouteNode,
    TicketNode,
    TicketStatusNode,
    VerifyNode,
)
from ivr.selfservice import AccountFacts, BackendUnavailable

if TYPE_CHECKING:
    from ivr.selfservice import AccountBackend
    from ivr.speech.listen import SpeechService
    from ivr.tickets import Ticket, TicketDesk

log = logging.getLogger(__name__)

ALL_KEYS = "0123456789*#"
MAX_STEPS = 500  # far above any real walk; stops a menu bug from holding a caller forever


class Voice(Protocol):
    """What the engine needs from a channel (``ivr.agi.channel.Channel`` provides it)."""

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None: ...
    async def wait_for_digit(self, timeout_ms: int) -> str | None: ...
    async def set_variable(self, name: str, value: str | int) -> None: ...
    async def record_file(
        self, path: str, file_format: str = "wav", escape_digits: str = "#", *, timeout_ms: int = 10000,
        silence_seconds: int | None = 2, beep: bool = False,
    ) -> RecordResult: ...
    async def say_number(self, number: int, escape_digits: str = "") -> str | None: ...
    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None: ...
    async def say_date(self, epoch_seconds: int, escape_digits: str = "") -> str | None: ...
    async def start_capture(self, received_path: str, mixed_path: str) -> None: ...
    async def stop_capture(self) -> None: ...
    async def play_detecting_talk(self, path: str, *, silence_ms: int, min_ms: int, max_ms: int,
                                  max_seconds: float = 120.0) -> TalkResult: ...


class PromptPaths(Protocol):
    """Where Asterisk finds a prompt. Asked once per prompt and language: the engine keeps the answer."""

    def path(self, prompt_id: str, language: str) -> str: ...


@dataclass
class CallContext:
    """What the IVR knows and has learned about one call."""

    uniqueid: str
    caller_number: str
    caller_name: str
    customer_class: CustomerClass
    language: str
    customer_name: str = ""
    account: str = ""
    started_at: float = 0.0
    variables: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # as recorded: sensitive ones masked
    path: list[str] = field(default_factory=list)
    fallback_reason: str | None = None  # set when retries ran out; cleared by later valid input
    menu_stack: list[str] = field(default_factory=list)
    sensitive: list[str] = field(default_factory=list)  # variables never written anywhere in clear
    self_served: bool = False  # reached a hangup node: a hangup during its goodbye is still self-service
    typeahead: str | None = None  # a key pressed ahead, for the next node that reads one
    escalation: list[str] = field(default_factory=list)  # why the priority was raised
    verified_account: str = ""  # set once the caller's PIN matched (verify node); never the PIN
    resume_after_verify: str = ""  # the query node that sent an unverified caller to the PIN check
    tickets: list[str] = field(default_factory=list)  # work orders opened in this call

    # Written out rather than generated: dataclasses' __init__ is Python made at import, which
    # the compiled engine cannot compile (four times the cost, once per call). The fields and
    # their defaults are the ones above (tests/unit/test_engine.py checks that they agree).
    def __init__(self, uniqueid: str, caller_number: str, caller_name: str, customer_class: CustomerClass,
                 language: str, customer_name: str = "", account: str = "", started_at: float = 0.0,
                 variables: dict[str, str] | None = None, inputs: dict[str, str] | None = None,
                 path: list[str] | None = None, fallback_reason: str | None = None,
                 menu_stack: list[str] | None = None, sensitive: list[str] | None = None,
                 self_served: bool = False, typeahead: str | None = None, escalation: list[str] | None = None,
                 verified_account: str = "", resume_after_verify: str = "", tickets: list[str] | None = None,
                 ) -> None:
        self.uniqueid = uniqueid
        self.caller_number = caller_number
        self.caller_name = caller_name
        self.customer_class = customer_class
        self.language = language
        self.customer_name = customer_name
        self.account = account
        self.started_at = started_at
        self.variables = {} if variables is None else variables
        self.inputs = {} if inputs is None else inputs
        self.path = [] if path is None else path
        self.fallback_reason = fallback_reason
        self.menu_stack = [] if menu_stack is None else menu_stack
        self.sensitive = [] if sensitive is None else sensitive
        self.self_served = self_served
        self.typeahead = typeahead
        self.escalation = [] if escalation is None else escalation
        self.verified_account = verified_account
        self.resume_after_verify = resume_after_verify
        self.tickets = [] if tickets is None else tickets


@dataclass(frozen=True)
class RouteRequest:
    """The menu is done: the caller needs an agent with this skill (the router picks the queue)."""

    skill: str


@dataclass(frozen=True)
class SelfServed:
    node: str


Ending = RouteRequest | SelfServed


class MenuBug(Exception):
    """The menu walked somewhere a validated menu cannot go (kept as a guard, not a flow)."""


def mask(value: str) -> str:
    return "*" * len(value)


# Prompt paths already asked for: (id of the prompt library, prompt, language) -> (library, path).
_PROMPT_PATHS: dict[tuple[int, str, str], tuple[PromptPaths, str]] = {}
MAX_PROMPT_PATHS = 4096


class MenuEngine:
    def __init__(
        self,
        menu: Menu,
        prompts: PromptPaths,
        *,
        is_open: Callable[[], bool] = lambda: True,
        on_step: Callable[[CallContext], None] | None = None,
        speech: SpeechService | None = None,
        accounts: AccountBackend | None = None,
        tickets: TicketDesk | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.menu = menu
        self._tickets = tickets
        self._clock = clock
        self._accounts = accounts
        self._speech = speech
        self._listen_nodes: dict[str, ListenNode] = {}  # menus with speech, as listen nodes
        self._prompts = prompts
        self._is_open = is_open  # business hours and the closed switch: the routing rules' call
        self._on_step = on_step

    # -- helpers ---------------------------------------------------------------------------

    def _prompt(self, prompt_id: str, call: CallContext) -> str:
        # A prompt's path is the same call after call, and asking the (Python) prompt library was a
        # call out of the compiled engine for every prompt. Keyed by the library's identity, which
        # the entry keeps alive (so no other library can take over its id while it is cached).
        key = (id(self._prompts), prompt_id, call.language)
        known = _PROMPT_PATHS.get(key)
        if known is not None and known[0] is self._prompts:
            return known[1]
        path = self._prompts.path(prompt_id, call.language)
        if len(_PROMPT_PATHS) >= MAX_PROMPT_PATHS:
            _PROMPT_PATHS.clear()
        _PROMPT_PATHS[key] = (self._prompts, path)
        return path

    async def _ask(self, voice: Voice, call: CallContext, prompt_id: str, timeout: float) -> str | None:
        """Play a prompt any key interrupts; then wait for a key. A key typed ahead answers at once."""
        if call.typeahead is not None:
            typed, call.typeahead = call.typeahead, None
            return typed
        path = self._prompt(prompt_id, call)
        if isinstance(voice, Channel):  # the server's channel: both commands in one coroutine of its own
            return await voice.ask(path, ALL_KEYS, int(timeout * 1000))
        digit = await voice.stream_file(path, ALL_KEYS)
        return digit if digit is not None else await voice.wait_for_digit(int(timeout * 1000))

    def _holds(self, condition: Condition, call: CallContext) -> bool:
        if condition.customer_class is not None and call.customer_class not in condition.customer_class:
            return False
        if condition.language is not None and call.language not in condition.language:
            return False
        if condition.business_hours is not None and self._is_open() != condition.business_hours:
            return False
        if condition.variable is not None:
            value = call.variables.get(condition.variable)
            if condition.equals is None and condition.matches is None:
                return bool(value)
            if value is None:
                return False
            if condition.equals is not None and value != condition.equals:
                return False
            if condition.matches is not None and re.fullmatch(condition.matches, value) is None:
                return False
        return True

    # -- node types ------------------------------------------------------------------------

    async def _ask_or_hear(self, voice: Voice, call: CallContext, node_id: str, node: MenuNode) -> str | None:
        """A menu with ``speech``: after the prompt the caller may say an option instead of pressing
        it. Without usable speech for this call it is a plain DTMF menu."""
        speech = self._speech
        if node.speech is None or speech is None or not speech.available(call.language) or call.typeahead:
            return await self._ask(voice, call, node.prompt, node.timeout)
        listen = self._listen_nodes.get(node_id)
        if listen is None:
            listen = self._listen_nodes[node_id] = ListenNode(
                type="listen", prompt=node.prompt, fallback=node_id, max_seconds=min(30, int(node.timeout) + 3),
                intents={f"option_{i}": Intent(phrases=phrases, goto=node.options[key], key=key)
                         for i, (key, phrases) in enumerate(node.speech.items())},
                barge_in=node.barge_in,
            )
        if node.barge_in:  # the option may be said over the prompt
            heard = await speech.listen(voice, call.uniqueid, node_id, listen, call.language, ALL_KEYS,
                                        over_prompt=self._prompt(node.prompt, call))
            if heard.barged_in:
                call.inputs[f"{node_id}_barge_in"] = "spoke_over_prompt"
        else:
            digit = await voice.stream_file(self._prompt(node.prompt, call), ALL_KEYS)
            if digit is not None:
                return digit
            heard = await speech.listen(voice, call.uniqueid, node_id, listen, call.language, ALL_KEYS)
        if heard.key is not None:
            return heard.key
        if heard.intent is not None:
            key = listen.intents[heard.intent].key
            call.inputs[f"{node_id}_said"] = f"{key}:{heard.confidence:.2f}"
            return key
        if heard.unavailable is not None:  # this time by DTMF: the prompt again, keys only
            return await self._ask(voice, call, node.prompt, node.timeout)
        return None  # no match: counts as no input (the menu's reprompt and retries)

    async def _menu(self, voice: Voice, call: CallContext, node_id: str, node: MenuNode) -> str:
        if not call.menu_stack or call.menu_stack[-1] != node_id:
            call.menu_stack.append(node_id)
        pending: str | None = None
        failure = "no_input"
        options = node.options
        for attempt in range(node.retries):
            if pending is not None:
                digit: str | None = pending
            elif node.speech is None and call.typeahead is None and isinstance(voice, Channel):
                # The common menu (keys only, none typed ahead, the server's channel): _ask's work
                # without its coroutine, a layer less for every key of every menu.
                digit = await voice.ask(self._prompt(node.prompt, call), ALL_KEYS, int(node.timeout * 1000))
            elif node.speech is None:
                digit = await self._ask(voice, call, node.prompt, node.timeout)
            else:
                digit = await self._ask_or_hear(voice, call, node_id, node)
            pending = None
            if digit is not None:
                target = options.get(digit)
                if target is not None:
                    call.fallback_reason = None
                    return target
            failure = "no_input" if digit is None else "invalid_input"
            error_prompt = (
                (node.no_input_prompt or self.menu.defaults.no_input_prompt)
                if digit is None
                else (node.invalid_prompt or self.menu.defaults.invalid_prompt)
            )
            last = attempt + 1 == node.retries
            if error_prompt:
                # A key pressed during the apology counts as the next try.
                pending = await voice.stream_file(self._prompt(error_prompt, call), "" if last else ALL_KEYS)
        return self._fallback(call, node_id, node, failure)

    def _fallback(self, call: CallContext, node_id: str, node: MenuNode | InputNode, failure: str) -> str:
        target = fallback_of(self.menu, node)
        if target is None:
            raise MenuBug(f"{node_id} has no fallback")
        call.fallback_reason = failure
        return target

    async def _say_digits(self, voice: Voice, call: CallContext, node_id: str, node: InputNode,
                          valid: Callable[[str], bool]) -> tuple[str | None, str, str]:
        """Digits by speech: after the prompt the caller may say them (or start keying). Returns
        (first key, "", "") for keys, (None, digits, "") for confirmed spoken digits, and
        (None, "", why) otherwise: "" nothing heard, "invalid" (not an acceptable entry, so not read
        back), "rejected" (2 or no answer to the read-back)."""
        speech = self._speech
        if speech is None or not speech.available(call.language) or call.typeahead is not None:
            return await self._ask(voice, call, node.prompt, node.timeout), "", ""
        keys = "0123456789*#"
        first = await voice.stream_file(self._prompt(node.prompt, call), keys)
        if first is not None:
            return first, "", ""
        heard = await speech.listen_digits(voice, call.uniqueid, node_id, call.language, keys,
                                           max_seconds=min(30, node.max_digits + 4), threshold=node.speech_threshold)
        if heard.key is not None:
            return heard.key, "", ""
        if heard.unavailable is not None:
            speech.count_fallback(node_id)
            return await voice.wait_for_digit(int(node.timeout * 1000)), "", ""
        if not heard.text:
            return None, "", ""
        if not valid(heard.text):  # too short, too long, against the pattern: not worth a read-back
            call.inputs[f"{node_id}_said"] = "invalid"
            return None, "", "invalid"
        # "You said 1 2 3 4; press 1 if right, 2 to try again." Any other key starts keying instead.
        for part in node.confirm or []:
            if part == "{digits}":
                answer = await voice.say_digits(heard.text, keys)
            else:
                answer = await voice.stream_file(self._prompt(part, call), keys)
            if answer:
                break
        else:
            answer = await voice.wait_for_digit(int(node.timeout * 1000))
        if answer == "1":
            call.inputs[f"{node_id}_said"] = f"confirmed:{heard.confidence:.2f}"
            return None, heard.text, ""
        call.inputs[f"{node_id}_said"] = "rejected"
        if answer is not None and answer != "2":
            return answer, "", ""
        return None, "", "rejected"

    async def _input(self, voice: Voice, call: CallContext, node_id: str, node: InputNode) -> str:
        failure = "no_input"
        allowed = "0123456789" + "".join(k for k in "*#" if k != node.terminator)

        def valid(entry: str) -> bool:
            return (node.min_digits <= len(entry) <= node.max_digits and all(d in allowed for d in entry)
                    and (node.pattern is None or re.fullmatch(node.pattern, entry) is not None))

        for attempt in range(node.retries):
            said = why = ""
            if node.speech:
                first, said, why = await self._say_digits(voice, call, node_id, node, valid)
            else:
                first = await self._ask(voice, call, node.prompt, node.timeout)
            digits = said
            if first is not None and first != node.terminator:
                digits = first
                while len(digits) < node.max_digits:
                    more = await voice.wait_for_digit(int(node.digit_timeout * 1000))
                    if more is None or more == node.terminator:
                        break
                    digits += more
            if valid(digits):
                call.fallback_reason = None
                call.variables[node.variable] = digits
                call.inputs[node.variable] = mask(digits) if node.sensitive else digits
                if node.sensitive and node.variable not in call.sensitive:
                    call.sensitive.append(node.variable)
                return self._require(node.next, node_id)
            failure = "no_input" if first is None and why != "invalid" else "invalid_input"
            if why == "rejected":  # the caller said "not that": simply asked again
                continue
            error_prompt = (
                (node.no_input_prompt or self.menu.defaults.no_input_prompt)
                if failure == "no_input"
                else (node.invalid_prompt or self.menu.defaults.invalid_prompt)
            )
            if error_prompt and attempt + 1 < node.retries:
                await voice.stream_file(self._prompt(error_prompt, call))
        return self._fallback(call, node_id, node, failure)

    async def _language(self, voice: Voice, call: CallContext, node_id: str, node: LanguageNode) -> str:
        digit = await self._ask(voice, call, node.prompt, node.timeout)
        if digit is not None and digit in node.options:
            call.language = node.options[digit]
            # Asterisk's own SAY NUMBER/DIGITS follow the channel language.
            await voice.set_variable("CHANNEL(language)", call.language)
        elif digit is not None:
            # A caller who knows the menu keys ahead: keep the language, pass the key on.
            call.typeahead = digit
        return self._require(node.next, node_id)

    async def _listen(self, voice: Voice, call: CallContext, node_id: str, node: ListenNode) -> str:
        """Ask, and let the caller say it (or press an intent's key at any time). No match after the
        retries, or no speech for this language/this moment: the DTMF fallback, never silence."""
        keys = {intent.key: intent.goto for intent in node.intents.values() if intent.key is not None}
        escape = "".join(keys)
        speech = self._speech
        if speech is None or not speech.available(call.language):
            call.inputs[node_id] = "speech_unavailable"
            if speech is not None:
                speech.count_fallback(node_id)
            return node.fallback
        for attempt in range(node.retries + 1):
            prompt = node.prompt if attempt == 0 else (node.no_match_prompt or node.prompt)
            if node.barge_in:  # the caller may answer over the prompt
                heard = await speech.listen(voice, call.uniqueid, node_id, node, call.language, escape,
                                            over_prompt=self._prompt(prompt, call))
                if heard.barged_in:
                    call.inputs[f"{node_id}_barge_in"] = "spoke_over_prompt"
            else:
                digit = await voice.stream_file(self._prompt(prompt, call), escape)
                if digit in keys:
                    call.inputs[node_id] = f"key:{digit}"
                    return keys[digit]
                heard = await speech.listen(voice, call.uniqueid, node_id, node, call.language, escape)
            if heard.key in keys:
                call.inputs[node_id] = f"key:{heard.key}"
                return keys[heard.key]
            if heard.unavailable is not None:
                log.warning("call %s: speech at %s unavailable (%s); DTMF instead", call.uniqueid, node_id,
                            heard.unavailable)
                call.inputs[node_id] = "speech_unavailable"
                speech.count_fallback(node_id)
                return node.fallback
            if heard.recording:  # keep_recording: the caller's words, matched or not
                call.inputs[f"{node_id}_recording"] = heard.recording
            if heard.intent is not None:
                call.inputs[node_id] = f"said:{heard.intent}:{heard.confidence:.2f}"
                call.variables[node_id] = heard.intent
                return node.intents[heard.intent].goto
        call.inputs[node_id] = "no_match"
        speech.count_fallback(node_id)
        return node.fallback

    async def _digits(self, voice: Voice, call: CallContext, prompt: str, timeout: float, most: int) -> str:
        first = await self._ask(voice, call, prompt, timeout)
        digits = "" if first in (None, "#") else str(first)
        while digits and len(digits) < most:
            more = await voice.wait_for_digit(3000)
            if more is None or more == "#":
                break
            digits += more
        return digits

    async def _verify(self, voice: Voice, call: CallContext, node_id: str, node: VerifyNode) -> str:
        account = call.variables.get(node.account_variable, "") if node.account_variable else call.account
        if not account or self._accounts is None:
            call.inputs[node_id] = "no_account"
            return node.fallback
        for attempt in range(node.retries):
            pin = await self._digits(voice, call, node.prompt, node.timeout, node.max_digits)
            try:
                ok = node.min_digits <= len(pin) and pin.isdigit() and await self._accounts.verify_pin(account, pin)
            except BackendUnavailable:
                call.inputs[node_id] = "unavailable"
                if node.unavailable_prompt:
                    await voice.stream_file(self._prompt(node.unavailable_prompt, call))
                return node.fallback
            if ok:
                call.verified_account = account
                call.inputs[node_id] = "verified"
                resume, call.resume_after_verify = call.resume_after_verify, ""
                return resume or node.next
            if node.invalid_prompt and attempt + 1 < node.retries:
                await voice.stream_file(self._prompt(node.invalid_prompt, call))
        call.inputs[node_id] = "failed"  # the PIN itself is never kept anywhere
        return node.fallback

    async def _query(self, voice: Voice, call: CallContext, node_id: str, node: QueryNode) -> str:
        if not call.verified_account or self._accounts is None:
            call.resume_after_verify = node_id  # back here once the PIN matched
            return node.requires_verify
        try:
            facts = await self._accounts.facts(call.verified_account)
        except BackendUnavailable:
            call.inputs[node_id] = "unavailable"
            if node.unavailable_prompt:
                await voice.stream_file(self._prompt(node.unavailable_prompt, call))
            return node.next
        for part in node.say:
            if not part.startswith("{"):
                await voice.stream_file(self._prompt(part, call))
                continue
            said = await self._say_fact(voice, call, node, part, facts)
            if not said:
                call.inputs[node_id] = f"missing:{part.strip('{}')}"
                if node.missing_prompt:
                    await voice.stream_file(self._prompt(node.missing_prompt, call))
                return node.next
        call.inputs[node_id] = "told"
        return node.next

    async def _say_fact(self, voice: Voice, call: CallContext, node: QueryNode, part: str,
                        facts: AccountFacts | None) -> bool:
        """Say one placeholder in the caller's language; False when the account has no such fact."""
        if facts is None:
            return False
        cents = {"{balance}": facts.balance_cents, "{balance_cents}": facts.balance_cents,
                 "{bill}": facts.bill_cents, "{bill_cents}": facts.bill_cents}
        if part in cents:
            value = cents[part]
            if value is None:
                return False
            whole, rest = divmod(abs(value), 100)
            await voice.say_number((-whole if value < 0 else whole) if not part.endswith("_cents}") else rest)
            return True
        if part in ("{due_date}", "{due_month}", "{due_day}"):
            if facts.due_date is None:
                return False
            if part == "{due_date}":  # Asterisk's SAY DATE: for languages whose date sounds it has
                noon = datetime.combine(facts.due_date, dtime(12), tzinfo=UTC)  # the date whatever the zone
                await voice.say_date(int(noon.timestamp()))
            else:  # numbers, for languages that say dates as numbers with words around (zh: 12月5日)
                await voice.say_number(facts.due_date.month if part == "{due_month}" else facts.due_date.day)
            return True
        if part == "{ticket}":
            if facts.fault_ticket is None:
                return False
            await voice.say_digits(facts.fault_ticket)
            return True
        code = facts.package if part == "{package}" else facts.fault_status
        prompt = node.values.get(code or "")
        if prompt is None:
            return False
        await voice.stream_file(self._prompt(prompt, call))
        return True

    async def _open_ticket(self, voice: Voice, call: CallContext, node_id: str, node: TicketNode) -> str:
        """A fault report or complaint: the caller's description is kept as audio, and the ticket
        number and deadline are read back. No ticket system: the caller goes to an agent instead."""
        desk = self._tickets
        if desk is None:
            call.inputs[node_id] = "unavailable"
            return node.fallback
        audio, hung_up = "", None
        if node.describe_prompt:
            await voice.stream_file(self._prompt(node.describe_prompt, call))
            audio, hung_up = await desk.descriptions.record(voice, call.uniqueid, node.max_seconds)
            if hung_up is not None and not audio:
                raise hung_up  # gone at the beep: nothing was reported
        severity = node.severity_by_class.get(call.customer_class, node.severity)
        try:
            ticket = await desk.store.open(
                category=node.category, severity=severity, phone=call.caller_number,
                customer_class=call.customer_class.value, account=call.account, language=call.language,
                origin_uniqueid=call.uniqueid, description_audio=audio,
            )
        except BackendUnavailable as exc:
            log.warning("call %s: no ticket opened at %s: %s", call.uniqueid, node_id, exc)
            call.inputs[node_id] = "unavailable"
            if hung_up is not None:
                if audio:  # nobody to tell and nothing to attach it to
                    await asyncio.to_thread(Path(audio).unlink, missing_ok=True)
                raise hung_up from None
            if node.unavailable_prompt:
                await voice.stream_file(self._prompt(node.unavailable_prompt, call))
            return node.fallback
        call.tickets.append(ticket.number)
        call.inputs[node_id] = f"opened:{ticket.number}"
        if hung_up is not None:  # the report stands (the caller described it); nobody is left to hear the number
            raise hung_up
        for part in node.read_back:
            if part == "{ticket}":
                await voice.say_digits(ticket.number)
            elif part == "{hours}":
                await voice.say_number(ticket.hours_left(ticket.created_at))
            else:
                await voice.stream_file(self._prompt(part, call))
        return node.next

    async def _ticket_status(self, voice: Voice, call: CallContext, node_id: str, node: TicketStatusNode) -> str:
        """By the number keyed in, or the caller's latest ticket when they just press # (or nothing)."""
        desk = self._tickets
        number = await self._digits(voice, call, node.prompt, node.timeout, 12)
        ticket: Ticket | None = None
        try:
            if desk is not None:
                ticket = await (desk.store.get(number) if number else desk.store.latest_for(call.caller_number))
        except BackendUnavailable:
            desk = None
        if desk is None:
            call.inputs[node_id] = "unavailable"
            if node.unavailable_prompt:
                await voice.stream_file(self._prompt(node.unavailable_prompt, call))
            return node.next
        if ticket is None:
            call.inputs[node_id] = "not_found" if number else "none_for_phone"
            if node.missing_prompt:
                await voice.stream_file(self._prompt(node.missing_prompt, call))
            return node.next
        closed = ticket.status == "closed"
        for part in (node.say_closed or node.say) if closed else node.say:
            said = True
            if part == "{ticket}":
                await voice.say_digits(ticket.number)
            elif part == "{hours_left}":
                said = not closed
                if said:
                    await voice.say_number(ticket.hours_left(self._clock()))
            elif part in ("{status}", "{result}"):
                prompt = node.values.get(ticket.status.value if part == "{status}" else ticket.result)
                said = prompt is not None
                if prompt is not None:
                    await voice.stream_file(self._prompt(prompt, call))
            else:
                await voice.stream_file(self._prompt(part, call))
            if not said:
                log.warning("call %s: %s cannot say %s for ticket %s", call.uniqueid, node_id, part, ticket.number)
                break
        call.inputs[node_id] = f"told:{ticket.number}"
        return node.next

    @staticmethod
    def _require(target: str | None, node_id: str) -> str:
        if target is None:
            raise MenuBug(f"dead end at {node_id}")
        return target

    def _back(self, call: CallContext) -> str:
        if call.menu_stack:
            call.menu_stack.pop()  # the menu we are leaving
        return call.menu_stack[-1] if call.menu_stack else self.menu.start

    # -- the walk --------------------------------------------------------------------------

    async def run(self, voice: Voice, call: CallContext) -> Ending:
        node_id = self.menu.start
        nodes = self.menu.nodes  # (a pydantic model's attribute is a Python lookup: once, not per step)
        for _ in range(MAX_STEPS):
            node = nodes[node_id]
            call.path.append(node_id)
            # A branch or goto only decides, and the node it leads to is checkpointed at once.
            # Dispatched on the exact type (no node class has subclasses): isinstance()
            # against a pydantic model goes through ABCMeta, a dozen of them per call.
            kind = type(node)
            if self._on_step is not None and kind is not BranchNode and kind is not GotoNode:
                self._on_step(call)  # a plain call: the bookkeeping never makes the caller wait
            if type(node) is MenuNode:
                node_id = await self._menu(voice, call, node_id, node)
            elif type(node) is PlayNode:
                for prompt in node.prompts:
                    await voice.stream_file(self._prompt(prompt, call))
                node_id = self._require(node.next, node_id)
            elif type(node) is InputNode:
                node_id = await self._input(voice, call, node_id, node)
            elif type(node) is LanguageNode:
                node_id = await self._language(voice, call, node_id, node)
            elif type(node) is ListenNode:
                node_id = await self._listen(voice, call, node_id, node)
            elif type(node) is VerifyNode:
                node_id = await self._verify(voice, call, node_id, node)
            elif type(node) is QueryNode:
                node_id = await self._query(voice, call, node_id, node)
            elif type(node) is TicketNode:
                node_id = await self._open_ticket(voice, call, node_id, node)
            elif type(node) is TicketStatusNode:
                node_id = await self._ticket_status(voice, call, node_id, node)
            elif type(node) is BranchNode:
                node_id = next((c.goto for c in node.cases if self._holds(c.when, call)), node.default)
            elif type(node) is GotoNode:
                node_id = self._back(call) if node.back else self._require(node.target, node_id)
            elif type(node) is RouteNode:
                if node.announce:
                    await voice.stream_file(self._prompt(node.announce, call))
                return RouteRequest(node.skill)
            elif type(node) is HangupNode:
                call.self_served = True
                if node.prompt:
                    await voice.stream_file(self._prompt(node.prompt, call))
                return SelfServed(node_id)
            else:  # pragma: no cover - the schema admits no other type
                raise MenuBug(f"unknown node type at {node_id}")
        raise MenuBug(f"more than {MAX_STEPS} steps without an ending")


__all__ = ["DTMF_DIGITS", "CallContext", "Ending", "MenuBug", "MenuEngine", "RouteRequest", "SelfServed"]
