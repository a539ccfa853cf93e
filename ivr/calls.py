"""The two FastAGI entry points of a call: ``hotline`` (the IVR) and ``finish`` (its hangup handler).

``hotline`` looks the caller up, walks the menu and tells the dialplan what to do next through
channel variables; the dialplan does the queueing. ``finish`` runs from the channel's hangup
handler, whatever happened before (self-service, queue, controller crash, dialplan fallback), and
writes the call's one outcome record from what the IVR learned plus what Asterisk's variables say.
What the IVR learned is kept in memory and mirrored to Redis, so a restarted controller can still
finish a call that an earlier process started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr import variables as v
from ivr.agi.channel import Channel, ChannelHangup
from ivr.agi.protocol import AgiProtocolError
from ivr.menu.engine import CallContext, MenuEngine, PromptPaths, RouteRequest, SelfServed
from ivr.menu.schema import CustomerClass, Menu
from ivr.outcomes import Disposition, OutcomeRecord, OutcomeStore
from routing.customers import CustomerDirectory, mask_number, normalize_number
from routing.live import LeftQueue
from routing.router import Router

log = logging.getLogger(__name__)

CALL_STATE_KEY = "hotline:call:{uniqueid}"
CALL_STATE_TTL = 24 * 3600
_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallContext))


class CallStates:
    """Calls in progress: in memory, mirrored to Redis best-effort.

    A menu step only marks its call (:meth:`step`); :meth:`run`, a background task the app owns,
    writes every marked call's newest state in one pipeline every ``flush_interval``. A caller
    never waits for Redis between two prompts, and Redis takes one round trip for all the calls
    that moved meanwhile (profiled under the real-Asterisk bench, a SET per step through redis-py
    was about a tenth of the controller's CPU). A controller killed outright loses at most that
    interval of steps. The end of the IVR part (:meth:`end_ivr`) is written at once: a restarted
    controller needs it to classify the call. Writes go one pipeline at a time, in order, so an
    older state never lands over a newer one, and only calls still in progress are written, so a
    finished call's key does not come back. (A write that timed out may still reach Redis later,
    as an inline one could before; such a key expires with CALL_STATE_TTL.)
    """

    def __init__(self, redis: Redis, *, timeout: float = 0.2, pause_after_failure: float = 5.0,
                 flush_interval: float = 0.1) -> None:
        self._redis = redis
        self._timeout = timeout
        self._pause = pause_after_failure
        self._flush_interval = flush_interval
        self._paused_until = 0.0  # after a failed write, callers are not made to wait again at once
        self._live: dict[str, CallContext] = {}
        self._ivr_ended: dict[str, str] = {}  # uniqueid -> how the IVR part ended
        self._dirty: dict[str, CallContext] = {}  # moved since their last write
        self._writing = asyncio.Lock()  # one write at a time: they land in the order they were made
        self._idle = asyncio.Event()  # no write in flight (take() waits for one before deleting)
        self._idle.set()
        self._last_sweep = 0.0

    def add(self, call: CallContext) -> None:
        self._live[call.uniqueid] = call
        self._forget_stale(call.started_at)

    def _forget_stale(self, now: float) -> None:
        """Drop calls whose hangup handler never reached us (controller down at that moment).

        A sweep at most once a minute: scanning every live call on every new one would cost
        O(calls) per call under load.
        """
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        for uniqueid in [u for u, c in self._live.items() if now - c.started_at > CALL_STATE_TTL]:
            self._live.pop(uniqueid, None)
            self._ivr_ended.pop(uniqueid, None)
            self._dirty.pop(uniqueid, None)

    def step(self, call: CallContext) -> None:
        """The call moved on in the menu: its state goes to Redis with the next flush."""
        if call.uniqueid in self._live:
            self._dirty[call.uniqueid] = call

    async def end_ivr(self, call: CallContext, how: str) -> None:
        """The IVR part is over (``routed``, ``self_served``, ``caller_hangup``): remember and mirror it."""
        self._ivr_ended[call.uniqueid] = how
        await self.checkpoint(call)

    async def checkpoint(self, call: CallContext) -> None:
        """Write the call's state now (with whatever else is waiting for the next flush)."""
        self.step(call)
        await self.flush()

    async def run(self) -> None:
        """Background task (owned by the app): writes the calls that moved, every flush_interval."""
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("call states not written; trying again")

    def _state(self, call: CallContext) -> bytes:
        # A flat copy: the fields are strings, numbers and flat lists and dicts of strings, which
        # orjson writes as they are (dataclasses.asdict deep-copied them all on every step).
        state = {name: getattr(call, name) for name in _CALL_FIELDS}
        state["variables"] = {k: val for k, val in call.variables.items() if k not in call.sensitive}
        state["ivr_ended"] = self._ivr_ended.get(call.uniqueid)
        return orjson.dumps(state)

    async def flush(self, *, force: bool = False) -> None:
        """Write every call in progress that moved since its last write, in one pipeline. While
        Redis is failing (a pause after each failure) they wait in memory and their newest state
        goes later; ``force`` (the app's stop) tries once regardless."""
        if not self._dirty or (time.monotonic() < self._paused_until and not force):
            return
        async with self._writing:
            if time.monotonic() < self._paused_until and not force:
                return  # the write before this one failed
            calls = {u: c for u, c in self._dirty.items() if u in self._live}
            self._dirty = {}
            if not calls:  # the write before this one took them
                return
            pipe = self._redis.pipeline(transaction=False)
            for uniqueid, call in calls.items():
                pipe.set(CALL_STATE_KEY.format(uniqueid=uniqueid), self._state(call), ex=CALL_STATE_TTL)
            self._idle.clear()
            try:
                # A millisecond more per state: a burst's pipeline is not a failing Redis.
                async with asyncio.timeout(self._timeout + 0.001 * len(calls)):
                    await pipe.execute()
            except (TimeoutError, RedisError, OSError):
                # Memory still has them; only a controller restart would miss them.
                self._paused_until = time.monotonic() + self._pause
                self._keep(calls)
            except BaseException:  # cancelled (the app stopping): its final flush writes them
                self._keep(calls)
                raise
            finally:
                self._idle.set()

    def _keep(self, calls: dict[str, CallContext]) -> None:
        """Unwritten states back in line (unless the call moved again meanwhile: that one is newer)."""
        for uniqueid, call in calls.items():
            if uniqueid in self._live:
                self._dirty.setdefault(uniqueid, call)

    async def take(self, uniqueid: str) -> tuple[CallContext | None, str | None]:
        """Remove and return a call's context and how its IVR part ended (from Redis if another
        process started the call)."""
        call = self._live.pop(uniqueid, None)
        ended = self._ivr_ended.pop(uniqueid, None)
        self._dirty.pop(uniqueid, None)
        key = CALL_STATE_KEY.format(uniqueid=uniqueid)
        raw = None
        try:
            async with asyncio.timeout(self._timeout * 5):
                # A write in flight may hold this call's state: it must land before the delete.
                # (No later write takes it: it is no longer in progress.)
                await self._idle.wait()
                raw = await self._redis.getdel(key) if call is None else await self._redis.delete(key)
        except (TimeoutError, RedisError, OSError):
            pass
        if call is None:
            if isinstance(raw, (bytes, str)) and raw:
                state = json.loads(raw)
                ended = state.pop("ivr_ended", None)
                state["customer_class"] = CustomerClass(state["customer_class"])
                known = {f.name for f in dataclasses.fields(CallContext)}
                call = CallContext(**{k: val for k, val in state.items() if k in known})
        return call, ended

    def __len__(self) -> int:
        return len(self._live)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def build_outcome(
    uniqueid: str,
    caller: str,
    call: CallContext | None,
    ivr_ended: str | None,
    channel_vars: dict[str, str | None],
    menu_name: str,
    fallback_queue: str,
    ended_at: float,
    left: LeftQueue | None = None,
) -> OutcomeRecord:
    """Decide the disposition and timings from the IVR's view plus Asterisk's variables.
    ``left``: where the live state last saw the caller leave a queue (the abandon point)."""
    var = channel_vars.get
    agent = var(v.MEMBER_NAME) or var(v.MEMBER_INTERFACE) or None
    queued_at = _seconds(var(v.QUEUED_AT))  # first queued (kept across stints and overflow)
    stint_at = _seconds(var(v.STINT_AT)) or queued_at  # the Queue() run that ended the wait
    hold = _seconds(var(v.HOLD_TIME))
    queue = var(v.QUEUE_NAME) or var(v.QUEUE) or None
    fallback = var(v.FALLBACK) or None
    status = var(v.QUEUE_STATUS) or None
    reached_queue = var(v.DONE) == v.DONE_ROUTE or fallback is not None
    fallback_reason = (call.fallback_reason if call else None) or (f"dialplan:{fallback}" if fallback else None)
    if (call and call.fallback_reason) and queue is None:
        queue = fallback_queue

    answered_at = talk = wait = None
    abandon_point: dict[str, object] | None = None
    callback_id = var(v.CALLBACK) or None
    if agent:
        disposition = Disposition.FALLBACK if fallback_reason else Disposition.ANSWERED
        wait = hold
        if stint_at is not None and hold is not None:
            answered_at = stint_at + hold
            talk_ended = _seconds(var(v.QUEUE_LEFT)) or ended_at  # a survey after the agent is not talk
            talk = max(0.0, round(talk_ended - answered_at, 3))
            if queued_at is not None:
                wait = max(0.0, round(answered_at - queued_at, 3))
    elif var(v.WAIT_NEXT) == v.WAIT_CALLBACK and callback_id:
        disposition = Disposition.CALLBACK_BOOKED
        if queued_at is not None:
            wait = max(0.0, round(ended_at - queued_at, 3))
    elif reached_queue:
        if var(v.ABANDONED) != "TRUE" and status in v.QUEUE_NOT_JOINED:
            disposition = Disposition.FAILED
        else:
            disposition = Disposition.FALLBACK if fallback_reason else Disposition.ABANDONED_QUEUE
        if queued_at is not None:
            wait = max(0.0, round(ended_at - queued_at, 3))
        if disposition != Disposition.FAILED:
            if left is not None and left.at < (stint_at or 0) - 1:
                left = None  # an earlier stint's leaving, not where the caller gave up
            abandon_point = {"stage": "queue", "queue": (left.queue if left else None) or var(v.IN_QUEUE) or queue,
                             "position": left.position if left else None, "waited": wait}
    elif var(v.DONE) == v.DONE_HANGUP or ivr_ended == "self_served":
        disposition = Disposition.SELF_SERVED
    elif call is not None and ivr_ended == "caller_hangup":
        disposition = Disposition.ABANDONED_IVR
        abandon_point = {"stage": "ivr", "node": call.path[-1] if call.path else None}
    elif call is not None and ivr_ended is None:
        # The IVR never said how it ended and the dialplan did not queue: the caller left
        # while the controller was still working on the call.
        disposition = Disposition.ABANDONED_IVR
        abandon_point = {"stage": "ivr", "node": call.path[-1] if call.path else None}
    else:
        disposition = Disposition.FAILED

    priority = var(v.PRIORITY)
    return OutcomeRecord(
        uniqueid=uniqueid,
        disposition=disposition,
        caller=call.caller_number if call else caller,
        caller_name=call.caller_name if call else "",
        customer_class=(call.customer_class.value if call else (var(v.CUSTOMER_CLASS) or "public")),
        language=call.language if call else "",
        menu=menu_name,
        menu_path=list(call.path) if call else [],
        inputs=dict(call.inputs) if call else {},
        escalation=list(call.escalation) if call else [],
        tickets=list(call.tickets) if call else [],
        skill=var(v.SKILL) or None,
        queue=queue,
        priority=int(priority) if priority and priority.isascii() and priority.isdigit() else None,
        agent=agent,
        wait_seconds=wait,
        talk_seconds=talk,
        fallback_reason=fallback_reason,
        overflow=var(v.OVERFLOW) or None,
        survey_score=int(score) if (score := var(v.SURVEY_SCORE) or "") in ("1", "2", "3", "4", "5") else None,
        queue_status=status,
        announcements=[a for a in (var(v.ANNOUNCED) or "").split(";") if a],
        queues=[q for q in (var(v.OVERFLOW_PATH) or "").split(">") if q] + ([queue] if queue else []),
        callback={"id": callback_id, "result": "booked"} if disposition is Disposition.CALLBACK_BOOKED else None,
        abandon_point=abandon_point,
        started_at=call.started_at if call else None,
        queued_at=queued_at,
        answered_at=answered_at,
        ended_at=ended_at,
    )


