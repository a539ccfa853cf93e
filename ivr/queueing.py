"""FastAGI entry points around the queue: ``wait`` (between queue stints) and ``callback_done``.

The dialplan queues a caller in stints (asterisk/conf/extensions.conf). Between two stints, or
when the caller pressed 1 while queued, ``wait`` runs: it tells the caller their position and the
wait estimated from the live state, in their language, offers a callback that keeps their place,
decides whether the overflow time has come, and sends the caller back to the same place in line
with the priority aging has given them. ``callback_done`` runs when a callback's customer leg
hangs up: it records the attempt (retry or result) and writes that leg's outcome record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from ivr import variables as v
from ivr.agi.channel import Channel
from ivr.menu.engine import PromptPaths
from ivr.menu.schema import CustomerClass, Menu, Waiting
from ivr.outcomes import Disposition, OutcomeRecord, OutcomeStore
from routing.aging import aged_priority
from routing.callbacks import Booking, Callback, Callbacks, new_callback_id
from routing.customers import mask_number, normalize_number
from routing.live import LeftQueue, LiveQueues
from routing.render import widening_state
from routing.rules import RoutingRules
from routing.waiting import estimate_wait

log = logging.getLogger(__name__)

CALLBACK_KEY = "1"
MAX_ANNOUNCED = 10  # announcements kept on the channel (and in the outcome): the last ones


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class QueueHandlers:
    def __init__(
        self,
        menu: Callable[[], Menu],
        rules: Callable[[], RoutingRules],
        live: Callable[[], LiveQueues | None],
        callbacks: Callable[[], Callbacks | None],
        outcomes: OutcomeStore,
        prompts: PromptPaths,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._menu = menu
        self._rules = rules
        self._live = live
        self._callbacks = callbacks
        self._outcomes = outcomes
        self._prompts = prompts
        self._clock = clock

    async def _left(self, uniqueid: str, queue: str, stint_at: float) -> LeftQueue | None:
        """The caller's place when it left ``queue`` in this stint: the AMI event may trail the
        AGI by a moment, and an older leaving (an earlier stint) is not this one."""
        live = self._live()
        if live is None:
            return None
        for _ in range(10):
            left = live.left.get(uniqueid)
            if left is not None and left.queue == queue and left.at >= stint_at - 1:
                return left
            await asyncio.sleep(0.05)
        return None

    async def wait(self, channel: Channel) -> None:
        uniqueid = channel.env.uniqueid
        names = (v.IN_QUEUE, v.QUEUED_AT, v.PRIORITY, v.CUSTOMER_CLASS, v.SKILL, v.OVERFLOWED, v.QUEUE_TIMEOUT,
                 v.WAIT_KEY, v.ANNOUNCED, v.LANGUAGE, v.MAX_PENALTY, v.STINT_AT, v.OVERFLOWED_AT, v.QUEUE_POSITION)
        values = {name: await channel.get_variable(name) for name in names}
        rules, menu = self._rules(), self._menu()
        queue = values[v.IN_QUEUE] or ""
        now = self._clock()
        queued_at = _float(values[v.QUEUED_AT]) or now
        waited = now - queued_at
        try:
            customer_class = CustomerClass(values[v.CUSTOMER_CLASS] or "public")
        except ValueError:
            customer_class = CustomerClass.PUBLIC
        given = values[v.PRIORITY] or ""
        base = int(given) if given.isascii() and given.isdigit() else 0
        target = rules.class_rule(customer_class).service_level.seconds
        priority = max(base, aged_priority(base, waited, target, rules.aging.points_per_target)
                       if rules.aging.enabled else base)
        live = self._live()
        left = await self._left(uniqueid, queue, _float(values[v.STINT_AT]) or queued_at)
        app_position = values[v.QUEUE_POSITION] or ""
        if left is not None and left.position > 0:
            position = left.position
        elif app_position.isascii() and app_position.isdigit() and int(app_position) > 0:
            position = int(app_position)
        else:
            position = (live.ahead_of(queue, priority) + 1) if live else 1
        pressed = values[v.WAIT_KEY] == CALLBACK_KEY
        await channel.set_variable(v.WAIT_KEY, "")

        skill = rules.skills.get(values[v.SKILL] or "")
        announcing = menu.waiting is not None and rules.waiting.announce_after > 0
        taken_text = values[v.OVERFLOWED] or ""
        taken = int(taken_text) if taken_text.isascii() and taken_text.isdigit() else 0
        # The overflow steps still ahead, as (seconds waited, queue); the first is also the dialplan's own.
        if taken_text == "fallback":  # the dialplan's queue of last resort: nowhere further to go
            steps = []
        elif skill is not None:
            steps = [(float(s.after), rules.queue_of(s.to)) for s in skill.overflow if s.after is not None]
        else:  # a skill the rules no longer have (published meanwhile): the one step the dialplan knows
            first = _float(values[v.QUEUE_TIMEOUT])
            steps = [(first, "")] if first else []
        ahead = steps[taken:]
        if not pressed and ahead and waited >= ahead[0][0] - 1:
            if ahead[0][1]:
                await channel.set_variable(v.OVERFLOW_QUEUE, ahead[0][1])
            await channel.set_variable(v.STINT, self._stint(announcing, rules, ahead[1:], waited) or "")
            await channel.set_variable(v.WAIT_NEXT, v.WAIT_OVERFLOW)
            return

        language = values[v.LANGUAGE] or ""
        if language not in menu.languages:
            language = menu.default_language
        callbacks = self._callbacks()
        number = normalize_number(channel.env.caller_number)
        offer = (menu.waiting is not None and skill is not None and skill.callback and callbacks is not None
                 and callbacks.may_call(number))
        choice = CALLBACK_KEY if pressed else None
        # First in line with an agent free or ringing: an announcement now would only delay the answer.
        next_up = position == 1 and live is not None and any(
            a.state in ("available", "ringing") for a in live.outlook(queue))
        if choice is None and menu.waiting is not None and announcing and not next_up:
            estimate = None
            if live is not None:
                estimate = estimate_wait(position - 1, live.outlook(queue), live.handle_times.of(queue),
                                         rules.queue_settings.wrapup_seconds)
            told = f"pos={position}" + (f",wait={round(estimate)}" if estimate is not None else "")
            history = [a for a in (values[v.ANNOUNCED] or "").split(";") if a][-(MAX_ANNOUNCED - 1):]
            await channel.set_variable(v.ANNOUNCED, ";".join([*history, told]))
            choice = await self._announce(channel, menu.waiting, language, position, estimate, offer)
        if choice == CALLBACK_KEY and menu.waiting is not None:
            booked = await self._book(channel, callbacks if offer else None, number, queue, customer_class,
                                      base, priority, queued_at, position, language)
            if booked:
                return
        # Back in line at the same place, with the priority aging gave the caller.
        back: dict[str, str | int] = {
            v.QUEUE_PRIO: priority,
            v.REJOIN: position,
            v.STINT: self._stint(announcing, rules, ahead, waited) or "",
        }
        # Widening goes on from where the caller got to: since the first queueing, or since the overflow.
        widening_since = _float(values[v.OVERFLOWED_AT]) if taken_text else queued_at
        widening = widening_state(rules, now - (widening_since or now))
        if widening is not None:
            back[v.QUEUE_MAX_PENALTY], back[v.RULE] = widening
        back[v.WAIT_NEXT] = v.WAIT_QUEUE  # last: the dialplan acts on it
        await channel.set_variables(back)

    @staticmethod
    def _stint(
        announcing: bool, rules: RoutingRules, steps_ahead: list[tuple[float, str]], waited: float
    ) -> int | None:
        """Seconds of the next stint: to the next announcement or the next overflow step, if any."""
        ends = [float(rules.waiting.announce_every)] if announcing else []
        if steps_ahead:
            ends.append(max(1.0, steps_ahead[0][0] - waited))
        return math.ceil(min(ends)) if ends else None

    async def _announce(self, channel: Channel, waiting: Waiting, language: str, position: int,
                        estimate: float | None, offer: bool) -> str | None:
        """Position, estimated wait and (when offered) the callback offer; a 1 pressed during any
        of it is the caller taking the offer."""
        escape = CALLBACK_KEY if offer else ""
        parts: list[tuple[str, int | None]] = [(p, None) for p in waiting.position]
        if estimate is not None:
            minutes = math.ceil(estimate / 60)
            if minutes <= 1 and waiting.wait_soon:
                parts.append((waiting.wait_soon, None))
            else:
                parts += [(p, None) for p in waiting.wait_minutes]
        for part, _ in parts:
            if part == "{position}":
                key = await channel.say_number(position, escape)
            elif part == "{minutes}":
                key = await channel.say_number(math.ceil((estimate or 0) / 60), escape)
            else:
                key = await channel.stream_file(self._prompts.path(part, language), escape)
            if key == CALLBACK_KEY:
                return key
        if offer and waiting.callback_offer:
            key = await channel.stream_file(self._prompts.path(waiting.callback_offer, language), escape)
            if key is None:
                key = await channel.wait_for_digit(3000)
            return key
        return None

    async def _book(self, channel: Channel, callbacks: Callbacks | None, number: str, queue: str,
                    customer_class: CustomerClass, base: int, priority: int, queued_at: float, position: int,
                    language: str) -> bool:
        """Book the callback and say so; False (and an apology) when it cannot be had."""
        waiting = self._menu().waiting
        assert waiting is not None
        booking, callback_id = Booking.UNAVAILABLE, new_callback_id()
        skill = await channel.get_variable(v.SKILL) or ""
        if callbacks is not None and queue:
            # Said first: a caller who hangs up while the callback is being placed is a booking, not an
            # abandon, and a controller lost now must not also put the caller back in line.
            await channel.set_variable(v.CALLBACK, callback_id)
            await channel.set_variable(v.WAIT_NEXT, v.WAIT_CALLBACK)
            booking, callback_id = await callbacks.book(Callback(
                id=callback_id, number=number, queue=queue, skill=skill,
                customer_class=customer_class.value, base_priority=base, priority=priority, queued_at=queued_at,
                position=position, language=language, origin_uniqueid=channel.env.uniqueid,
                booked_at=self._clock(),
            ))
        if booking == Booking.UNAVAILABLE:
            log.info("call %s: callback not available for %s", channel.env.uniqueid, mask_number(number))
            await channel.set_variable(v.CALLBACK, "")
            await channel.set_variable(v.WAIT_NEXT, "")
            if waiting.callback_unavailable:
                await channel.stream_file(self._prompts.path(waiting.callback_unavailable, language))
            return False
        await channel.set_variable(v.CALLBACK, callback_id)
        if waiting.callback_booked:
            await channel.stream_file(self._prompts.path(waiting.callback_booked, language))
        await channel.set_variable(v.WAIT_NEXT, v.WAIT_CALLBACK)
        return True

    async def callback_done(self, channel: Channel) -> None:
        """Hangup handler of a callback's customer leg: record the attempt and its outcome."""
        callbacks = self._callbacks()
        callback_id = await channel.get_variable(v.CALLBACK) or ""
        dial_status = await channel.get_variable(v.DIAL_STATUS) or ""
        agent = await channel.get_variable(v.CALLBACK_AGENT) or ""
        dialled_at = _float(await channel.get_variable(v.CALLBACK_DIALLED_AT))
        answered = _float(await channel.get_variable("ANSWEREDTIME"))
        callback = None
        if callbacks is not None and callback_id:
            try:
                callback = await callbacks.attempt_ended(callback_id, dial_status, agent, dialled_at)
            except (RedisError, OSError) as exc:  # the leg's record below is written all the same
                log.warning("callback %s attempt not recorded: %s", callback_id, exc)
        now = self._clock()
        record = OutcomeRecord(
            uniqueid=channel.env.uniqueid,
            kind="callback",
            disposition=Disposition.ANSWERED if dial_status == "ANSWER" else Disposition.FAILED,
            caller=callback.number if callback else normalize_number(channel.env.caller_number),
            customer_class=callback.customer_class if callback else "public",
            language=callback.language if callback else "",
            skill=callback.skill if callback else None,
            queue=callback.queue if callback else None,
            priority=callback.base_priority if callback else None,
            agent=agent or None,
            wait_seconds=round(dialled_at - callback.queued_at, 3) if callback and dialled_at else None,
            talk_seconds=answered,
            callback={
                "id": callback_id, "of": callback.origin_uniqueid if callback else None,
                "attempt": callback.attempts if callback else None, "result": dial_status or "UNKNOWN",
                "status": callback.status.value if callback else None,
            },
            queued_at=callback.queued_at if callback else None,
            answered_at=dialled_at,
            ended_at=now,
        )
        await self._outcomes.save(record)
        log.info("callback %s attempt ended: %s", callback_id, dial_status or "no dial")
