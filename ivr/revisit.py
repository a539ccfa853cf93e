"""The return visit's voice: the customer answered the hotline's call about a closed ticket.

They hear the ticket number and the closing result, are asked whether the fault is fixed (1 yes,
2 no) and for a 1-5 score. A key pressed during the reading answers the first question at once
(callers who know the drill do not wait). Whatever happens, the answers reach the ticket and the
outcome record when the call ends, a hangup included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from redis.exceptions import RedisError

from ivr.agi.channel import Channel
from ivr.menu.schema import Menu, Revisit
from ivr.selfservice import BackendUnavailable
from ivr.tickets import Ticket, TicketProblem, TicketStore
from routing.revisits import TICKET_VARIABLE

log = logging.getLogger(__name__)


class PromptPaths(Protocol):
    def path(self, prompt_id: str, language: str) -> str: ...


class VisitResults(Protocol):
    async def answered(self, leg: str, number: str, resolved: bool | None, score: int | None,
                       answered_at: float) -> None: ...
    async def not_served(self, leg: str, result: str) -> None: ...


class RevisitCall:
    def __init__(self, menu: Callable[[], Menu], store: TicketStore, visits: Callable[[], VisitResults | None],
                 prompts: PromptPaths, *, clock: Callable[[], float] = time.time) -> None:
        self._menu = menu
        self._store = store
        self._visits = visits
        self._prompts = prompts
        self._clock = clock

    async def revisit(self, channel: Channel) -> None:
        answered_at = self._clock()
        leg = channel.env.uniqueid
        number = await channel.get_variable(TICKET_VARIABLE) or ""
        menu = self._menu()
        script = menu.revisit
        try:
            ticket = await self._store.get(number)
        except BackendUnavailable as exc:
            log.warning("return visit %s: ticket %s unreadable (%s); hanging up", leg, number, exc)
            ticket = None
        if ticket is None or script is None:
            log.warning("return visit %s: %s", leg, "no revisit script in the menu" if ticket else "unknown ticket")
            await channel.hangup()
            visits = self._visits()
            if visits is not None:
                try:
                    await visits.not_served(leg, "NOT_SERVED")
                except (BackendUnavailable, TicketProblem, RedisError, OSError) as exc:
                    log.error("return visit %s: result not stored: %s", leg, exc)
            return
        language = ticket.language if ticket.language in menu.languages else menu.default_language
        resolved: bool | None = None
        score: int | None = None
        try:
            await channel.set_variable("CHANNEL(language)", language)
            key = await self._read_intro(channel, script, ticket, language)
            answer = await self._ask(channel, script, script.resolved_question, "12", language, key)
            resolved = None if answer is None else answer == "1"
            typed = None  # a score keyed in while told the ticket is reopened counts
            if resolved is False and script.reopened:
                typed = await channel.stream_file(self._prompts.path(script.reopened, language), "12345")
            answer = await self._ask(channel, script, script.score_question, "12345", language, typed)
            score = int(answer) if answer else None
            if script.thanks:
                await channel.stream_file(self._prompts.path(script.thanks, language))
            await channel.hangup()
        finally:  # a hangup included: what was answered counts
            visits = self._visits()
            if visits is not None:
                try:
                    await visits.answered(leg, ticket.number, resolved, score, answered_at)
                except (BackendUnavailable, TicketProblem, RedisError, OSError) as exc:
                    log.error("return visit %s: result not stored on ticket %s: %s", leg, ticket.number, exc)

    async def _read_intro(self, channel: Channel, script: Revisit, ticket: Ticket, language: str) -> str | None:
        """The ticket number and the result; a 1 or 2 pressed meanwhile answers the first question."""
        for part in script.intro:
            if part == "{ticket}":
                key = await channel.say_digits(ticket.number, "12")
            elif part == "{result}":
                prompt = script.results.get(ticket.result)
                key = await channel.stream_file(self._prompts.path(prompt, language), "12") if prompt else None
            else:
                key = await channel.stream_file(self._prompts.path(part, language), "12")
            if key:
                return key
        return None

    async def _ask(self, channel: Channel, script: Revisit, prompt: str, keys: str, language: str,
                   typed: str | None) -> str | None:
        if typed in tuple(keys):
            return typed
        for _ in range(script.attempts):
            key = await channel.stream_file(self._prompts.path(prompt, language), keys)
            if key is None:
                key = await channel.wait_for_digit(int(script.timeout * 1000))
            if key is not None and key in keys:
                return key
        return None