class CallHandlers:
    def __init__(
        self,
        menu: Callable[[], Menu],
        engine: Callable[[Menu, Callable[[], bool]], MenuEngine],
        directory: CustomerDirectory,
        router: Router,
        states: CallStates,
        outcomes: OutcomeStore,
        prompts: PromptPaths,
        *,
        left_queue: Callable[[str], LeftQueue | None] = lambda _uniqueid: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._left_queue = left_queue
        self._prompts = prompts
        self._menu = menu
        self._engine = engine
        self._directory = directory
        self._router = router
        self._states = states
        self._outcomes = outcomes
        self._clock = clock

    async def hotline(self, channel: Channel) -> None:
        """The IVR: from the caller's first second to handing them to a queue or hanging up."""
        menu = self._menu()  # one version for the whole call, even if a new one is published
        env = channel.env
        number = normalize_number(env.caller_number)
        # Concurrently: each is bounded by its own deadline, so a stalled Redis costs the caller
        # at most the lookup's 1 s, not the sum of three.
        customer, recent_calls, switches = await asyncio.gather(
            self._directory.lookup(number),
            self._router.record_call(number, env.uniqueid),
            self._router.switches(),
        )
        escalation = self._router.escalation(customer, recent_calls)
        language = customer.language if customer.language in menu.languages else menu.default_language
        call = CallContext(
            uniqueid=env.uniqueid,
            caller_number=number,
            caller_name=env.caller_name[:80],
            customer_class=customer.customer_class,
            language=language,
            customer_name=customer.name,
            account=customer.account,
            started_at=self._clock(),
        )
        self._states.add(call)
        call.escalation = list(escalation.reasons)
        log.info(
            "call %s from %s (%s%s) entered the IVR", call.uniqueid, mask_number(number),
            customer.customer_class.value, f", escalated: {', '.join(escalation.reasons)}" if escalation.boost else "",
        )
        try:
            # Set the class's priority first: should anything fail from here on, the dialplan's
            # fallback queue still serves key accounts first.
            await channel.set_variables({
                v.PRIORITY: self._router.priority(customer.customer_class, escalation),
                v.CUSTOMER_CLASS: customer.customer_class.value,
                v.LANGUAGE: language,
            })
            await channel.answer()
            ending = await self._engine(menu, lambda: self._router.is_open(switches)).run(channel, call)
        except ChannelHangup:
            await self._states.end_ivr(call, "self_served" if call.self_served else "caller_hangup")
            raise
        if isinstance(ending, RouteRequest):
            decision = self._router.decide(ending.skill, call.customer_class, escalation, switches)
            await self._states.end_ivr(call, "routed")
            survey = menu.survey if decision.survey else None
            announcing = decision.announce_after is not None and menu.waiting is not None
            await channel.set_variables({
                v.SKILL: decision.skill,
                v.QUEUE: decision.queue,
                v.PRIORITY: decision.priority,
                v.QUEUE_TIMEOUT: decision.overflow_after or "",
                v.OVERFLOW_QUEUE: decision.overflow_queue or "",
                v.MAX_PENALTY: "" if decision.max_penalty is None else decision.max_penalty,
                # The survey is the dialplan's (no AGI session of its own): its prompts and
                # counts go with the route, in the caller's language.
                v.SURVEY: "1" if survey else "",
                v.SURVEY_PROMPT: self._prompts.path(survey.prompt, call.language) if survey else "",
                v.SURVEY_THANKS: self._prompts.path(survey.thanks, call.language) if survey and survey.thanks else "",
                v.SURVEY_ATTEMPTS: survey.attempts if survey else "",
                v.SURVEY_TIMEOUT: f"{survey.timeout:g}" if survey else "",
                # Between stints the wait AGI announces and takes the overflow steps after the first.
                v.ANNOUNCE: "1" if announcing or decision.more_overflow else "",
                v.ANNOUNCE_EVERY: decision.announce_every,
                v.STINT: decision.first_stint(announcing) or "",
                v.RULE: "",
                v.QUEUE_OPTIONS: "rc" if survey else "r",
                v.DONE: v.DONE_ROUTE,  # last: the dialplan routes on it
            })
        elif isinstance(ending, SelfServed):
            await self._states.end_ivr(call, "self_served")
            await channel.set_variable(v.DONE, v.DONE_HANGUP)
            await channel.hangup()

    async def finish(self, channel: Channel) -> None:
        """The hangup handler: write the call's outcome record. Runs on a dead channel."""
        uniqueid = channel.env.uniqueid
        # One command for all of them: as many GET VARIABLEs were most of Asterisk's AGI work per call.
        values: dict[str, str | None]
        try:
            values = dict(await channel.get_variables(v.FINISH_VARIABLES))
        except AgiProtocolError as exc:  # a value that broke the CSV line: one by one, as before
            log.warning("call %s: variables not read at once (%s); reading them one by one", uniqueid, exc)
            values = {name: await channel.get_variable(name) for name in v.FINISH_VARIABLES}
        call, ended = await self._states.take(uniqueid)
        record = build_outcome(
            uniqueid,
            normalize_number(channel.env.caller_number),
            call,
            ended,
            values,
            self._menu().name,
            self._router.fallback_queue(),
            self._clock(),
            self._left_queue(uniqueid),
        )
        created = await self._outcomes.save(record)
        await channel.set_variable(v.RECORDED, "1")  # the dialplan journals the call unless this is set
        log.info("call %s ended: %s%s", uniqueid, record.disposition.value, "" if created else " (duplicate ignored)")
